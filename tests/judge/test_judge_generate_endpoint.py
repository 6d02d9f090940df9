"""`eval judge --generate-base-url`: the candidates' answers from an OpenAI-compatible endpoint (the fake
server, and the real `amauta serve` app with a tiny model and an adapter) instead of a model loaded here."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from judge_sets import SET

from amauta.core.errors import AmautaError
from amauta.core.files import read_jsonl
from amauta.judge.judge import JudgeConfig, run
from amauta.llm.fake_server import FakeOpenAIServer, fake_judge_reply, unused_url


@pytest.fixture
def mini_set(tmp_path) -> Path:
    path = tmp_path / "mini.yaml"
    path.write_text(SET, encoding="utf-8")
    return path


@pytest.fixture
def no_local_model(monkeypatch):
    """Loading a candidate model in this process fails the test: the endpoint must write every answer."""
    import amauta.models.load

    def refuse(*args, **kwargs):
        raise AssertionError("a candidate model was loaded in-process")

    monkeypatch.setattr(amauta.models.load, "load_model", refuse)


def _served_reply(messages, body) -> str:
    """Which model was asked, at what temperature, and the question: what the test checks."""
    return f"{body['model']} (t={body.get('temperature')}) responde: {messages[-1]['content']}"


def _config(mini_set, out, generate_url, judge_url=None, **kw) -> JudgeConfig:
    judge = {"judge_url": judge_url, "judge_model": "juez", "judge_backoff": 0.0} if judge_url else {"skip_judge": True}
    options = {"candidates": ["base", "base@greedy"], "n": 2, "max_new_tokens": 4, **judge, **kw}
    return JudgeConfig(prompt_set=str(mini_set), model="tiny-llama", generate_base_url=generate_url, out=str(out),
                       **options)


def test_answers_come_from_the_endpoint_are_judged_and_resume_from_the_cache(tmp_path, mini_set, no_local_model):
    out = tmp_path / "run"
    served = FakeOpenAIServer(_served_reply, model="servido")
    with served as url, FakeOpenAIServer(fake_judge_reply) as judge_url:
        run(_config(mini_set, out, url, judge_url), show_progress=False)
        asked = served.chat_requests
        assert asked == 2 * 3 + 3  # sampling: 2 attempts × 3 turns; greedy: 1 attempt × 3 turns
        answers = list(read_jsonl(out / "answers.jsonl"))
        assert len(answers) == asked and all(a["answer"].startswith("servido (t=") for a in answers)
        # greedy asks at temperature 0, sampling at the profile's sampling temperature
        assert {a["answer"].split(")")[0] for a in answers if a["candidate"] == "base@greedy"} == {"servido (t=0.0"}
        assert all("(t=0.0)" not in a["answer"] for a in answers if a["candidate"] == "base")
        # a series' second turn carries the endpoint's own first answer
        second = [r for r in served.requests if r["messages"][-1]["content"] == "¿Cómo me llamo?"]
        assert second and all(r["messages"][-2]["content"].startswith("servido") for r in second)
        summary = json.loads((out / "summary.json").read_text())
        record = {"answers": "endpoint", "endpoint": url, "models": {"base": "servido", "base@greedy": "servido"}}
        assert summary["generation"] == record and summary["judged"] == summary["answers"] == asked
        assert json.loads((out / "manifest.json").read_text())["generation"] == record
        run(_config(mini_set, out, url, judge_url), show_progress=False)  # resumed: nothing asked again
        assert served.chat_requests == asked


def test_in_process_runs_say_so(tmp_path, mini_set):
    out = tmp_path / "run"
    run(JudgeConfig(prompt_set=str(mini_set), model="tiny-llama", candidates=["base@greedy"], n=1, max_new_tokens=2,
                    skip_judge=True, out=str(out)), show_progress=False)
    assert json.loads((out / "summary.json").read_text())["generation"] == {"answers": "in-process"}


def test_a_down_endpoint_stops_in_one_line_before_anything_is_generated(tmp_path, mini_set, no_local_model):
    url = unused_url()
    with pytest.raises(AmautaError, match="cannot connect") as error:
        run(_config(mini_set, tmp_path / "run", url), show_progress=False)
    assert url in str(error.value) and "\n" not in str(error.value)
    assert not (tmp_path / "run" / "answers").exists()


def test_a_candidate_the_endpoint_does_not_serve_is_refused_with_the_serve_command(tmp_path, mini_set):
    with FakeOpenAIServer("hola", model="base-servido") as url:
        with pytest.raises(AmautaError, match=r"no model 'otro'.*serves base-servido.*amauta serve --adapter otro=RUN"):
            run(_config(mini_set, tmp_path / "run", url, candidates=["base", "otro=tiny-mistral"]),
                show_progress=False)
        with pytest.raises(AmautaError, match="no model 'grande'"):
            run(_config(mini_set, tmp_path / "run2", url, generate_model="grande"), show_progress=False)


def test_beam_search_is_refused_for_an_endpoint(tmp_path, mini_set):
    with FakeOpenAIServer("hola") as url:
        with pytest.raises(AmautaError, match="not by 'beam'"):
            run(_config(mini_set, tmp_path / "run", url, candidates=["base@beam"]), show_progress=False)


@pytest.fixture(scope="module")
def adapter_dir(tmp_path_factory) -> Path:
    """A LoRA adapter for tiny-llama whose B matrices are random, so it visibly changes the answers."""
    import torch
    from peft import LoraConfig, get_peft_model

    from amauta.models.tiny import tiny_model

    torch.manual_seed(0)
    peft_model = get_peft_model(tiny_model("llama"), LoraConfig(r=8, lora_alpha=64, target_modules=["q_proj", "v_proj"],
                                                                init_lora_weights=False))
    folder = tmp_path_factory.mktemp("adapter") / "es"
    peft_model.save_pretrained(folder)
    return folder


def test_amauta_serve_with_an_adapter_writes_what_the_loaded_models_would(tmp_path, mini_set, adapter_dir):
    from amauta.models.load import load_model
    from amauta.serve.app import ServeConfig, create_app
    from amauta.serve.backends import TransformersBackend
    from amauta.serve.server import BackgroundServer

    candidates = ["base@greedy", f"es={adapter_dir}@greedy"]
    backend = TransformersBackend({"tiny-llama": load_model("tiny-llama")}, {"es": adapter_dir})
    with BackgroundServer(create_app(backend, ServeConfig())) as url:
        served = run(_config(mini_set, tmp_path / "served", url + "/v1", candidates=candidates, max_new_tokens=6),
                     show_progress=False)
    local = run(_config(mini_set, tmp_path / "local", None, candidates=candidates, max_new_tokens=6),
                show_progress=False)
    summary = json.loads((served / "summary.json").read_text())
    assert summary["generation"]["models"] == {"base@greedy": "tiny-llama", "es": "es"}

    def answers(folder):
        return {(a["candidate"], a["item"], a["turn"]): a["answer"] for a in read_jsonl(folder / "answers.jsonl")}

    by_endpoint, in_process = answers(served), answers(local)
    assert by_endpoint == in_process  # the served base and adapter answer as the models loaded here
    assert by_endpoint[("es", "q1", 0)] != by_endpoint[("base@greedy", "q1", 0)]  # the adapter was used


def test_an_endpoint_that_fails_mid_run_keeps_the_answers_so_far_and_the_rerun_asks_only_the_rest(tmp_path, mini_set):
    from amauta.llm.fake_server import FakeHTTPError

    asked = []

    def fails_after_three(messages):
        asked.append(messages[-1]["content"])
        if len(asked) > 3:
            raise FakeHTTPError(500, "the GPU fell over")
        return "respuesta"

    out = tmp_path / "run"
    cfg = _config(mini_set, out, None, candidates=["base"], generate_workers=1)
    with FakeOpenAIServer(fails_after_three) as url:
        with pytest.raises(AmautaError, match="answer endpoint.*HTTP 500.*rerun the same command to resume"):
            run(cfg.model_copy(update={"generate_base_url": url}), show_progress=False)
    # attempts 0 and 1 of q1 are cached; s1's first attempt failed on its second turn
    again = FakeOpenAIServer("respuesta")
    with again as url:
        run(cfg.model_copy(update={"generate_base_url": url}), show_progress=False)
        assert again.chat_requests == 4  # both attempts of the two-turn series, nothing of q1
    assert len(list(read_jsonl(out / "answers.jsonl"))) == 6


def test_cli_generate_flags_reach_the_endpoint_with_the_key_never_written(tmp_path, mini_set, no_local_model):
    import typer
    from typer.testing import CliRunner

    from amauta.judge.commands import add_eval_commands

    app, eval_app = typer.Typer(), typer.Typer()
    app.add_typer(eval_app, name="eval")
    add_eval_commands(eval_app)
    out = tmp_path / "cli"
    served = FakeOpenAIServer(_served_reply, model="base-servido", api_key="clave-de-generar")
    with served as url:
        result = CliRunner().invoke(app, ["eval", "judge", "--set", str(mini_set), "--model", "tiny-llama",
                                          "--candidates", "base@greedy", "--n", "1", "--max-new-tokens", "4",
                                          "--generate-base-url", url, "--generate-model", "base-servido",
                                          "--generate-api-key", "clave-de-generar", "--generate-workers", "2",
                                          "--skip-judge", "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert served.chat_requests == 3 and {r["model"] for r in served.requests} == {"base-servido"}
    written = "".join(p.read_text(encoding="utf-8") for p in out.rglob("*") if p.is_file())
    assert "clave-de-generar" not in written and url in written  # where the answers came from, not the key
