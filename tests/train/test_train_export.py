"""Export: merged weights give the base+adapter logits, GGUF reloads with transformers, model card."""

from __future__ import annotations

import json
import os
import stat

import pytest
import torch
from typer.testing import CliRunner

from amauta.cli import app
from amauta.core.errors import AmautaError
from amauta.train.config import build_config
from amauta.train.export import export_run
from amauta.train.recipe import run

TEXT = "¿Cuánto es 3 más 4? El Servicio de Rentas Internas administra los impuestos."


@pytest.fixture
def trained(run_config):
    # A high learning rate so the adapter moves the logits visibly (the comparison is not trivial).
    cfg = build_config(run_config(max_steps=4, checkpoint_every=4, eval_every=4, optimizer={"lr": 5e-2},
                                  lora={"targets": "all-linear"}), {})
    return run(cfg, progress=False)


def test_merge_gives_base_plus_adapter_logits_and_gguf_reloads(trained, tmp_path):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from amauta.models.load import load_model

    out = export_run(trained, tmp_path / "export", merge=True, gguf=True, dtype="float32")
    names = {p.name for p in out.iterdir()}
    assert {"model.safetensors", "config.json", "tokenizer.json", "README.md", "manifest.json", "model-f32.gguf"} <= names

    with_adapter = load_model("tiny-llama", adapter=trained)
    base = load_model("tiny-llama")
    merged = AutoModelForCausalLM.from_pretrained(out, dtype=torch.float32)
    from_gguf = AutoModelForCausalLM.from_pretrained(out, gguf_file="model-f32.gguf", dtype=torch.float32)
    gguf_tokenizer = AutoTokenizer.from_pretrained(out, gguf_file="model-f32.gguf")
    ids = with_adapter.tokenizer(TEXT, return_tensors="pt", add_special_tokens=False).input_ids
    assert gguf_tokenizer(TEXT, add_special_tokens=False).input_ids == ids[0].tolist()
    with torch.no_grad():
        expected = with_adapter.model(ids).logits
        assert (base.model(ids).logits - expected).abs().max() > 1e-2  # the adapter changed something
        assert torch.allclose(merged(ids).logits, expected, atol=1e-5)
        assert torch.allclose(from_gguf(ids).logits, expected, atol=1e-5)

    card = (out / "README.md").read_text()
    assert "base_model:" in card and "| LoRA | r 4, alpha 8.0, dropout 0.1, targets all-linear |" in card
    assert "48 training and 8 validation" in card
    assert json.loads((out / "manifest.json").read_text())["stage"] == "export"


def test_f16_gguf_and_adapter_only_export(trained, tmp_path):
    import gguf

    out = export_run(trained, tmp_path / "f16", merge=True, gguf=True, dtype="float16")
    reader = gguf.GGUFReader(str(out / "model-f16.gguf"))
    types = {t.name: t.tensor_type.name for t in reader.tensors}
    assert types["blk.0.attn_q.weight"] == "F16" and types["blk.0.attn_norm.weight"] == "F32"
    assert bytes(reader.fields["general.architecture"].parts[-1]).decode() == "llama"

    adapter_only = export_run(trained, tmp_path / "adapter", merge=False)
    assert (adapter_only / "adapter_model.safetensors").is_file() and "LoRA adapter" in (adapter_only / "README.md").read_text()
    card = (adapter_only / "README.md").stat().st_mtime_ns
    assert export_run(trained, tmp_path / "adapter", merge=False) == adapter_only  # the same export: nothing to do
    assert (adapter_only / "README.md").stat().st_mtime_ns == card
    with pytest.raises(AmautaError, match=r"adapter: holds an export made from other inputs \(dtype: 'float16' → "
                                          r"'float32'\); pass --overwrite"):
        export_run(trained, tmp_path / "adapter", merge=False, dtype="float32")
    export_run(trained, tmp_path / "adapter", merge=False, dtype="float32", overwrite=True)
    assert json.loads((adapter_only / "manifest.json").read_text())["config"]["dtype"] == "float32"


def test_export_never_replaces_the_run_or_a_folder_it_did_not_make(trained, tmp_path):
    before = {p: p.read_bytes() for p in trained.rglob("*") if p.is_file()}
    with pytest.raises(AmautaError, match=r"is an Amauta run folder \(stage 'train'\), not an export folder"):
        export_run(trained, trained, merge=False, overwrite=True)
    with pytest.raises(AmautaError, match="is not an Amauta export folder"):
        export_run(trained, tmp_path, merge=False, overwrite=True)  # holds the run, the dataset, the configs
    assert {p: p.read_bytes() for p in trained.rglob("*") if p.is_file()} == before


