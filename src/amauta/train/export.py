"""Export a trained run: merge the adapter into the base, save safetensors + tokenizer + model card, GGUF.

    amauta export runs/sri --merge --out exports/sri            # merged safetensors, README.md
    amauta export runs/sri --merge --gguf --out exports/sri     # ... and exports/sri/model-f16.gguf
    amauta export runs/sri --merge --gguf-type q4_k_m --out x   # ... quantized by llama.cpp: model-q4_k_m.gguf
    amauta export runs/sri --merge --ollama --out exports/sri   # ... and an Ollama Modelfile
    amauta export runs/sri --ollama --out exports/sri-lora      # base GGUF + GGUF LoRA (Modelfile's ADAPTER)

A 4-bit (QLoRA) base is de-quantized first: the adapter was trained against the de-quantized 4-bit
weights, so those, not the original full-precision ones, are what it is added to. Without `--merge`
the folder holds the adapter alone (small, for sharing; load it with `load_model(base, adapter=...)`).

The GGUF writer is ours (`amauta.train.gguf_export`, on the `gguf` package): Llama, Mistral, SmolLM2,
Qwen2.5, Gemma 3 and Falcon; other architectures (Mixtral included) get a one-line pointer to llama.cpp's
converter. The Ollama Modelfile comes from `amauta.train.ollama`.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

from amauta.core.config import read_yaml
from amauta.core.errors import AmautaError
from amauta.core.files import atomic_write_json, atomic_write_text, give_usual_permissions
from amauta.core.manifest import write_manifest
from amauta.core.outdir import OutputFolder, claim
from amauta.models.load import MODEL_INFO_FILE, model_info
from amauta.train.config import TrainConfig
from amauta.train.gguf_export import (  # noqa: F401  (write_gguf: the public name, here since the first export)
    GGUF_ARCHITECTURES,
    check_gguf_architecture,
    check_gguf_type,
    quantize_gguf,
    write_gguf,
    write_gguf_lora,
)
from amauta.train.ollama import MODELFILE, modelfile

_DTYPES = ("float16", "bfloat16", "float32")


def read_run(run_dir: str | Path) -> tuple[Path, TrainConfig]:
    """Check a run folder and return it with its config."""
    run_dir = Path(run_dir)
    if not (run_dir / "config.yaml").is_file():
        raise AmautaError(f"{run_dir}: not a run folder (no config.yaml); pass a folder written by `amauta train`")
    config = TrainConfig.model_validate(read_yaml(run_dir / "config.yaml"))
    if config.finetuning == "full":
        if not (run_dir / "model" / "config.json").is_file():
            raise AmautaError(f"{run_dir}/model: no trained model yet; finish the run (`amauta train ... --resume`)")
    elif not (run_dir / "adapter" / "adapter_config.json").is_file():
        raise AmautaError(f"{run_dir}/adapter: no trained adapter yet; finish the run (`amauta train ... --resume`)")
    return run_dir, config


def trained_weights(run_dir: Path, config: TrainConfig) -> Path:
    """The file holding what the run trained: the adapter's weights, or a full fine-tune's model."""
    if config.finetuning == "full":
        return run_dir / "model" / "model.safetensors"
    return run_dir / "adapter" / "adapter_model.safetensors"


def base_model(config: TrainConfig):
    """The base weights the run's adapter was trained against, as a plain float32 model: `(model, loaded)`.

    A 4-bit (QLoRA) base is de-quantized (to float32, exactly the values training saw); merging into
    4-bit blocks would round the update away.
    """
    import torch

    from amauta.models.load import load_model

    prompt = getattr(config, "system_prompt", None)
    if config.quantization.mode != "none":
        loaded = load_model(config.model, quantization=config.quantization.mode, dtype=config.dtype,
                            system_prompt=prompt)  # as trained
        return loaded.model.dequantize(dtype=torch.float32), loaded
    # Merge in float32 on the CPU (exact to the last bit that matters), then cast to the export type.
    loaded = load_model(config.model, dtype="float32", device="cpu", system_prompt=prompt)
    return loaded.model, loaded


def merged_model(run_dir: Path, config: TrainConfig, dtype: str = "float32"):
    """The base model with the run's adapter merged in, as a plain transformers model (and tokenizer, profile)."""
    import torch
    from peft import PeftModel

    if config.finetuning == "full":  # nothing to merge: the run saved the whole model (float32)
        from amauta.models.load import load_model

        loaded = load_model(run_dir / "model", dtype="float32", device="cpu",
                            system_prompt=getattr(config, "system_prompt", None))
        return loaded.model.to(getattr(torch, dtype)).eval(), loaded.tokenizer, loaded.profile
    base, loaded = base_model(config)
    model = PeftModel.from_pretrained(base, run_dir / "adapter").merge_and_unload()
    return model.to(getattr(torch, dtype)).eval(), loaded.tokenizer, loaded.profile


