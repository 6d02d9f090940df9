"""The whole stage and its CLI on a tiny model with a fake judge endpoint: run, resume, down endpoint."""

from __future__ import annotations

import json
import os

import pytest
import typer
from judge_sets import SET
from typer.testing import CliRunner

from amauta.core.errors import AmautaError
from amauta.judge.commands import add_eval_commands
from amauta.judge.judge import JudgeConfig, run
from amauta.llm.fake_server import FakeOpenAIServer, unused_url

VERDICT = json.dumps({"exactitud": 3, "relevancia": 4, "coherencia": 2, "contexto": 5, "justificacion": "Regular."})


@pytest.fixture
def mini_set(tmp_path):
    path = tmp_path / "mini.yaml"
    path.write_text(SET, encoding="utf-8")
    return path


def _config(mini_set, out, url, **kw):
    return JudgeConfig(prompt_set=str(mini_set), model="tiny-llama", candidates=["base", "base@greedy"], n=2,
                       max_new_tokens=4, judge_url=url, judge_model="juez", judge_backoff=0.0, out=str(out), **kw)


def test_run_writes_the_folder_and_resumes_without_asking_again(tmp_path, mini_set, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-secret-123")
    out = tmp_path / "run"
    with FakeOpenAIServer(VERDICT) as url:
        run(_config(mini_set, out, url), show_progress=False)
        summary = json.loads((out / "summary.json").read_text())
        for name in ("config.yaml", "answers.jsonl", "judgments.jsonl", "items.jsonl", "manifest.json"):
            assert (out / name).is_file(), name
        assert summary["task"] == "judge" and summary["judge"] == "juez"
        assert summary["answers"] == 3 * 2 + 3  # sampling: 2 attempts × 3 turns; greedy: 1 × 3
        assert summary["judged"] == summary["answers"] and summary["failed"] == 0
        table = summary["judge_table"]["base"]
        assert table["basic"]["n"] == 1 and table["contextual"]["n"] == 2 and table["all"]["n"] == 3
        assert table["all"]["mean_of_n"]["overall"] == pytest.approx(3.5)
        assert summary["judge_table"]["base@greedy"]["all"]["attempts"] == 1
        manifest = json.loads((out / "manifest.json").read_text())
        assert manifest["stage"] == "evaluate.judge"
        assert "sk-secret-123" not in json.dumps(manifest) + (out / "config.yaml").read_text()
    # Rerun against a judge that would fail: every verdict is cached, so it is never asked.
    server = FakeOpenAIServer("this would not be JSON")
    with server as url:
        run(_config(mini_set, out, url), show_progress=False)
    assert server.chat_requests == 0
    again = json.loads((out / "summary.json").read_text())
    assert again["judged"] == summary["judged"] and again["judge_table"] == summary["judge_table"]


def test_down_endpoint_stops_with_one_line_and_keeps_answers(tmp_path, mini_set):
    out = tmp_path / "run"
    with pytest.raises(AmautaError, match=r"no answer after 2 tries.*0 verdicts so far are kept"):
        run(_config(mini_set, out, unused_url(), judge_endpoint_retries=1), show_progress=False)
    assert len((out / "answers.jsonl").read_text().splitlines()) == 9
    summary = json.loads((out / "summary.json").read_text())
    assert summary["answers"] == 9 and summary["judged"] == 0


def test_no_judge_is_refused_before_any_generation(tmp_path, mini_set):
    with pytest.raises(AmautaError, match="no judge given"):
        run(JudgeConfig(prompt_set=str(mini_set), model="tiny-llama", out=str(tmp_path / "r")), show_progress=False)
    assert not (tmp_path / "r" / "answers.jsonl").exists()


def test_cli_judge_summary_and_grade(tmp_path, mini_set):
    app = typer.Typer()
    eval_app = typer.Typer()
    app.add_typer(eval_app, name="eval")
    add_eval_commands(eval_app)
    runner = CliRunner()
    out = tmp_path / "cli"
    with FakeOpenAIServer(VERDICT) as url:
        result = runner.invoke(app, ["eval", "judge", "--set", str(mini_set), "--model", "tiny-llama",
                                     "--candidates", "base", "--n", "1", "--max-new-tokens", "4",
                                     "--judge-url", url, "--judge-model", "juez", "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert "mean-of-N" in result.output and "wrote" in result.output
    result = runner.invoke(app, ["eval", "judge", "--summary", "--out", str(out)])
    assert result.exit_code == 0 and "LLM judge (juez)" in result.output
    result = runner.invoke(app, ["eval", "grade", str(out), "--grader", "ana"], input="4\n4\n4\n4\n" * 3)
    assert result.exit_code == 0, result.output
    assert "Agreement, judge vs people" in result.output
    result = runner.invoke(app, ["eval", "grade", str(out), "--status"])
    assert "ana: 3/3" in result.output
    result = runner.invoke(app, ["eval", "judge", "--set", str(mini_set), "--candidates", "base", "--out", str(out),
                                 "--n", "0"])
    assert result.exit_code != 0 and "'n'" in str(result.exception)


@pytest.mark.integration
def test_embedded_smollm2_answers_law_questions_and_is_judged(tmp_path, smollm2):
    out = tmp_path / "law"
    with FakeOpenAIServer(VERDICT) as url:
        config = JudgeConfig(prompt_set="law-ec", model="smollm2-135m-instruct", candidates=["base@greedy"], n=3,
                             limit=1, max_new_tokens=16, judge_url=url, judge_model="juez", out=str(out))
        run(config, loader=lambda spec, **kw: smollm2, show_progress=False)
    rows = [json.loads(line) for line in (out / "items.jsonl").read_text().splitlines()]
    assert [r["item"] for r in rows] == ["law-basic-01", "law-complex-01"]  # greedy: one attempt stands for 3
    assert all(r["answer"].strip() and r["new_tokens"] > 0 for r in rows)
    assert all(r["reference"] for r in rows) and all(r["scores"] for r in rows)
    summary = json.loads((out / "summary.json").read_text())
    assert summary["judge_table"]["base@greedy"]["all"]["n"] == 2


@pytest.mark.integration
def test_law_ec_four_way_comparison_with_a_real_index_and_adapter(tmp_path, monkeypatch):
    """base, a LoRA adapter, RAG and adapter+RAG in one table: the question the thesis left open."""
    from pathlib import Path

    from peft import LoraConfig, get_peft_model

    from amauta.models.tiny import tiny_model
    from amauta.rag.index import IndexConfig
    from amauta.rag.index import run as build_index

    monkeypatch.setenv("AMAUTA_HOME", str(tmp_path / "home"))
    docs = Path(__file__).resolve().parents[2] / "examples" / "docs"
    build_index(IndexConfig(docs=[str(docs)], index="leyes", threads=1))
    adapter = tmp_path / "run" / "adapter"
    get_peft_model(tiny_model("llama"), LoraConfig(r=4, target_modules=["q_proj", "v_proj"],
                                                   init_lora_weights=False)).save_pretrained(adapter)
    run_dir = str(tmp_path / "run")
    out = tmp_path / "compare"
    with FakeOpenAIServer(VERDICT) as url:
        config = JudgeConfig(prompt_set="law-ec", model="tiny-llama", limit=1, n=1, max_new_tokens=4,
                             candidates=["base", f"ft={run_dir}", "rag:leyes", f"ft+rag={run_dir}+rag:leyes"],
                             judge_url=url, judge_model="juez", out=str(out))
        run(config, show_progress=False)
    summary = json.loads((out / "summary.json").read_text())
    assert list(summary["judge_table"]) == ["base", "ft", "rag:leyes", "ft+rag"]
    rows = [json.loads(line) for line in (out / "items.jsonl").read_text().splitlines()]
    by = {(r["candidate"], r["item"]): r for r in rows}
    assert by[("rag:leyes", "law-basic-01")]["sources"] and not by[("base", "law-basic-01")]["sources"]
    assert any(by[("ft", i)]["answer"] != by[("base", i)]["answer"] for i in ("law-basic-01", "law-complex-01"))
    from amauta.judge.tables import report_markdown

    assert "| ft+rag |" in report_markdown(summary)


def test_local_model_judge_whose_context_is_too_short_stops_with_one_line(tmp_path, mini_set):
    out = tmp_path / "local"
    config = JudgeConfig(prompt_set=str(mini_set), model="tiny-llama", candidates=["base@greedy"], n=1,
                         max_new_tokens=4, judge_model="tiny-llama", judge_retries=0, judge_max_tokens=16, out=str(out))
    with pytest.raises(AmautaError, match=r"judge failed: .*context holds 512.*0 verdicts so far are kept"):
        run(config, show_progress=False)
    summary = json.loads((out / "summary.json").read_text())
    assert summary["judge"] == "tiny-llama" and summary["answers"] == 3 and summary["judged"] == 0


def test_example_config_validates():
    from pathlib import Path

    from amauta.core.config import load_config

    path = Path(__file__).resolve().parents[2] / "examples" / "judge-law-ec.yaml"
    config = load_config(JudgeConfig, path)
    assert config.prompt_set == "law-ec" and len(config.candidates) == 4


def test_judge_replies_that_are_never_rubric_json_are_named_in_the_closing_message(tmp_path, mini_set):
    """Issue 10 item 14: it said "nothing graded yet; judge them with --judge-url" although one was given."""
    from rich.console import Console

    out = tmp_path / "run"
    console = Console(record=True, width=400, file=open(os.devnull, "w"))
    server = FakeOpenAIServer("Excelente respuesta, le doy un cinco.")
    with server as url:
        run(_config(mini_set, out, url, judge_retries=0), show_progress=False, console=console)
    text = " ".join(console.export_text().split())
    assert "--judge-url" not in text and "nothing graded yet" not in text
    assert (f"the judge at {url} (juez) answered {server.chat_requests} times but no reply was valid rubric JSON; "
            "first bad reply: 'Excelente respuesta, le doy un cinco.'") in text
    assert "--judge-retries" in text
    summary = json.loads((out / "summary.json").read_text())
    assert summary["judged"] == 0 and summary["judge_failures"]["replies"] == server.chat_requests
