"""Backends: adapters beside their base model (transformers), GGUF through llama.cpp, vLLM's command line."""

from __future__ import annotations

import json
import shlex
import sys
import threading
from pathlib import Path

import httpx
import pytest
from openai import OpenAI

from amauta.core.errors import AmautaError

MESSAGES = [{"role": "user", "content": "¿Qué es el IVA?"}]


@pytest.fixture(scope="module")
def adapter_dir(tmp_path_factory) -> Path:
    """A LoRA adapter for tiny-llama whose B matrices are random, so it visibly changes the answers."""
    import torch
    from peft import LoraConfig, get_peft_model

    from amauta.models.load import load_model

    torch.manual_seed(0)
    model = load_model("tiny-llama").model
    peft_model = get_peft_model(model, LoraConfig(r=8, lora_alpha=64, target_modules=["q_proj", "v_proj"],
                                                  init_lora_weights=False))
    folder = tmp_path_factory.mktemp("adapter") / "es"
    peft_model.save_pretrained(folder)
    return folder


def test_adapters_are_their_own_model_ids_and_base_stays_base(serve, adapter_dir):
    from amauta.chat.decoding import GenerationSettings
    from amauta.chat.generate import generate
    from amauta.models.load import load_model
    from amauta.serve.backends import TransformersBackend

    greedy = GenerationSettings(strategy="greedy", max_new_tokens=8)
    base_text = generate(load_model("tiny-llama"), MESSAGES, greedy).text
    adapted_text = generate(load_model("tiny-llama", adapter=adapter_dir), MESSAGES, greedy).text
    assert base_text != adapted_text  # otherwise the test could not tell them apart

    backend = TransformersBackend({"tiny-llama": load_model("tiny-llama")}, {"es": adapter_dir, "es2": adapter_dir})
    url = serve(backend)
    client = OpenAI(base_url=url + "/v1", api_key="-", max_retries=0)
    models = {m.id: m for m in client.models.list()}
    assert list(models) == ["tiny-llama", "es", "es2"] and models["es"].parent == "tiny-llama"

    def ask(model):
        return client.chat.completions.create(model=model, messages=MESSAGES, max_tokens=8, temperature=0)

    # Interleaved: the adapter switch happens per request on the shared weights.
    assert [ask(m).choices[0].message.content for m in ["es", "tiny-llama", "es2", "tiny-llama"]] == [
        adapted_text, base_text, adapted_text, base_text]
    assert backend.worker_key("es") == backend.worker_key("tiny-llama") == "tiny-llama"


def test_adapter_that_does_not_fit_is_refused(tmp_path, adapter_dir):
    from amauta.models.load import load_model
    from amauta.serve.backends import TransformersBackend, parse_adapters

    with pytest.raises(AmautaError, match="NAME=PATH"):
        parse_adapters(["sin-ruta"])
    with pytest.raises(AmautaError, match="given twice"):
        parse_adapters(["a=x", "a=y"])
    with pytest.raises(AmautaError, match="adapter folder not found"):
        TransformersBackend({"tiny-llama": load_model("tiny-llama")}, {"es": tmp_path / "nada"})
    with pytest.raises(AmautaError, match="already a model id"):
        TransformersBackend({"tiny-llama": load_model("tiny-llama")}, {"tiny-llama": adapter_dir})


# --- llama.cpp ---------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def gguf_backend():
    pytest.importorskip("llama_cpp", reason="llama-cpp-python (the llamacpp extra) is not installed")
    from amauta.serve.backends import LlamaCppBackend

    return LlamaCppBackend(["smollm2-135m-instruct"], context=1024)


@pytest.mark.integration
def test_llamacpp_backend_matches_raw_llama_cpp(serve, gguf_backend, smollm2):
    from amauta.models.templates import apply_template

    url = serve(gguf_backend)
    client = OpenAI(base_url=url + "/v1", api_key="-", max_retries=0)
    card = httpx.get(url + "/v1/models/smollm2-135m-instruct").json()
    assert card["backend"] == "llamacpp" and card["strategies"] == ["greedy", "sampling"] and card["context_length"] == 1024
    reply = client.chat.completions.create(model="smollm2-135m-instruct", messages=MESSAGES, max_tokens=12, temperature=0)
    # The same prompt straight into llama.cpp gives the same greedy tokens.
    entry = gguf_backend.entries["smollm2-135m-instruct"]
    llama, prompt = entry.llama, entry.render(MESSAGES)
    assert prompt == apply_template(smollm2, MESSAGES)  # the GGUF's chat template, as transformers renders it
    ids = llama.tokenize(prompt.encode(), add_bos=True, special=True)
    raw = llama.create_completion(ids, max_tokens=12, temperature=0.0, stop=["<|im_end|>", "<|im_start|>"])
    assert reply.choices[0].message.content == raw["choices"][0]["text"]
    assert reply.usage.prompt_tokens == len(ids) == raw["usage"]["prompt_tokens"]
    assert reply.usage.completion_tokens == raw["usage"]["completion_tokens"]
    streamed = client.chat.completions.create(model="smollm2-135m-instruct", messages=MESSAGES, max_tokens=12,
                                              temperature=0, stream=True)
    assert "".join(c.choices[0].delta.content or "" for c in streamed) == reply.choices[0].message.content
    # Sampling is repeatable with a seed; contrastive search is not offered by llama.cpp.
    kw = dict(model="smollm2-135m-instruct", messages=MESSAGES, max_tokens=10, temperature=0.9, seed=5)
    assert client.chat.completions.create(**kw).choices[0].message.content == \
        client.chat.completions.create(**kw).choices[0].message.content
    r = httpx.post(url + "/v1/chat/completions", json={**kw, "amauta": {"strategy": "contrastive"}})
    assert r.status_code == 400 and "not available" in r.json()["error"]["message"]
    long = [{"role": "user", "content": "palabra " * 1500}]
    r = httpx.post(url + "/v1/chat/completions", json={"model": "smollm2-135m-instruct", "messages": long})
    assert r.status_code == 400 and r.json()["error"]["code"] == "context_length_exceeded"


