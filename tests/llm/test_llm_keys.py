"""One API-key rule (issue 10, item 10): the flag, then AMAUTA_<ROLE>_API_KEY, then AMAUTA_API_KEY, then
OPENAI_API_KEY; and every command that uses a key (build-qa, the judge, rag ask, serve) follows it.

The command tests put a different key in each variable and a fake endpoint that accepts only the one the
rule picks, so a command reading any other variable gets HTTP 401.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from amauta.core.errors import AmautaError
from amauta.llm import api_key, make_llm
from amauta.llm.fake_server import FakeOpenAIServer
from amauta.llm.keys import api_key_with_source

REPO = Path(__file__).resolve().parents[2]
VARIABLES = ("AMAUTA_JUDGE_API_KEY", "AMAUTA_LLM_API_KEY", "AMAUTA_SERVER_API_KEY", "AMAUTA_API_KEY", "OPENAI_API_KEY")
MESSAGES = [{"role": "user", "content": "Hola"}]


@pytest.fixture(autouse=True)
def no_keys(monkeypatch):
    for name in VARIABLES:
        monkeypatch.delenv(name, raising=False)


@pytest.fixture()
def every_key(monkeypatch):
    """Each variable holds its own key: 'key-of-AMAUTA_LLM_API_KEY', ..."""
    for name in VARIABLES:
        monkeypatch.setenv(name, f"key-of-{name}")


@pytest.mark.parametrize("role", ["JUDGE", "LLM", "SERVER"])
def test_precedence_flag_role_amauta_openai(role, monkeypatch):
    assert api_key(role) is None
    monkeypatch.setenv("OPENAI_API_KEY", "openai")
    assert api_key(role) == "openai"
    monkeypatch.setenv("AMAUTA_API_KEY", "amauta")
    assert api_key(role) == "amauta"
    for other in {"JUDGE", "LLM", "SERVER"} - {role}:  # another role's key is not this role's
        monkeypatch.setenv(f"AMAUTA_{other}_API_KEY", "other")
    assert api_key(role) == "amauta"
    monkeypatch.setenv(f"AMAUTA_{role}_API_KEY", "own")
    assert api_key_with_source(role) == ("own", f"AMAUTA_{role}_API_KEY")
    assert api_key_with_source(role, "flag") == ("flag", "flag")


def test_empty_variables_count_as_unset_and_roles_are_checked(monkeypatch):
    monkeypatch.setenv("AMAUTA_LLM_API_KEY", "")
    monkeypatch.setenv("AMAUTA_API_KEY", "  ")
    monkeypatch.setenv("OPENAI_API_KEY", "openai")
    assert api_key("LLM") == "openai" and api_key("LLM", "") == "openai"
    with pytest.raises(AmautaError, match="unknown API key role 'JUEZ'"):
        api_key("JUEZ")


def test_endpoint_client_sends_its_roles_key(every_key):
    with FakeOpenAIServer("ok", api_key="key-of-AMAUTA_LLM_API_KEY") as url:
        assert make_llm("fake-model", url).complete(MESSAGES) == "ok"
        with pytest.raises(AmautaError, match="refused.*set AMAUTA_JUDGE_API_KEY"):
            make_llm("fake-model", url, role="JUDGE").complete(MESSAGES)
        assert make_llm("fake-model", url, api_key="key-of-AMAUTA_LLM_API_KEY", role="JUDGE").complete(MESSAGES) == "ok"


def test_build_qa_uses_the_llm_key(tmp_path, every_key, monkeypatch):
    from amauta.data.qa_commands import register

    monkeypatch.setenv("AMAUTA_HOME", str(tmp_path / "home"))
    app, data_app = typer.Typer(), typer.Typer()
    app.add_typer(data_app, name="data")
    register(data_app)
    reply = '[{"instruction": "¿Cuándo declaro el IVA?", "input": "", "output": "Cada mes."}]'
    with FakeOpenAIServer(reply, api_key="key-of-AMAUTA_LLM_API_KEY") as url:
        result = CliRunner().invoke(app, ["data", "build-qa", str(REPO / "examples/docs/rimpe.md"), "--out",
                                          str(tmp_path / "qa.jsonl"), "--base-url", url, "--model", "fake",
                                          "--pairs-per-chunk", "1", "--max-retries", "0"])
    assert result.exit_code == 0, result.exception
    assert (tmp_path / "qa.jsonl").read_text(encoding="utf-8").count("Cada mes.") >= 1
    assert "key-of-" not in "".join(p.read_text(errors="replace") for p in tmp_path.rglob("*") if p.is_file())


def test_judge_uses_the_judge_key_and_a_flag_beats_it(every_key, monkeypatch):
    from amauta.judge.judge import JudgeConfig, make_judge

    with FakeOpenAIServer("ok", api_key="key-of-AMAUTA_JUDGE_API_KEY") as url:
        config = JudgeConfig(judge_url=url, judge_model="juez", judge_endpoint_retries=0)
        llm, _ = make_judge(config)
        assert llm.complete(MESSAGES) == "ok"
        old_run = JudgeConfig(judge_url=url, judge_model="juez", judge_endpoint_retries=0,
                              judge_api_key_env="OPENAI_API_KEY")  # what config.yaml of older runs holds
        assert make_judge(old_run)[0].complete(MESSAGES) == "ok"
        with pytest.raises(AmautaError, match="refused"):
            make_judge(config, api_key="from-the-flag")[0].complete(MESSAGES)
    with FakeOpenAIServer("ok", api_key="custom") as url:
        monkeypatch.setenv("MY_JUDGE_KEY", "custom")  # a config may name its own variable: read after the flag
        custom = JudgeConfig(judge_url=url, judge_model="juez", judge_endpoint_retries=0, judge_api_key_env="MY_JUDGE_KEY")
        assert make_judge(custom)[0].complete(MESSAGES) == "ok"


def test_rag_ask_with_an_endpoint_uses_the_llm_key(every_key, monkeypatch):
    from amauta.cli import app
    from amauta.rag import answer

    class Answerer:  # the index is not what this test is about: the model is asked the question as is
        def __init__(self, *args, **kwargs):
            pass

        def answer(self, question, llm, max_tokens):
            return answer.Answer(text=llm.complete([{"role": "user", "content": question}], max_tokens=max_tokens))

    monkeypatch.setattr(answer, "RagAnswerer", Answerer)
    with FakeOpenAIServer("La tarifa es 15 %.", api_key="key-of-AMAUTA_LLM_API_KEY") as url:
        result = CliRunner().invoke(app, ["rag", "ask", "¿Tarifa del IVA?", "--index", "leyes", "--base-url", url,
                                          "--model", "fake"])
    assert result.exit_code == 0, result.exception
    assert "La tarifa es 15 %." in result.output


def test_serve_requires_the_server_key_and_says_where_it_came_from(every_key, monkeypatch):
    import uvicorn

    from amauta.serve import app as serve_app
    from amauta.serve import backends
    from amauta.serve.commands import register
    from amauta.serve.server import free_port

    seen = {}

    class Engine:
        @classmethod
        def load(cls, *args, **kwargs):
            return cls()

        def cards(self):
            return []

    def capture(engine, config, answerer):
        seen["config"] = config

    monkeypatch.setattr(backends, "TransformersBackend", Engine)
    monkeypatch.setattr(serve_app, "create_app", capture)
    monkeypatch.setattr(uvicorn, "run", lambda *args, **kwargs: None)
    app = typer.Typer()
    register(app)
    app.command("other")(lambda: None)  # two commands, so `serve` is a subcommand as in `amauta`

    def serve(*flags):
        result = CliRunner().invoke(app, ["serve", "--port", str(free_port()), *flags])
        assert result.exit_code == 0, result.exception
        return seen["config"].api_key, " ".join(result.output.split())  # rich wraps at 80 columns here

    key, output = serve()
    assert key == "key-of-AMAUTA_SERVER_API_KEY" and "[API key required: $AMAUTA_SERVER_API_KEY]" in output
    key, output = serve("--api-key", "flag-key")
    assert key == "flag-key" and "[API key required: --api-key]" in output
    monkeypatch.delenv("AMAUTA_SERVER_API_KEY")
    assert serve()[0] == "key-of-AMAUTA_API_KEY"
