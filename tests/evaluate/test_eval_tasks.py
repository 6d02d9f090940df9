"""Perplexity, XQuAD and MGSM: loaders, metrics, and runs through the shared runner."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch

from amauta.core.errors import AmautaError
from amauta.evaluate import generation
from amauta.evaluate.mgsm import MgsmConfig, extract_answer, load_problems, parse_number
from amauta.evaluate.perplexity import PerplexityConfig, load_texts, text_nll
from amauta.evaluate.runner import load_summary
from amauta.evaluate.xquad import XquadConfig, clean_prediction, f1_score, load_questions, normalize_answer

REPO = Path(__file__).resolve().parents[2]
SAMPLE = REPO / "examples" / "data" / "belebele_sample.jsonl"


def _tiny_loader(tiny):
    return lambda spec, **kwargs: tiny("llama")


# ---------------------------------------------------------------- perplexity

def test_text_nll_equals_the_models_own_loss(tiny):
    loaded = tiny("llama")
    texts = ["El Servicio de Rentas Internas administra los impuestos.", "Hola, ¿cómo estás? Muy bien."]
    results = text_nll(loaded.model, loaded.tokenizer, texts)
    for text, (nll, tokens) in zip(texts, results, strict=True):
        ids = torch.tensor([loaded.tokenizer(text).input_ids])
        with torch.no_grad():
            loss = loaded.model(input_ids=ids, labels=ids).loss.item()
        assert tokens == ids.shape[1] - 1
        assert nll / tokens == pytest.approx(loss, rel=1e-4)
    # a long text in short windows predicts every token but the first
    long = " ".join(texts * 6)
    (nll, tokens), = text_nll(loaded.model, loaded.tokenizer, [long], max_length=32)
    assert tokens == len(loaded.tokenizer(long).input_ids) - 1


def test_load_texts_formats(tmp_path, shared_data):
    assert len(load_texts(SAMPLE)) == 40
    assert len(load_texts(shared_data / "xquad" / "xquad.es.json")) == 240
    (tmp_path / "t.txt").write_text("Primer párrafo.\n\nSegundo párrafo.\n\n\n", encoding="utf-8")
    assert [t["text"] for t in load_texts(tmp_path / "t.txt")] == ["Primer párrafo.", "Segundo párrafo."]
    (tmp_path / "bad.jsonl").write_text('{"texto": "x"}\n', encoding="utf-8")
    with pytest.raises(AmautaError, match=r"bad.jsonl:1: no 'text'"):
        load_texts(tmp_path / "bad.jsonl")
    (tmp_path / "empty.txt").write_text("\n\n", encoding="utf-8")
    with pytest.raises(AmautaError, match="no text found"):
        load_texts(tmp_path / "empty.txt")


def test_perplexity_run(tiny, tmp_path):
    from amauta.evaluate.perplexity import run

    summary = load_summary(run(PerplexityConfig(model="tiny-llama", data=str(SAMPLE), limit=5, out=str(tmp_path / "ppl")),
                               loader=_tiny_loader(tiny), show_progress=False))
    metrics = summary["models"][0]["metrics"]
    rows = [json.loads(line) for line in (tmp_path / "ppl" / "items.jsonl").read_text().splitlines()]
    assert metrics["ppl"] == pytest.approx(math.exp(sum(r["nll"] for r in rows) / sum(r["tokens"] for r in rows)))
    assert metrics["ppl_ci"][0] <= metrics["ppl"] <= metrics["ppl_ci"][1]
    assert metrics["ppl"] > 100  # a random model over a 600-token vocabulary is close to uniform


# ---------------------------------------------------------------- xquad

def test_spanish_normalisation_and_f1():
    assert normalize_answer("¡El Río Napo!") == "río napo"
    assert normalize_answer("los  308 puntos.") == "308 puntos"
    assert f1_score("308 puntos", "308") == pytest.approx(2 / 3)
    assert f1_score("La Asamblea Nacional", "asamblea nacional") == 1.0
    assert f1_score("nada", "308") == 0.0
    assert clean_prediction('Respuesta: "308"\nporque...') == "308"


def test_xquad_loader(tmp_path, shared_data):
    items = load_questions(shared_data / "xquad" / "xquad.es.json")
    assert len(items) == 1190 and not items[0]["context"].startswith("\ufeff")
    (tmp_path / "bad.json").write_text('{"datos": []}', encoding="utf-8")
    with pytest.raises(AmautaError, match="top-level 'data' list"):
        load_questions(tmp_path / "bad.json")


def _squad(tmp_path: Path) -> Path:
    data = {"data": [{"title": "Ecuador", "paragraphs": [
        {"context": "Quito es la capital del Ecuador y está a 2850 metros de altura.",
         "qas": [{"id": "q1", "question": "¿Cuál es la capital?", "answers": [{"text": "Quito", "answer_start": 0}]},
                 {"id": "q2", "question": "¿A qué altura está?", "answers": [{"text": "2850 metros", "answer_start": 41}]},
                 {"id": "q3", "question": "¿Sin respuesta?", "answers": []}]}]}]}
    path = tmp_path / "mini.json"
    path.write_text(json.dumps(data, ensure_ascii=False), encoding="utf-8")
    return path


def test_xquad_run_scores_generations(tiny, tmp_path, monkeypatch):
    from amauta.evaluate.xquad import run

    monkeypatch.setattr(generation, "generate_texts", lambda loaded, convs, n: ["Quito.", "a 2850 metros de altura"][: len(convs)])
    summary = load_summary(run(XquadConfig(model="tiny-llama", data=str(_squad(tmp_path)), out=str(tmp_path / "xq")),
                               loader=_tiny_loader(tiny), show_progress=False))
    metrics = summary["models"][0]["metrics"]
    assert metrics["n"] == 2 and metrics["em"] == 0.5
    assert metrics["f1"] == pytest.approx((1 + 2 * (2 / 5) * 1 / (2 / 5 + 1)) / 2, abs=1e-3)  # 5 words, 2 right


def test_xquad_with_real_generation(tiny, tmp_path):
    from amauta.evaluate.xquad import run

    summary = load_summary(run(XquadConfig(model="tiny-llama", data=str(_squad(tmp_path)), max_new_tokens=4,
                                           out=str(tmp_path / "xq")), loader=_tiny_loader(tiny), show_progress=False))
    assert summary["models"][0]["n"] == 2


# ---------------------------------------------------------------- mgsm

@pytest.mark.parametrize("text, value", [("70 000", 70000), ("70.000", 70000), ("1,5", 1.5), ("1.234,5", 1234.5),
                                          ("-3", -3), ("18", 18), ("abc", None)])
def test_parse_number(text, value):
    assert parse_number(text) == value


def test_extract_answer():
    assert extract_answer("16 - 3 - 4 = 9 huevos; 9 × 2 = 18.\nRespuesta: 18 dólares") == 18
    assert extract_answer("Gana $18 al día. Al mes serían 540.") == 540
    assert extract_answer("Respuesta: $80 000") == 80000
    assert extract_answer("no lo sé") is None


def test_mgsm_loader_and_run(tiny, tmp_path, monkeypatch, shared_data):
    from amauta.evaluate.mgsm import run

    assert len(load_problems(shared_data / "mgsm" / "mgsm_es.tsv")) == 250
    (tmp_path / "bad.tsv").write_text("pregunta sin respuesta\n", encoding="utf-8")
    with pytest.raises(AmautaError, match=r"bad.tsv:1: expected 2 tab-separated columns"):
        load_problems(tmp_path / "bad.tsv")
    (tmp_path / "m.tsv").write_text("Ana tiene 2 y compra 3. ¿Cuántas tiene?\t5\nSuma 10 y 10.\t20\n", encoding="utf-8")
    monkeypatch.setattr(generation, "generate_texts", lambda loaded, convs, n: ["2 + 3 = 5\nRespuesta: 5", "Son 30."])
    summary = load_summary(run(MgsmConfig(model="tiny-llama", data=str(tmp_path / "m.tsv"), out=str(tmp_path / "mg")),
                               loader=_tiny_loader(tiny), show_progress=False))
    assert summary["models"][0]["metrics"]["acc"] == 0.5
