"""Completion records: raw text trained on every token, beside conversations in one dataset folder."""

from __future__ import annotations

import pytest

from amauta.core.errors import AmautaError
from amauta.data.records import Record, record_from_json


def test_a_completion_record_round_trips_and_its_id_follows_its_text():
    record = Record(messages=[], text="Art. 1.- La tarifa general del impuesto es del 15 %.", source="leyes")
    again = record_from_json(record.to_json(), "train.jsonl:1")
    assert again == record and again.is_completion and "messages" not in record.to_json()
    assert record.assistant_text() == record.text and record.user_text() == ""
    assert Record(messages=[], text=record.text + " ", source="leyes").id != record.id
    chat = Record(messages=[{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"}], source="x")
    assert not chat.is_completion and "text" not in chat.to_json()


@pytest.mark.parametrize(("obj", "message"), [
    ({"id": "a", "source": "s", "text": "  "}, r"f.jsonl:3: 'text' must be a non-empty string"),
    ({"id": "a", "source": "s", "text": "t", "messages": []}, r"f.jsonl:3: record has both 'messages' and 'text'"),
    ({"id": "a", "source": "s"}, r"f.jsonl:3: record lacks 'messages'"),
])
def test_a_malformed_completion_record_is_one_line_naming_the_line(obj, message):
    with pytest.raises(AmautaError, match=message):
        record_from_json(obj, "f.jsonl:3")
