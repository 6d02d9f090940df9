"""Getting JSON out of model replies: extraction, repair, corrective retries, recorded failures."""

from __future__ import annotations

import pytest

from amauta.llm.json_reply import JsonExtractionError, ask_json, extract_json, repair_json


@pytest.mark.parametrize("reply, value", [
    ('{"a": 1}', {"a": 1}),
    ('Claro, aquí está:\n```json\n[{"q": "¿Qué es el IVA?"}]\n```\nEspero que sirva.', [{"q": "¿Qué es el IVA?"}]),
    ("```\n{\"a\": [1, 2]}\n```", {"a": [1, 2]}),
    ('Respuesta: {"a": {"b": "}"}} y nada más {"c": 2}', {"a": {"b": "}"}}),
    ("{'pregunta': 'hola', 'ok': True, 'x': None}", {"pregunta": "hola", "ok": True, "x": None}),
    ("{'a': 'it\\'s'}", {"a": "it's"}),
    ('{"a": 1, "b": [1, 2,],}', {"a": 1, "b": [1, 2]}),
    ('[{"a": "uno"}, {"a": "dos"', [{"a": "uno"}, {"a": "dos"}]),
    ('{"a": "texto cortado', {"a": "texto cortado"}),
    ('[{"instruction": "q", "output": "r"}, {"instruction": "q2", "outp', [{"instruction": "q", "output": "r"}, {"instruction": "q2"}]),
    ("\u201cno\u201d {\u201ca\u201d: \u201cb\u201d}", {"a": "b"}),
    ('{"a": "línea 1\nlínea 2"}', {"a": "línea 1\nlínea 2"}),
    ('[1, 2, // comentario\n 3]', [1, 2, 3]),
    ('{"url": "http://sri.gob.ec"}', {"url": "http://sri.gob.ec"}),
])
def test_extract_json_handles_what_models_write(reply, value):
    assert extract_json(reply) == value


@pytest.mark.parametrize("reply", ["", "   ", "No sé la respuesta.", "La tarifa es 15%"])
def test_extract_json_fails_clearly(reply):
    with pytest.raises(JsonExtractionError):
        extract_json(reply)


def test_repair_closes_brackets_in_order():
    assert repair_json('{"a": [{"b": 1') == '{"a": [{"b": 1}]}'


class Scripted:
    """An LLM that answers from a list and remembers what it was asked."""

    name = "scripted"

    def __init__(self, replies):
        self.replies = list(replies)
        self.seen = []

    def complete(self, messages, *, max_tokens=512, temperature=0.0):
        self.seen.append(messages)
        return self.replies.pop(0)


def test_ask_json_retries_with_a_corrective_message():
    llm = Scripted(["No puedo ayudar con eso.", '[{"a": 1}]'])
    reply = ask_json(llm, [{"role": "user", "content": "Dame JSON"}], retries=2)
    assert reply.ok and reply.value == [{"a": 1}] and len(reply.raw_replies) == 2
    second = llm.seen[1]
    assert second[1] == {"role": "assistant", "content": "No puedo ayudar con eso."}
    assert second[2]["role"] == "user" and "JSON válido" in second[2]["content"]


def test_ask_json_validation_reason_goes_back_to_the_model():
    def validate(value):
        if not isinstance(value, list):
            raise ValueError("se esperaba una lista")
        return [v * 2 for v in value]  # a validator may normalize

    llm = Scripted(['{"a": 1}', "[1, 2]"])
    reply = ask_json(llm, [{"role": "user", "content": "x"}], validate=validate)
    assert reply.value == [2, 4]
    assert "se esperaba una lista" in llm.seen[1][-1]["content"]


def test_ask_json_records_the_failure_after_all_tries():
    llm = Scripted(["nada", "tampoco", "no"])
    reply = ask_json(llm, [{"role": "user", "content": "x"}], retries=2)
    assert not reply.ok and reply.value is None
    assert reply.raw_replies == ["nada", "tampoco", "no"]
    assert reply.error.startswith("3 tries failed")
