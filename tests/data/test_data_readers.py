"""Readers: every supported format becomes the same record shape, with stable ids."""

from __future__ import annotations

import json

import pytest

from amauta.data.readers import SourceConfig, read_source
from amauta.data.records import record_id


def write(path, rows):
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    return path


def read(**kwargs):
    return read_source(SourceConfig(**kwargs))


def test_alpaca_jsonl_and_array_give_the_same_records(tmp_path):
    rows = [{"instruction": "Resume el texto.", "input": "El sol sale por el este.", "output": "Sale por el este."},
            {"instruction": "¿Qué es el IVA?", "input": "", "output": "Un impuesto al consumo.", "category": "definition"}]
    jsonl = write(tmp_path / "a.jsonl", rows)
    array = tmp_path / "a.json"
    array.write_text(json.dumps(rows, ensure_ascii=False, indent=2), encoding="utf-8")
    one = read(path=str(jsonl), name="alpaca").records
    two = read(path=str(array), name="alpaca").records
    assert [r.to_json() for r in one] == [r.to_json() for r in two]
    assert one[0].messages == [{"role": "user", "content": "Resume el texto.\n\nEl sol sale por el este."},
                               {"role": "assistant", "content": "Sale por el este."}]
    assert one[1].category == "definition" and one[0].category == ""
    assert one[0].id == record_id("alpaca", one[0].messages) and len(one[0].id) == 16
    assert one[1].where == f"{jsonl}:2" and two[1].where == f"{array}:7 (record 2)"


def test_dolly_with_context_and_category(tmp_path):
    path = write(tmp_path / "d.jsonl", [{"instruction": "¿Cuántos son?", "context": "Son tres gatos.", "response": "Tres.",
                                          "category": "closed_qa"}])
    (record,) = read(path=str(path)).records
    assert record.messages[0]["content"] == "¿Cuántos son?\n\nSon tres gatos."
    assert record.category == "closed_qa" and record.source == "d"


def test_chat_and_sharegpt_multi_turn(tmp_path):
    chat = write(tmp_path / "c.jsonl", [{"messages": [
        {"role": "system", "content": "Eres amable."}, {"role": "user", "content": "Hola"},
        {"role": "assistant", "content": "¡Hola!"}, {"role": "user", "content": "¿Qué tal?"},
        {"role": "assistant", "content": "Muy bien."}]}])
    share = write(tmp_path / "s.jsonl", [{"conversations": [
        {"from": "system", "value": "Eres amable."}, {"from": "human", "value": "Hola"}, {"from": "gpt", "value": "¡Hola!"},
        {"from": "human", "value": "¿Qué tal?"}, {"from": "gpt", "value": "Muy bien."}]}])
    a = read(path=str(chat)).records[0]
    b = read(path=str(share)).records[0]
    assert a.messages == b.messages and len(a.messages) == 5


def test_squad_questions_become_passage_plus_question(tmp_path):
    doc = {"version": "1.1", "data": [{"title": "Quito", "paragraphs": [{
        "context": "Quito es la capital de Ecuador y está a unos 2 850 metros de altura.",
        "qas": [{"id": "q1", "question": "¿Cuál es la capital de Ecuador?", "answers": [{"text": "", "answer_start": -1},
                                                                                          {"text": "Quito", "answer_start": 0},
                                                                                          {"text": "Quito", "answer_start": 0}]},
                {"id": "q2", "question": "¿Qué altura tiene?", "answers": [], "is_impossible": True}]}]}]}
    path = tmp_path / "squad.json"
    path.write_text(json.dumps(doc, ensure_ascii=False), encoding="utf-8")
    result = read(path=str(path))
    (record,) = result.records
    assert "Quito es la capital" in record.messages[0]["content"] and "Pregunta: ¿Cuál es la capital" in record.messages[0]["content"]
    assert record.messages[1]["content"] == "Quito"  # the most given non-empty answer
    assert result.skipped["unanswerable"] == 1 and record.category == "qa"


def test_csv_with_column_mapping_and_system_prompt(tmp_path):
    path = tmp_path / "faq.csv"
    path.write_text('pregunta;respuesta;tema\n"¿Qué es el RUC?";"El registro de contribuyentes; tiene 13 dígitos.";sri\n',
                    encoding="utf-8")
    (record,) = read(path=str(path), delimiter=";", system="Eres un asesor tributario.",
                     columns={"instruction": "pregunta", "output": "respuesta", "category": "tema"}).records
    assert record.messages[0] == {"role": "system", "content": "Eres un asesor tributario."}
    assert record.messages[2]["content"] == "El registro de contribuyentes; tiene 13 dígitos."
    assert record.category == "sri"


def test_hf_saved_folder_and_data_file_folder(tmp_path):
    import datasets

    rows = {"instruction": ["Di hola.", "Di adiós."], "input": ["", ""], "output": ["Hola.", "Adiós."]}
    datasets.DatasetDict({"train": datasets.Dataset.from_dict(rows)}).save_to_disk(str(tmp_path / "saved"))
    saved = read(path=str(tmp_path / "saved"), name="saved").records
    (tmp_path / "files").mkdir()
    write(tmp_path / "files" / "train.jsonl", [dict(zip(rows, v, strict=True)) for v in zip(*rows.values(), strict=True)])
    files = read(hf=str(tmp_path / "files"), name="saved").records  # the real load_dataset code path
    assert [r.to_json() for r in saved] == [r.to_json() for r in files]
    assert saved[1].messages[1]["content"] == "Adiós."
    with pytest.raises(Exception, match="no split 'test'"):
        read(path=str(tmp_path / "saved"), split="test")


def test_ids_are_stable_and_depend_on_source(tmp_path):
    path = write(tmp_path / "a.jsonl", [{"instruction": "x y z", "output": "ok"}])
    assert read(path=str(path), name="one").records[0].id == read(path=str(path), name="one").records[0].id
    assert read(path=str(path), name="one").records[0].id != read(path=str(path), name="two").records[0].id


def test_real_squad_es_dev(shared_data):
    result = read(path=str(shared_data / "squad-es" / "dev-v1.1-es_small.json"))
    assert len(result.records) == 6583 and not result.invalid
    assert all(r.messages[-1]["content"] for r in result.records)
    xquad = read(path=str(shared_data / "xquad" / "xquad.es.json"))  # pretty-printed over 13k lines
    assert len(xquad.records) == 1190 and "Pregunta:" in xquad.records[0].messages[0]["content"]
    v2 = read(path=str(shared_data / "squad-es" / "dev-v2.0-es_small.json"))
    assert v2.skipped["unanswerable"] == 3256 and len(v2.records) == 7134 - 3256


def test_sample_data_shipped_in_repo():
    from pathlib import Path

    root = Path(__file__).resolve().parents[2] / "examples" / "data"
    alpaca = read(path=str(root / "alpaca_es.jsonl"), format="alpaca").records
    dolly = read(path=str(root / "dolly_es.jsonl"), format="dolly").records
    assert len(alpaca) >= 190 and len(dolly) >= 30
    assert {"definition", "explanation", "creative_writing", "rewriting", "math"} <= {r.category for r in alpaca}
    assert all(r.category for r in dolly)