def test_quantized_base_is_dequantized_before_merging(run_config, tmp_path):
    """QLoRA on the tiny model (bitsandbytes' CPU path): the merge uses the de-quantized 4-bit weights."""
    from peft import PeftModel

    from amauta.models.load import load_model

    cfg = build_config(run_config(max_steps=2, checkpoint_every=2, eval_every=2, quantization={"mode": "4bit"},
                                  optimizer={"lr": 5e-2}), {})
    trained = run(cfg, progress=False)
    out = export_run(trained, tmp_path / "q", merge=True, dtype="float32")
    from transformers import AutoModelForCausalLM

    merged = AutoModelForCausalLM.from_pretrained(out, dtype=torch.float32)
    dequantized = load_model("tiny-llama", quantization="4bit").model.dequantize(dtype=torch.float32)
    reference = PeftModel.from_pretrained(dequantized, trained / "adapter")
    quantized = load_model("tiny-llama", quantization="4bit", adapter=trained)
    ids = quantized.tokenizer(TEXT, return_tensors="pt").input_ids
    with torch.no_grad():
        assert torch.allclose(merged(ids).logits, reference(ids).logits, atol=1e-5)
        # and close to the 4-bit model itself (which computes in bf16)
        assert (merged(ids).logits - quantized.model(ids).logits.float()).abs().max() < 0.05


