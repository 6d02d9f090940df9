"""`amauta chat --backend llamacpp [--adapter RUN]`: the terminal chat on a GGUF through llama.cpp."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from amauta.cli import app
from amauta.core.errors import AmautaError

runner = CliRunner()


@pytest.fixture(scope="module")
def tiny_gguf_and_run(tmp_path_factory) -> tuple[Path, Path]:
    """tiny-llama as a GGUF that records its profile, and a run folder with a random LoRA for it."""
    pytest.importorskip("llama_cpp", reason="llama-cpp-python (the llamacpp extra) is not installed")
    import torch
    from peft import LoraConfig, get_peft_model

    from amauta.models.load import load_model, model_info
    from amauta.train.gguf_export import write_gguf

    folder = tmp_path_factory.mktemp("llamacpp-chat")
    loaded = load_model("tiny-llama")
    gguf = write_gguf(loaded.model, loaded.tokenizer, folder / "tiny-llama.gguf", float32=True,
                      info=model_info(loaded.profile, loaded.tokenizer))
    model = load_model("tiny-llama").model
    torch.manual_seed(0)
    get_peft_model(model, LoraConfig(r=4, lora_alpha=16, target_modules=["q_proj", "v_proj"],
                                     init_lora_weights=False)).save_pretrained(folder / "sri" / "adapter")
    (folder / "sri" / "manifest.json").write_text(json.dumps({"stage": "train", "profile": "tiny-llama"}))
    return gguf, folder / "sri"


def test_chat_on_llamacpp_with_an_adapter(tiny_gguf_and_run, tmp_path, monkeypatch):
    monkeypatch.setenv("AMAUTA_HOME", str(tmp_path / "home"))
    gguf, run = tiny_gguf_and_run
    result = runner.invoke(app, ["chat", "--backend", "llamacpp", "--model", str(gguf), "--adapter", str(run),
                                 "-n", "4", "--threads", "1"], input="Hola\n/strategy sampling\nOtra vez\n/exit\n",
                           env={"COLUMNS": "400"})
    assert result.exit_code == 0, result.output
    # Profiles that default to contrastive search (SmolLM2's, the tiny ones') start greedy on llama.cpp.
    assert f"Amauta chat · tiny-llama + {run} · greedy" in result.output
    assert "· greedy" in result.output and "· sampling" in result.output and "tokens" in result.output
    assert len(list((tmp_path / "home" / "gguf-lora").glob("*.gguf"))) == 1  # the adapter, converted once


def test_chat_session_answers_with_the_adapter(tiny_gguf_and_run, tmp_path, monkeypatch):
    """The session's answer is the backend's for the adapter's model id, and differs from the base's."""
    monkeypatch.setenv("AMAUTA_HOME", str(tmp_path / "home"))
    from amauta.serve.llamacpp_chat import llamacpp_chat_session

    gguf, run = tiny_gguf_and_run
    session = llamacpp_chat_session(str(gguf), run, system="", template=None, threads=1,
                                    decoding={"strategy": "greedy", "max_new_tokens": 6})
    assert session.model_id == "sri" and session.loaded.extra["adapter"] == str(run)
    adapted = session.ask("¿Qué es el IVA?")
    base = llamacpp_chat_session(str(gguf), None, system="", template=None, threads=1,
                                 decoding={"strategy": "greedy", "max_new_tokens": 6})
    assert base.model_id == "tiny-llama" and base.ask("¿Qué es el IVA?") != adapted
    assert session.last_result.new_tokens >= 1 and session.history[-1] == {"role": "assistant", "content": adapted}


@pytest.mark.parametrize("argv, message", [
    (["chat", "--backend", "llamacp"], "unknown backend 'llamacp' (did you mean: llamacpp"),
    (["chat", "--backend", "llamacpp", "--quantization", "4bit"], "--dtype and --quantization are for --backend "
                                                                  "transformers"),
    (["chat", "--backend", "llamacpp", "--model", "mistral-7b"], "needs a GGUF file"),
])
def test_chat_backend_flags_refused_in_one_line(argv, message):
    result = runner.invoke(app, argv)
    assert isinstance(result.exception, AmautaError), result.output
    assert message in str(result.exception) and "\n" not in str(result.exception)


def test_chat_llamacpp_refuses_strategies_it_lacks(tiny_gguf_and_run):
    gguf, _ = tiny_gguf_and_run
    result = runner.invoke(app, ["chat", "--backend", "llamacpp", "--model", str(gguf), "-s", "contrastive"])
    assert isinstance(result.exception, AmautaError), result.output
    assert "--strategy contrastive is not available with --backend llamacpp" in str(result.exception)