def export_run(run_dir: str | Path, out: str | Path, *, merge: bool = True, gguf: bool = False,
               dtype: str = "float16", overwrite: bool = False, ollama: bool = False,
               gguf_type: str | None = None) -> Path:
    """Write an export folder and return it.

    run_dir: a run folder from `amauta train`.
    out: the folder to write (built under a temporary name, renamed when complete).
    merge: merge the adapter into the base weights; otherwise copy the adapter only.
    gguf: also write `model-<gguf_type>.gguf` (needs merge; see `GGUF_ARCHITECTURES`).
    dtype: weight type of the merged safetensors: float16, bfloat16 or float32.
    overwrite: replace `out` when it is an export made from other inputs (never a folder `amauta export`
        did not make, nor one holding the run: see core/outdir.py).
    ollama: also write an Ollama `Modelfile`; merged, over `model-<gguf_type>.gguf`; unmerged, over the
        base as `base-<gguf_type>.gguf` with the adapter as a GGUF LoRA (`adapter.gguf`, its ADAPTER line).
    gguf_type: f16 (float32 dtype: f32) by default; q8_0, q4_k_m... are quantized with llama.cpp (implies gguf
        when merging).
    """
    if dtype not in _DTYPES:
        raise AmautaError(f"--dtype {dtype}: choose one of {', '.join(_DTYPES)}")
    if gguf_type is not None:
        if not (merge or ollama):
            raise AmautaError(f"--gguf-type {gguf_type} needs --merge (or --ollama): it sets the type of a GGUF file")
        check_gguf_type(gguf_type)  # before anything is loaded: a missing quantizer is one line
        gguf = gguf or merge
    run_dir, config = read_run(run_dir)
    out = Path(out)
    gguf = gguf or (ollama and merge)
    if gguf and not merge:
        raise AmautaError("--gguf needs --merge (a GGUF file holds whole weights; --ollama alone writes the base "
                          "GGUF with the adapter as a GGUF LoRA)")
    if config.finetuning == "full" and not merge:
        raise AmautaError(f"{run_dir}: a full fine-tuning run has no adapter to export alone; export with --merge")
    settings: dict[str, Any] = {"run_dir": str(run_dir), "merge": merge, "gguf": gguf, "dtype": dtype}
    if ollama:
        settings["ollama"] = True
    if gguf_type is not None:
        settings["gguf_type"] = gguf_type
    inputs = [trained_weights(run_dir, config), run_dir / "config.yaml"]
    with claim(out, "export", overwrite=overwrite) as folder:
        if folder.up_to_date(settings, inputs):
            return out
        folder.check_replace(settings, [*inputs, run_dir])
        _export(run_dir, config, folder, settings, inputs)
    return out


def _export(run_dir: Path, config: TrainConfig, folder: OutputFolder, settings: dict[str, Any],
            inputs: list[Path]) -> None:
    """Write the export folder (built aside, renamed into place) while `folder` is held."""
    out, merge, gguf, dtype = folder.path, settings["merge"], settings["gguf"], settings["dtype"]
    ollama = settings.get("ollama", False)
    gguf_type = settings.get("gguf_type") or ("f32" if dtype == "float32" else "f16")
    gguf_file = adapter_file = None
    with folder.replace() as tmp:
        if merge:
            model, tokenizer, profile = merged_model(run_dir, config, dtype)
            if gguf:  # check before the slow writes
                check_gguf_architecture(model.config, where=str(run_dir))
            model.save_pretrained(tmp, safe_serialization=True)
            tokenizer.save_pretrained(tmp)
            # How to talk to these weights (profile, template, system prompt), read back by load_model.
            info = model_info(profile, tokenizer)
            atomic_write_json(tmp / MODEL_INFO_FILE, info)
            if gguf:
                gguf_file = _write_model_gguf(model, tokenizer, tmp / "model", gguf_type, dtype=dtype,
                                              name=out.name, info=info)
        else:
            shutil.copytree(run_dir / "adapter", tmp, dirs_exist_ok=True)
            if ollama:  # Ollama's ADAPTER: the base as GGUF, the adapter as a GGUF LoRA applied on load
                model, loaded = base_model(config)
                tokenizer, profile = loaded.tokenizer, loaded.profile
                check_gguf_architecture(model.config, where=str(run_dir))
                adapter_file = write_gguf_lora(model, run_dir / "adapter", tmp / "adapter.gguf", name=f"{out.name}-lora")
                gguf_file = _write_model_gguf(model, tokenizer, tmp / "base", gguf_type, dtype=dtype,
                                              name=f"{out.name}-base", info=model_info(profile, tokenizer))
        if ollama:
            atomic_write_text(tmp / MODELFILE, modelfile(
                profile, model_file=gguf_file.name, adapter_file=adapter_file.name if adapter_file else None,
                tokenizer_adds_bos=bool(getattr(tokenizer, "add_bos_token", False)), eos_token=tokenizer.eos_token or ""))
        atomic_write_text(tmp / "README.md", model_card(run_dir, config, merged=merge, dtype=dtype,
                                                        files=sorted(p.name for p in tmp.iterdir()), ollama=ollama))
        write_manifest(tmp, "export", settings, inputs=inputs)
        give_usual_permissions(tmp)  # safetensors writes 0600: an export is for other people too


