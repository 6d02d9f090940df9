"""`eval exam --generate-base-url`: short answers from an OpenAI-compatible endpoint (the fake server, and the
real `amauta serve` app with a tiny model); multiple choice stays in-process, on the loaded model."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from amauta.core.errors import AmautaError
from amauta.core.files import read_jsonl
from amauta.data.exam_items import read_exam, write_exam
from amauta.evaluate.exam import ExamConfig, run
from amauta.llm.fake_server import FakeOpenAIServer, unused_url

REPO = Path(__file__).resolve().parents[2]
LEYES = REPO / "examples" / "exams" / "leyes.jsonl"


@pytest.fixture
def exam(tmp_path) -> Path:
    """Five test items of leyes.jsonl, answerable and not."""
    items = read_exam(LEYES, "test")
    chosen = [i for i in items if i.answerable][:4] + [i for i in items if not i.answerable][:1]
    return write_exam(tmp_path / "exam.jsonl", chosen)


def _config(exam: Path, out: Path, **kwargs) -> ExamConfig:
    return ExamConfig(**{"model": "tiny-llama", "exam": str(exam), "out": str(out), "max_new_tokens": 6,
                         "options_only": False, **kwargs})


def _loader(tiny, calls: list):
    def load(spec, **kwargs):
        calls.append(spec.label)
        return tiny("llama")
    return load


def _rows(out: Path) -> dict[str, dict]:
    return {r["item_id"]: r for r in read_jsonl(out / "items.jsonl")}


def test_short_answers_come_from_the_endpoint_and_multiple_choice_stays_in_process(tiny, exam, tmp_path, monkeypatch):
    from amauta.evaluate import generation

    items = {item.question.strip(): item for item in read_exam(exam)}

    def reply(messages, body):  # the reference for an answerable question, an abstention otherwise
        item = items[messages[-1]["content"]]
        return item.reference if item.answerable else "Los documentos no lo indican."

    local_calls: list = []
    local = tmp_path / "local"
    run(_config(exam, local, short_answer=False), loader=_loader(tiny, local_calls), show_progress=False)

    def no_local_generation(*args, **kwargs):
        raise AssertionError("a short answer was generated in-process")

    monkeypatch.setattr(generation, "generate_texts", no_local_generation)
    calls: list = []
    out = tmp_path / "served"
    served = FakeOpenAIServer(reply, model="servido")
    with served as url:
        run(_config(exam, out, generate_base_url=url), loader=_loader(tiny, calls), show_progress=False)
        assert calls == ["base"] and served.chat_requests == len(items)  # the model loaded for multiple choice
        assert {r["model"] for r in served.requests} == {"servido"} and {r["temperature"] for r in served.requests} == {0}
        rows, mc_only = _rows(out), _rows(local)
        for item_id, row in rows.items():
            assert row["logprobs"] == mc_only[item_id]["logprobs"]  # multiple choice: the loaded model's scores
        assert all(r["sa_correct"] for r in rows.values())  # the endpoint's replies were scored
        summary = json.loads((out / "summary.json").read_text())
        assert summary["generation"] == {"multiple_choice": "in-process", "short_answers": "endpoint",
                                         "endpoint": url, "models": {"base": "servido"}}
        assert summary["models"][0]["metrics"]["sa_correct"] == 1.0
        calls.clear()
        run(_config(exam, out, generate_base_url=url), loader=_loader(tiny, calls), show_progress=False)
        assert calls == [] and served.chat_requests == len(items)  # resumed from the cache: nothing asked


def test_a_down_endpoint_stops_in_one_line_before_any_model_loads(tiny, exam, tmp_path):
    calls: list = []
    url = unused_url()
    with pytest.raises(AmautaError, match="cannot connect") as error:
        run(_config(exam, tmp_path / "ev", generate_base_url=url), loader=_loader(tiny, calls), show_progress=False)
    assert url in str(error.value) and "\n" not in str(error.value) and calls == []


def test_amauta_serve_writes_the_short_answers_the_loaded_model_would(tiny, exam, tmp_path):
    from amauta.serve.app import ServeConfig, create_app
    from amauta.serve.backends import TransformersBackend
    from amauta.serve.server import BackgroundServer

    local = tmp_path / "local"
    run(_config(exam, local), loader=_loader(tiny, []), show_progress=False)
    with BackgroundServer(create_app(TransformersBackend({"tiny-llama": tiny("llama")}), ServeConfig())) as url:
        out = run(_config(exam, tmp_path / "served", generate_base_url=url + "/v1"), loader=_loader(tiny, []),
                  show_progress=False)
    served, in_process = _rows(out), _rows(local)
    assert any(r["output"] for r in served.values())  # the tiny model writes something, so equality says something
    assert {i: r["output"] for i, r in served.items()} == {i: r["output"] for i, r in in_process.items()}
    assert json.loads((out / "summary.json").read_text())["generation"]["models"] == {"base": "tiny-llama"}
