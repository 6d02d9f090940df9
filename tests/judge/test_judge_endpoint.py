"""The judge against a fake OpenAI-compatible server on loopback: verdicts, retries, failures, a down endpoint."""

from __future__ import annotations

import json

import pytest

from amauta.core.errors import AmautaError, EndpointError
from amauta.core.files import read_jsonl
from amauta.judge.candidates import Answer
from amauta.judge.judge import judge_answers, read_judgments, summarize_run
from amauta.llm.client import OpenAICompatibleLLM
from amauta.llm.fake_server import FakeHTTPError, FakeOpenAIServer, unused_url


def _answers() -> list[Answer]:
    rows = []
    for candidate in ("base", "runs/law"):
        for attempt in range(3):
            rows.append(Answer(candidate, "law-basic-04", 0, attempt, "basic", "¿Cuál es la tarifa del IVA?",
                               f"{candidate} dice 15 % (intento {attempt})", reference="15 % desde abril de 2024"))
        for turn, question in enumerate(["Me llamo Lucía.", "¿Cómo me llamo?"]):
            rows.append(Answer(candidate, "series-04", turn, 0, "contextual", question,
                               f"{candidate}: respuesta {turn}"))
    return rows


def _verdict(messages) -> str:
    """Score by what the answer says, so tests can predict every number."""
    user = messages[-1]["content"] if messages[-1]["role"] == "user" else messages[1]["content"]
    score = 5 if "runs/law" in user.split("calificar")[-1] else 3
    if "intento 1" in user:
        score -= 1
    return ("Claro, aquí está:\n```json\n" + json.dumps({"exactitud": score, "relevancia": score, "coherencia": 4,
            "contexto": 4, "justificación": "Respuesta evaluada."}) + "\n```")


def test_judge_scores_every_answer_once_and_caches(tmp_path):
    answers = _answers()
    cache = tmp_path / "judgments.jsonl"
    with FakeOpenAIServer(_verdict) as url:
        llm = OpenAICompatibleLLM(url, "juez", max_retries=0)
        verdicts = judge_answers(llm, answers, cache, workers=4, show_progress=False)
        assert len(verdicts) == len(answers) and all(v["scores"] for v in verdicts.values())
        asked = llm.calls
        # A second run asks nothing: every verdict is in the append-only cache.
        again = judge_answers(llm, answers, cache, workers=4, show_progress=False)
        assert llm.calls == asked and again == verdicts
    law = verdicts[("runs/law", "law-basic-04", 0, 0)]
    assert law["scores"] == {"accuracy": 5, "relevance": 5, "coherence": 4, "context": 4}
    assert law["justification"] == "Respuesta evaluada." and law["overall"] == 4.5
    # The second turn of a series is judged with the first turn and the model's own answer as context.
    keys = {v["key"] for v in verdicts.values()}
    assert len(keys) == len(answers)


def test_summary_best_of_n_mean_of_n_and_paired_delta(tmp_path):
    answers = _answers()
    with FakeOpenAIServer(_verdict) as url:
        verdicts = judge_answers(OpenAICompatibleLLM(url, "juez"), answers, tmp_path / "judgments.jsonl",
                                 show_progress=False)
    summary = summarize_run(tmp_path, answers, verdicts, ["base", "runs/law"], ["basic", "contextual"], {"judge": "juez"})
    base = summary["judge_table"]["base"]["basic"]
    # Attempts score 3, 2, 3 on accuracy and relevance (4 on the others): best 3.5 overall, mean 3.33.
    assert base["best_of_n"]["overall"] == pytest.approx(3.5)
    assert base["mean_of_n"]["overall"] == pytest.approx((3.5 + 3.0 + 3.5) / 3)
    assert base["best_of_n"]["accuracy"] == 3 and base["mean_of_n"]["accuracy"] == pytest.approx(8 / 3)
    assert summary["judge_table"]["base"]["all"]["n"] == 3  # one basic item + two series turns
    assert summary["judge_deltas"]["runs/law"]["delta"] > 0
    rows = list(read_jsonl(tmp_path / "items.jsonl"))
    assert len(rows) == len(answers) and all(r["scores"] for r in rows)
    assert json.loads((tmp_path / "summary.json").read_text())["task"] == "judge"