@pytest.mark.integration
def test_llamacpp_gives_the_profile_system_prompt_and_none_means_none(gguf_backend, smollm2):
    import dataclasses

    from amauta.models.templates import apply_template, render_messages

    entry = gguf_backend.entries["smollm2-135m-instruct"]
    user = [{"role": "user", "content": "Hola"}]
    assert entry.render(user) == apply_template(smollm2, user) and smollm2.profile.system_prompt in entry.render(user)
    # No system prompt: the GGUF's template would write SmolLM2's English default; Amauta's chatml writes none.
    none = dataclasses.replace(entry, profile=entry.profile.model_copy(update={"system_prompt": ""}))
    assert none.render(user) == render_messages(user, "chatml") and "SmolLM" not in none.render(user)


def test_serve_system_prompt_and_template_reach_the_models():
    from amauta.serve.backends import TransformersBackend

    backend = TransformersBackend.load(["tiny-llama"], system_prompt="Sé breve.", template="chatml")
    profile = backend.loaded("tiny-llama").profile
    assert profile.system_prompt == "Sé breve." and profile.template == "chatml"


@pytest.mark.integration
def test_llamacpp_run_stops_on_event(gguf_backend):
    stop = threading.Event()
    settings = gguf_backend.settings("smollm2-135m-instruct", strategy="greedy", max_new_tokens=200)
    run = gguf_backend.start("smollm2-135m-instruct", MESSAGES, settings, stop)
    for i, _ in enumerate(run):
        if i == 2:
            stop.set()
    assert run.result.finish_reason == "cancelled" and run.result.new_tokens < 10


def test_llamacpp_needs_a_gguf():
    from amauta.serve.backends import resolve_gguf

    with pytest.raises(AmautaError, match="needs a GGUF"):
        resolve_gguf("mistral-7b")
    with pytest.raises(AmautaError, match="needs a .gguf"):
        resolve_gguf("modelo.bin")
    with pytest.raises(AmautaError, match="not found"):
        resolve_gguf("/no/existe.gguf")


# --- vLLM --------------------------------------------------------------------------------------------

def _adapter(folder: Path, rank: int) -> Path:
    folder.mkdir(parents=True)
    (folder / "adapter_config.json").write_text(json.dumps({"r": rank, "peft_type": "LORA"}))
    return folder


def test_vllm_command_has_base_model_and_lora_modules(tmp_path):
    from amauta.serve.backends import vllm_command

    sri = _adapter(tmp_path / "runs" / "sri" / "adapter", 16)
    chat = _adapter(tmp_path / "chat-es", 64)
    command = vllm_command(["mistral-7b"], {"sri": tmp_path / "runs" / "sri", "chat": chat}, host="0.0.0.0",
                           port=9000, api_key="k")
    assert command[:3] == [sys.executable, "-m", "vllm.entrypoints.openai.api_server"]
    args = command[3:]
    assert args[args.index("--model") + 1] == "mistralai/Mistral-7B-v0.1"
    assert args[args.index("--served-model-name") + 1] == "mistral-7b"
    assert args[args.index("--host") + 1] == "0.0.0.0" and args[args.index("--port") + 1] == "9000"
    assert "--enable-lora" in args and args[args.index("--api-key") + 1] == "k"
    start = args.index("--lora-modules") + 1
    assert args[start:start + 2] == [f"sri={sri.resolve()}", f"chat={chat.resolve()}"]
    assert args[args.index("--max-lora-rank") + 1] == "64" and args[args.index("--max-loras") + 1] == "2"
    assert "--enable-lora" not in vllm_command(["Qwen/Qwen2.5-7B-Instruct"])
    with pytest.raises(AmautaError, match="embedded"):
        vllm_command(["smollm2-135m-instruct"])
    with pytest.raises(AmautaError, match="one base model"):
        vllm_command(["mistral-7b", "falcon-7b"])


def test_cli_vllm_dry_run_and_refusals(tmp_path):
    from typer.testing import CliRunner

    from amauta.cli import app

    _adapter(tmp_path / "sri", 8)
    runner = CliRunner()
    result = runner.invoke(app, ["serve", "--backend", "vllm", "--model", "mistral-7b", "--adapter",
                                 f"sri={tmp_path / 'sri'}", "--dry-run"])
    assert result.exit_code == 0, result.output
    args = shlex.split(result.output.strip())
    assert "--lora-modules" in args and f"sri={(tmp_path / 'sri').resolve()}" in args
    refused = runner.invoke(app, ["serve", "--host", "0.0.0.0", "--model", "tiny-llama"])
    assert refused.exit_code != 0 and "--api-key" in str(refused.exception)
    wrong = runner.invoke(app, ["serve", "--backend", "vlm"])
    assert "did you mean: vllm" in str(wrong.exception)
