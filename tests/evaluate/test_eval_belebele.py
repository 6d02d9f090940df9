"""Belebele: both file layouts, one-line errors, prompts and shots, extraction, scoring."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from amauta.core.errors import AmautaError
from amauta.evaluate import belebele
from amauta.evaluate.belebele import build_context, extract_letter, load_items, score, split_shots

REPO = Path(__file__).resolve().parents[2]
SAMPLE = REPO / "examples" / "data" / "belebele_sample.jsonl"


def _write(path: Path, rows) -> Path:
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    return path


def _official(n: int = 3) -> list[dict]:
    return [{"link": f"https://ejemplo.ec/{k}", "question_number": 1, "flores_passage": f"Texto número {k}.",
             "question": f"¿Qué número tiene el texto {k}?", "mc_answer1": "uno", "mc_answer2": "dos",
             "mc_answer3": "tres", "mc_answer4": str(k), "correct_answer_num": "4"} for k in range(n)]


def test_sample_file_is_balanced_and_valid():
    items = load_items(SAMPLE)
    assert len(items) == 40
    assert {g: sum(i["gold"] == g for i in items) for g in "ABCD"} == {"A": 10, "B": 10, "C": 10, "D": 10}
    assert len({i["id"] for i in items}) == 40


def test_official_layout_jsonl_and_parquet(tmp_path):
    rows = _official()
    items = load_items(_write(tmp_path / "b.jsonl", rows))
    assert items[0] == {"id": "https://ejemplo.ec/0#1", "passage": "Texto número 0.", "question": rows[0]["question"],
                        "options": ["uno", "dos", "tres", "0"], "gold": "D"}
    import pyarrow as pa
    import pyarrow.parquet as pq

    pq.write_table(pa.Table.from_pylist(rows), tmp_path / "b.parquet")
    assert load_items(tmp_path / "b.parquet") == items
    assert load_items(tmp_path) == items + items  # a folder: every file in it


def test_shared_dev_file_reads(shared_data):
    items = load_items(shared_data / "belebele-es" / "dev.jsonl")
    assert len(items) == 244 and all(i["gold"] in "ABCD" for i in items)


@pytest.mark.parametrize("row, message", [
    ({"passage": "p", "question": "q", "options": ["a", "b", "c", "d"]}, "missing field 'gold'"),
    ({"passage": "p", "question": "q", "options": ["a", "b", "c", "d"], "gold": "E"}, "gold 'E' is not one of A, B, C, D"),
    ({"passage": "p", "question": "q", "options": ["a", "b"], "gold": "A"}, "'options' must be a list of 4"),
    ({**_official(1)[0], "correct_answer_num": "5"}, "correct_answer_num is '5'"),
    ({**_official(1)[0], "mc_answer3": ""}, "missing field 'mc_answer3'"),
])
def test_bad_items_name_file_and_line(tmp_path, row, message):
    good = {"passage": "p", "question": "q", "options": ["a", "b", "c", "d"], "gold": "A"}
    path = _write(tmp_path / "bad.jsonl", [good, row])
    with pytest.raises(AmautaError) as err:
        load_items(path)
    assert f"bad.jsonl:2: {message}" in str(err.value)
    assert "\n" not in str(err.value)


def test_empty_file_and_bad_json_and_missing_file(tmp_path):
    (tmp_path / "empty.jsonl").write_text("\n", encoding="utf-8")
    with pytest.raises(AmautaError, match="no items; the file is empty"):
        load_items(tmp_path / "empty.jsonl")
    (tmp_path / "broken.jsonl").write_text('{"passage": "p"\n', encoding="utf-8")
    with pytest.raises(AmautaError, match=r"broken.jsonl:1: invalid JSON"):
        load_items(tmp_path / "broken.jsonl")
    with pytest.raises(AmautaError, match="file not found"):
        load_items(tmp_path / "nope.jsonl")


def test_hub_id_goes_through_load_dataset(monkeypatch):
    calls = []

    def fake_load_dataset(path, name, split):
        calls.append((path, name, split))
        return _official(2)

    import datasets

    monkeypatch.setattr(datasets, "load_dataset", fake_load_dataset)
    items = load_items("facebook/belebele", language="spa_Latn", split="test")
    assert calls == [("facebook/belebele", "spa_Latn", "test")] and len(items) == 2


def test_hub_failure_is_one_line(monkeypatch):
    import datasets

    def offline(*args, **kwargs):
        raise ConnectionError("Couldn't reach the Hub\nsecond line")

    monkeypatch.setattr(datasets, "load_dataset", offline)
    with pytest.raises(AmautaError) as err:
        load_items("facebook/belebele")
    assert "cannot load from the Hugging Face Hub (Couldn't reach the Hub)" in str(err.value)


def test_shots_are_never_scored():
    items = load_items(SAMPLE)
    shots, scored = split_shots(items, 3)
    assert [s["id"] for s in shots] == [i["id"] for i in items[:3]]
    assert not {s["id"] for s in shots} & {i["id"] for i in scored}
    shots2, scored2 = split_shots(items[10:], 2, shot_items=items[:12])  # overlap removed from the pool
    assert [s["id"] for s in shots2] == [items[0]["id"], items[1]["id"]] and len(scored2) == 30
    with pytest.raises(AmautaError, match="need 3"):
        split_shots(items[:5], 3, shot_items=items[:6])


def test_prompts_formats():
    item = load_items(SAMPLE)[0]
    shot = load_items(SAMPLE)[1]
    text = build_context(item, "letter", "lm-eval", [])
    assert text.startswith("P: Quito") and "\nA: Subir" in text and text.endswith("Answer:")
    text = build_context(item, "cloze", "es", [shot])
    assert text.count("Pasaje:") == 2 and "Respuesta: Ir con un guía autorizado\n\nPasaje: Quito" in text
    assert "Given the following passage" in belebele.build_messages(item, "paper", [])[0]["content"]
    assert [m["role"] for m in belebele.build_messages(item, "es", [shot])] == ["user", "assistant", "user"]


@pytest.mark.parametrize("text, letter", [
    ("B", "B"), ("(C) Las cosechas", "C"), ("La respuesta correcta es D.", "D"), ("Respuesta: a", "A"),
    ("Creo que es beber mucha agua y no hacer ejercicio fuerte", "B"), ("no sé", None),
])
def test_extract_letter(text, letter):
    options = ["Subir al volcán", "Beber mucha agua y no hacer ejercicio fuerte", "Comer frutas", "Dormir de día"]
    assert extract_letter(text, options) == letter


@pytest.mark.parametrize("formulation", ["letter", "cloze"])
def test_score_tiny(tiny, formulation):
    items = load_items(SAMPLE)[:6]
    result = score(tiny("llama"), items, formulation, batch_size=4)
    assert result["n"] == 6 and 0 <= result["acc"] <= 1 and len(result["items"]) == 6
    for row in result["items"]:  # the prediction is the best-scoring option
        assert row["pred"] == "ABCD"[row["logprobs"].index(max(row["logprobs"]))]
        assert row["correct"] == (row["pred"] == row["gold"])
    lo, hi = result["acc_ci"]
    assert lo <= result["acc"] <= hi
    k_shot = score(tiny("llama"), items, formulation, shots=2)
    assert k_shot["n"] == 4


def test_score_generate_extracts_letters(tiny, monkeypatch):
    from amauta.evaluate import generation

    seen = []

    items = load_items(SAMPLE)[:4]  # gold: B A C D
    replies = dict(zip([i["passage"] for i in items], ["La respuesta es B", "A", "(D)", "ni idea"], strict=True))

    def fake(loaded, conversations, max_new_tokens):  # answers by passage: batches may come in any order
        seen.extend(conversations)
        return [next(r for p, r in replies.items() if p in conv[-1]["content"]) for conv in conversations]

    monkeypatch.setattr(generation, "generate_texts", fake)
    result = score(tiny("llama"), items, "generate")
    assert [r["pred"] for r in result["items"]] == ["B", "A", "D", None]
    assert result["acc"] == 0.5 and result["predictions"]["none"] == 1
    assert "Opciones:" in seen[0][-1]["content"]


def test_score_generate_with_a_real_model(tiny):
    result = score(tiny("llama"), load_items(SAMPLE)[:2], "generate")
    assert result["n"] == 2 and all("output" in r for r in result["items"])


@pytest.mark.integration
def test_smollm2_cloze_matches_plain_scoring(smollm2, shared_data):
    items = load_items(shared_data / "belebele-es" / "dev.jsonl")[:4]
    fast = score(smollm2, items, "cloze", batch_size=4)
    slow = score(smollm2, items, "cloze", batch_size=4, reuse_cache=False)
    assert [r["pred"] for r in fast["items"]] == [r["pred"] for r in slow["items"]]
    for a, b in zip(fast["items"], slow["items"], strict=True):
        assert a["logprobs"] == pytest.approx(b["logprobs"], abs=1e-3)


@pytest.mark.parametrize("name, data, message", [
    ("latin1.jsonl", json.dumps({"passage": "¿Qué?", "question": "q", "options": ["a", "b", "c", "d"], "gold": "A"},
                                ensure_ascii=False).encode("latin-1"), ":1: not UTF-8 text (byte 0xbf at column 14)"),
    ("binary.jsonl", b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\xff\xd8", ":1: not UTF-8 text (byte 0x89 at column 1)"),
    ("latin1.json", '[{"passage": "ñ"}]'.encode("latin-1"), ":1: not UTF-8 text (byte 0xf1 at column 15)"),
    ("deep.jsonl", b'{"passage": "p"}\n' + b"[" * 100_000 + b"]" * 100_000 + b"\n", ":2: nested too deeply to read"),
])
def test_files_that_are_not_utf8_json_name_file_line_and_byte(tmp_path, name, data, message):
    path = tmp_path / name
    path.write_bytes(data)
    with pytest.raises(AmautaError) as err:
        load_items(path)
    assert str(err.value).startswith(f"{path}{message}") and "\n" not in str(err.value)


def test_other_eval_readers_name_the_byte_too(tmp_path):
    from amauta.evaluate.mgsm import load_problems
    from amauta.evaluate.perplexity import load_texts
    from amauta.evaluate.xquad import load_questions

    latin1 = "Juan tiene 3 manzanas y compra 2 más. ¿Cuántas tiene?\t5\n".encode("latin-1")
    (tmp_path / "m.tsv").write_bytes(latin1)
    (tmp_path / "x.json").write_bytes('{"data": [{"title": "Año"}]}'.encode("latin-1"))
    (tmp_path / "p.jsonl").write_bytes(b'{"text": "ok"}\n' + '{"text": "ñ"}\n'.encode("latin-1"))
    for path, read, where in [("m.tsv", load_problems, ":1: not UTF-8 text (byte 0xe1 at column 35)"),
                              ("x.json", load_questions, ":1: not UTF-8 text (byte 0xf1 at column 23)"),
                              ("p.jsonl", load_texts, ":2: not UTF-8 text (byte 0xf1 at column 11)")]:
        with pytest.raises(AmautaError) as err:
            read(tmp_path / path)
        assert str(err.value).startswith(f"{tmp_path / path}{where}"), str(err.value)