def _write_model_gguf(model: Any, tokenizer: Any, stem: Path, gguf_type: str, *, dtype: str, name: str,
                      info: dict[str, Any]) -> Path:
    """`<stem>-<gguf_type>.gguf`: written directly (f16, f32), or written in F16 (F32 for float32 exports) and
    quantized by llama.cpp, the unquantized file removed (it was only ever in the folder being built)."""
    if gguf_type in ("f16", "f32"):
        return write_gguf(model, tokenizer, stem.with_name(f"{stem.name}-{gguf_type}.gguf"), name=name,
                          float32=gguf_type == "f32", info=info)
    source_type = "f32" if dtype == "float32" else "f16"
    source = write_gguf(model, tokenizer, stem.with_name(f"{stem.name}-{source_type}.gguf"), name=name,
                        float32=source_type == "f32", info=info)
    target = quantize_gguf(source, stem.with_name(f"{stem.name}-{gguf_type}.gguf"), gguf_type)
    source.unlink()
    return target


def model_card(run_dir: Path, config: TrainConfig, *, merged: bool, dtype: str, files: list[str],
               ollama: bool = False) -> str:
    """README.md: base model, training config, data and results (YAML front matter for model hubs)."""
    summary = _json(run_dir / "summary.json")
    manifest = _json(run_dir / "manifest.json")
    data_manifest = _json(Path(config.dataset) / "manifest.json") or manifest.get("dataset_manifest") or {}
    stats = _json(Path(config.dataset) / "stats.json").get("totals", {})
    library = "transformers" if merged else "peft"
    full = config.finetuning == "full"
    method = "full fine-tuning" if full else "4-bit QLoRA" if config.quantization.mode == "4bit" else "LoRA"
    lines = [
        "---", f"library_name: {library}", f"base_model: {_base_model_id(config.model)}",
        "language: [es]", "tags: [amauta, " + ("full-finetuning" if full else "lora") +
        (", qlora" if config.quantization.mode != "none" else "") + "]", "---", "",
        f"# {run_dir.name}", "",
        f"{'Merged model' if merged else 'LoRA adapter'} trained with Amauta from "
        f"`{config.model}` ({method}); weights in {dtype}.", "",
        "## Training", "",
        "| setting | value |", "|---|---|",
        f"| preset | {config.preset or '-'} |",
        f"| base quantization | {config.quantization.mode}"
        + (f" ({config.quantization.quant_type}, double quant {config.quantization.double_quant}, "
           f"compute {config.quantization.compute_dtype})" if config.quantization.mode == "4bit" else "") + " |",
        "| method | full fine-tuning (every weight trained) |" if full else
        f"| LoRA | r {config.lora.r}, alpha {config.lora.alpha}, dropout {config.lora.dropout}, targets {config.lora.targets}"
        + (f", modules_to_save {config.lora.modules_to_save}" if config.lora.modules_to_save else "") + " |",
        f"| optimizer | {config.optimizer.name}, lr {config.optimizer.lr}, weight decay {config.optimizer.weight_decay} |",
        f"| schedule | {config.scheduler}, warmup ratio {config.warmup_ratio} |",
        f"| epochs / steps | {config.epochs} / {summary.get('steps', '?')} |",
        f"| batch | {config.batch_size} examples, max length {config.max_length} tokens |",
        f"| seed | {config.seed} |", "",
        "## Data", "",
        f"Dataset folder `{config.dataset}` (template `{data_manifest.get('template', '?')}`): "
        f"{summary.get('train_examples', stats.get('train', '?'))} training and "
        f"{summary.get('val_examples', stats.get('val', '?'))} validation conversations.", "",
    ]
    if data_manifest.get("config", {}).get("sources"):
        lines += ["Sources:", ""] + [f"- {s.get('name', s) if isinstance(s, dict) else s}"
                                     for s in data_manifest["config"]["sources"]] + [""]
    lines += ["## Results", "",
              f"Final training loss {_fmt(summary.get('final_loss'))}, validation loss {_fmt(summary.get('final_val_loss'))}, "
              f"{summary.get('tokens_total', '?')} tokens in {summary.get('train_seconds', '?')} s.", "",
              "## Files", ""] + [f"- `{name}`" for name in files + ["README.md", "manifest.json"]] + [
              "", "## Use", "", "```bash", f"amauta chat --model {'.' if merged else config.model}"
              + ("" if merged else " --adapter ."), "```", ""] + (
              ["With Ollama:", "", "```bash", f"ollama create {run_dir.name} -f Modelfile", f"ollama run {run_dir.name}",
               "```", ""] if ollama else []) + [
              "Resumen: modelo ajustado con Amauta para responder en español; la tabla lista la configuración del "
              "entrenamiento y los datos usados.", ""]
    return "\n".join(lines)


def _base_model_id(model: str) -> str:
    """The hub id of a registry model, embedded ones included (what model hubs expect in `base_model`),
    else the name as given."""
    from amauta.models.registry import get_profile, profile_names

    return get_profile(model).base_model_id if model in profile_names() else model


def _json(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}


def _fmt(value: Any) -> str:
    return f"{value:.4f}" if isinstance(value, float) else "?"