def _tiny_mixtral_folder(folder):
    """A tiny random Mixtral (mixture of experts) saved as a local model folder, with the tiny tokenizer."""
    from transformers import MixtralConfig, MixtralForCausalLM

    from amauta.models.tiny import tiny_tokenizer

    tokenizer = tiny_tokenizer()
    config = MixtralConfig(vocab_size=len(tokenizer), hidden_size=64, intermediate_size=64, num_hidden_layers=1,
                           num_attention_heads=4, num_key_value_heads=2, num_local_experts=2, num_experts_per_tok=1,
                           max_position_embeddings=512, bos_token_id=1, eos_token_id=2, pad_token_id=3)
    torch.manual_seed(0)
    MixtralForCausalLM(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def test_bad_export_input(tmp_path, run_config):
    with pytest.raises(AmautaError, match="not a run folder"):
        export_run(tmp_path, tmp_path / "x")
    from conftest import write_dataset

    base = _tiny_mixtral_folder(tmp_path / "tiny-mixtral")
    data = write_dataset(tmp_path / "mixtral-data", n_train=4, n_val=1, template="mistral", model=str(base))
    cfg = build_config(run_config(model=str(base), dataset=str(data), max_steps=1, checkpoint_every=1), {})
    trained = run(cfg, progress=False)
    for kwargs in ({"merge": True, "gguf": True}, {"merge": False, "ollama": True}, {"merge": True, "ollama": True}):
        with pytest.raises(AmautaError, match=r"GGUF export supports llama, mistral, qwen2, gemma3_text, falcon models, "
                                              r"not 'mixtral'; mixture-of-experts models are not covered"):
            export_run(trained, tmp_path / "mixtral-export", **kwargs)
        assert not (tmp_path / "mixtral-export").exists()  # nothing half-written
    result = CliRunner().invoke(app, ["export", str(trained), "--ollama", "--out", str(tmp_path / "cli-export")])
    # (`amauta` prints an AmautaError as one `error: ...` line and exits 2: tests/core/test_cli_errors.py)
    assert isinstance(result.exception, AmautaError) and "not 'mixtral'" in str(result.exception)
    assert "\n" not in str(result.exception) and not (tmp_path / "cli-export").exists()


def test_bad_gguf_type(trained, tmp_path, monkeypatch):
    with pytest.raises(AmautaError, match=r"--gguf-type q3: choose one of f32, f16, q4_0, q8_0, q4_k_m"):
        export_run(trained, tmp_path / "x", gguf_type="q3")
    with pytest.raises(AmautaError, match=r"--gguf-type q8_0 needs --merge \(or --ollama\)"):
        export_run(trained, tmp_path / "x", merge=False, gguf_type="q8_0")
    # Without llama.cpp's quantizer: one line naming what to install, before anything is loaded or written.
    monkeypatch.setattr("amauta.train.gguf_export.quantizer_available", lambda: False)
    with pytest.raises(AmautaError, match=r"--gguf-type q4_k_m needs llama.cpp's quantizer, which is not installed: "
                                          r"pip install llama-cpp-python"):
        export_run(trained, tmp_path / "x", gguf_type="q4_k_m")
    export_run(trained, tmp_path / "f16", gguf_type="f16")  # f16 and f32 need no quantizer
    assert not (tmp_path / "x").exists() and (tmp_path / "f16" / "model-f16.gguf").is_file()


def _llama_cpp_logits(gguf_path, ids, lora=None):
    """Logits of every position from llama.cpp (the engine Ollama runs), in float32."""
    import numpy as np

    llama_cpp = pytest.importorskip("llama_cpp", reason="llama-cpp-python is not installed")
    llm = llama_cpp.Llama(str(gguf_path), lora_path=str(lora) if lora else None, n_ctx=128, logits_all=True,
                          verbose=False, n_threads=1)
    try:
        llm.eval(ids)
        return torch.from_numpy(np.array(llm.scores[: len(ids)], dtype=np.float32))
    finally:
        llm.close()


@pytest.mark.parametrize("arch", ["llama", "qwen2", "gemma3", "falcon"])
def test_gguf_of_each_architecture_gives_the_original_logits(arch, tmp_path):
    """A tiny random model of each architecture (weights, norms and biases perturbed so none is trivial), as
    F32 GGUF: transformers' GGUF loader gives the same logits to 1e-5, llama.cpp to 5e-3 (its own kernels:
    the largest difference seen is 1.2e-3 on logits of magnitude ~2)."""
    from transformers import AutoModelForCausalLM

    from amauta.models.tiny import tiny_model, tiny_tokenizer
    from amauta.train.gguf_export import write_gguf

    model, tokenizer = tiny_model(arch), tiny_tokenizer()
    generator = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.add_(torch.randn(parameter.shape, generator=generator) * 0.05)
    path = write_gguf(model, tokenizer, tmp_path / "model-f32.gguf", float32=True)
    ids = tokenizer(TEXT, add_special_tokens=False).input_ids
    with torch.no_grad():
        expected = model(torch.tensor([ids])).logits[0]
    if arch != "gemma3":  # transformers' GGUF loader reads no query_pre_attn_scalar (it assumes 256, the tiny has 16)
        reloaded = AutoModelForCausalLM.from_pretrained(tmp_path, gguf_file=path.name, dtype=torch.float32)
        with torch.no_grad():
            assert torch.allclose(reloaded(torch.tensor([ids])).logits[0], expected, atol=1e-5)
    assert torch.allclose(_llama_cpp_logits(path, ids), expected, atol=5e-3)


def test_quantized_gguf_with_llama_cpp(trained, tmp_path):
    """q8_0 and q4_k_m through llama.cpp's quantizer; the tiny model's 64-wide rows do not fit a k-quant block,
    so q4_k_m falls back to llama.cpp's Q5_0 there (as llama.cpp does for any such tensor)."""
    import gguf

    from amauta.models.embedded import gguf_model_info
    from amauta.models.load import load_model

    pytest.importorskip("llama_cpp", reason="llama-cpp-python is not installed")
    with_adapter = load_model("tiny-llama", adapter=trained)
    ids = with_adapter.tokenizer(TEXT, add_special_tokens=False).input_ids
    with torch.no_grad():
        expected = with_adapter.model(torch.tensor([ids])).logits[0]
    for gguf_type, weight_type, tolerance in (("q8_0", "Q8_0", 0.03), ("q4_k_m", "Q5_0", 0.15)):
        out = export_run(trained, tmp_path / gguf_type, gguf_type=gguf_type)
        assert sorted(p.name for p in out.glob("*.gguf")) == [f"model-{gguf_type}.gguf"]  # the F16 step is gone
        path = out / f"model-{gguf_type}.gguf"
        types = {t.name: t.tensor_type.name for t in gguf.GGUFReader(str(path)).tensors}
        assert types["blk.0.attn_q.weight"] == weight_type and types["blk.0.attn_norm.weight"] == "F32"
        assert gguf_model_info(path)["profile"] == "tiny-llama"  # Amauta's metadata survives quantization
        difference = (_llama_cpp_logits(path, ids) - expected).abs().max()
        assert 0 < difference < tolerance, (gguf_type, difference)


def test_exported_files_have_the_usual_permissions(trained, tmp_path):
    umask = os.umask(0o022)
    try:
        merged = export_run(trained, tmp_path / "merged", merge=True, gguf=True, dtype="float32")
        adapter_only = export_run(trained, tmp_path / "adapter", merge=False)
    finally:
        os.umask(umask)
    for path in (merged / "model.safetensors", merged / "model-f32.gguf", adapter_only / "adapter_model.safetensors"):
        assert stat.S_IMODE(path.stat().st_mode) == 0o644, path


def test_model_card_names_the_hub_id_of_an_embedded_base():
    from amauta.train.export import _base_model_id

    assert _base_model_id("smollm2-135m-instruct") == "HuggingFaceTB/SmolLM2-135M-Instruct"
    assert _base_model_id("mistral-7b") == "mistralai/Mistral-7B-v0.1"
    assert _base_model_id("runs/mi-modelo") == "runs/mi-modelo"


@pytest.fixture
def chatml_profile(tmp_path, monkeypatch):
    """A ChatML profile on the tiny Llama (whose architecture alone would suggest llama2), with a system prompt."""
    profiles = tmp_path / "profiles.yaml"
    profiles.write_text("profiles:\n  tiny-chatml:\n    extends: tiny-llama\n    template: chatml\n"
                        "    stop_strings: ['<|im_end|>']\n    eos_tokens: ['<|im_end|>']\n"
                        "    system_prompt: Responde en español.\n", encoding="utf-8")
    monkeypatch.setenv("AMAUTA_PROFILES", str(profiles))
    monkeypatch.setenv("AMAUTA_HOME", str(tmp_path / "home"))  # the GGUF conversion cache
    return "tiny-chatml"


def test_exported_gguf_and_folder_load_with_the_profile_they_were_trained_with(chatml_profile, run_config, tmp_path):
    """`generate --model X/model-f16.gguf` talks to the fine-tune in its own template, not one guessed from
    the architecture (which for a SmolLM2 fine-tune was llama2, and stopped)."""
    import gguf

    from amauta.models.load import load_model
    from amauta.models.templates import apply_template
    from conftest import write_dataset

    data = write_dataset(tmp_path / "chatml-data", n_train=8, n_val=2, template="chatml", model=chatml_profile,
                         system_prompt="Responde en español.")
    cfg = build_config(run_config(model=chatml_profile, dataset=str(data), max_steps=1, checkpoint_every=1,
                                  eval_every=1), {})
    out = export_run(run(cfg, progress=False), tmp_path / "export", merge=True, gguf=True, dtype="float16")

    reader = gguf.GGUFReader(str(out / "model-f16.gguf"))
    field = reader.fields["amauta.profile"]
    assert bytes(field.parts[field.data[0]]).decode() == chatml_profile
    info = json.loads((out / "amauta_model.json").read_text())
    assert info["profile"] == chatml_profile and info["template"] == "chatml"

    messages = [{"role": "user", "content": "Hola"}]
    for spec in (out / "model-f16.gguf", out):
        loaded = load_model(spec, device="cpu")
        assert loaded.profile.template == "chatml" and loaded.profile.system_prompt == "Responde en español."
        assert apply_template(loaded, messages).startswith("<|im_start|>system\nResponde en español.<|im_end|>")
    result = CliRunner().invoke(app, ["generate", "--model", str(out / "model-f16.gguf"), "-s", "greedy", "-n", "2",
                                      "--json", "Hola"])
    assert result.exit_code == 0, result.output
    # The GGUF's one-time conversion (a cache other users share) is readable like any file, not 0600.
    umask = os.umask(0)
    os.umask(umask)
    converted = next((tmp_path / "home" / "models").glob("gguf-model-f16-*"))
    assert stat.S_IMODE((converted / "model.safetensors").stat().st_mode) == 0o666 & ~umask


def test_gguf_records_an_empty_system_prompt_as_none(tmp_path):
    """"" (no system prompt) must survive the GGUF: gguf's add_string drops empty values."""
    from amauta.models.embedded import gguf_model_info
    from amauta.models.tiny import tiny_model, tiny_tokenizer
    from amauta.train.export import write_gguf

    info = {"profile": "tiny-llama", "template": "llama2", "use_tokenizer_template": False, "system_prompt": ""}
    path = write_gguf(tiny_model("llama"), tiny_tokenizer(), tmp_path / "m.gguf", info=info)
    assert gguf_model_info(path) == info