def test_reply_that_is_not_json_is_asked_again_then_recorded_as_failure(tmp_path):
    answers = _answers()[:1]
    good = json.dumps({"exactitud": 4, "relevancia": 4, "coherencia": 4, "contexto": 4, "justificacion": "ok"})
    cache = tmp_path / "judgments.jsonl"
    with FakeOpenAIServer(["No sé calificar esto.", good]) as url:
        llm = OpenAICompatibleLLM(url, "juez")
        verdict = judge_answers(llm, answers, cache, retries=2, show_progress=False)[answers[0].key]
        assert llm.calls == 2 and verdict["scores"]["accuracy"] == 4
    cache2 = tmp_path / "j2.jsonl"
    with FakeOpenAIServer("Excelente respuesta, le doy un cinco.") as url:
        llm = OpenAICompatibleLLM(url, "juez")
        verdict = judge_answers(llm, answers, cache2, retries=1, show_progress=False)[answers[0].key]
    assert verdict["scores"] is None and "2 tries failed" in verdict["error"]
    assert verdict["raw"] == ["Excelente respuesta, le doy un cinco."] * 2
    # The failure is on disk, and the next run asks again (and succeeds).
    assert read_judgments(cache2)[verdict["key"]]["error"]
    with FakeOpenAIServer(good) as url:
        verdict = judge_answers(OpenAICompatibleLLM(url, "juez"), answers, cache2, show_progress=False)[answers[0].key]
    assert verdict["scores"]["context"] == 4


def test_endpoint_down_retries_then_one_line_and_keeps_results(tmp_path):
    answers = _answers()
    cache = tmp_path / "judgments.jsonl"
    with FakeOpenAIServer(_verdict) as url:
        judge_answers(OpenAICompatibleLLM(url, "juez"), answers[:3], cache, show_progress=False)
    llm = OpenAICompatibleLLM(unused_url(), "juez", max_retries=2, backoff=0.01)
    with pytest.raises(AmautaError) as info:
        judge_answers(llm, answers, cache, workers=2, show_progress=False)
    message = str(info.value)
    assert "no answer after 3 tries" in message and "3 verdicts so far are kept" in message
    assert "rerun the same command" in message and "\n" not in message
    assert len(read_judgments(cache)) == 3


def test_a_refused_request_is_one_failed_verdict_and_the_run_goes_on(tmp_path):
    answers = _answers()[:3]

    def reply(messages):
        if "intento 1" in json.dumps(messages, ensure_ascii=False):
            raise FakeHTTPError(400, "demasiado largo para el juez")
        return _verdict(messages)

    with FakeOpenAIServer(reply) as url:
        verdicts = judge_answers(OpenAICompatibleLLM(url, "juez"), answers, tmp_path / "j.jsonl", show_progress=False)
    refused = verdicts[answers[1].key]
    assert refused["scores"] is None and "demasiado largo para el juez" in refused["error"]
    assert verdicts[answers[0].key]["scores"] and verdicts[answers[2].key]["scores"]


class _Failing:
    """A judge whose every request fails with the given endpoint error (what the client raises)."""

    name = "juez"

    def __init__(self, error: EndpointError) -> None:
        self.error = error

    def complete(self, messages, **_) -> str:
        raise self.error


def test_the_judge_goes_on_or_stops_by_the_error_status_not_its_wording(tmp_path):
    answers = _answers()[:1]
    refused = EndpointError("http://juez/v1: rechazada", endpoint="http://juez/v1", status=400)
    verdict = judge_answers(_Failing(refused), answers, tmp_path / "a.jsonl", show_progress=False)[answers[0].key]
    assert verdict["scores"] is None and verdict["error"] == "http://juez/v1: rechazada"
    # Down, with "(400" in its words (a timeout in ms): the run stops, the verdicts so far are kept.
    down = EndpointError("http://juez/v1: no answer (400 ms timeout)", endpoint="http://juez/v1", status=None)
    with pytest.raises(AmautaError, match=r"judge failed: .*400 ms timeout.*0 verdicts so far are kept"):
        judge_answers(_Failing(down), answers, tmp_path / "b.jsonl", show_progress=False)
    wrong_key = EndpointError("http://juez/v1: the API key was refused (401)", endpoint="http://juez/v1", status=401)
    with pytest.raises(AmautaError, match="judge failed: .*401"):
        judge_answers(_Failing(wrong_key), answers, tmp_path / "c.jsonl", show_progress=False)


def test_transient_5xx_is_retried_by_the_client(tmp_path):
    answers = _answers()[:1]
    good = json.dumps({"exactitud": 5, "relevancia": 5, "coherencia": 5, "contexto": 5})
    with FakeOpenAIServer(good, fail_first=2, fail_status=503) as url:
        llm = OpenAICompatibleLLM(url, "juez", max_retries=3, backoff=0.01)
        verdict = judge_answers(llm, answers, tmp_path / "j.jsonl", show_progress=False)[answers[0].key]
    assert verdict["overall"] == 5.0
