"""Export a trained run: merge the adapter into the base, save safetensors + tokenizer + model card, GGUF.

    amauta export runs/sri --merge --out exports/sri            # merged safetensors, README.md
    amauta export runs/sri --merge --gguf --out exports/sri     # ... and exports/sri/model-f16.gguf

A 4-bit (QLoRA) base is de-quantized first: the adapter was trained against the de-quantized 4-bit
weights, so those, not the original full-precision ones, are what it is added to. Without `--merge`
the folder holds the adapter alone (small, for sharing; load it with `load_model(base, adapter=...)`).

The GGUF writer is ours, built on the `gguf` package (llama.cpp's own Python library): tensor names
come from gguf's name map, metadata keys from the same table transformers reads GGUF with, and the
query/key rows are permuted into llama.cpp's rotary layout. It covers the llama family (Llama,
Mistral, SmolLM2); other architectures get a one-line pointer to llama.cpp's converter.
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
from amauta.models.embedded import GGUF_INFO_KEYS
from amauta.models.load import MODEL_INFO_FILE, model_info
from amauta.train.config import TrainConfig

GGUF_ARCHITECTURES = {"llama": "llama", "mistral": "llama"}  # model_type → llama.cpp architecture
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


def merged_model(run_dir: Path, config: TrainConfig, dtype: str = "float32"):
    """The base model with the run's adapter merged in, as a plain transformers model (and tokenizer, profile)."""
    import torch
    from peft import PeftModel

    from amauta.models.load import load_model

    prompt = getattr(config, "system_prompt", None)
    if config.finetuning == "full":  # nothing to merge: the run saved the whole model (float32)
        loaded = load_model(run_dir / "model", dtype="float32", device="cpu", system_prompt=prompt)
        return loaded.model.to(getattr(torch, dtype)).eval(), loaded.tokenizer, loaded.profile
    if config.quantization.mode != "none":
        loaded = load_model(config.model, quantization=config.quantization.mode, dtype=config.dtype,
                            system_prompt=prompt)  # as trained
        # De-quantize first (to float32, exactly the values training saw): merging into 4-bit blocks
        # would round the update away.
        base = loaded.model.dequantize(dtype=torch.float32)
    else:
        # Merge in float32 on the CPU (exact to the last bit that matters), then cast to the export type.
        loaded = load_model(config.model, dtype="float32", device="cpu", system_prompt=prompt)
        base = loaded.model
    model = PeftModel.from_pretrained(base, run_dir / "adapter").merge_and_unload()
    return model.to(getattr(torch, dtype)).eval(), loaded.tokenizer, loaded.profile


def export_run(run_dir: str | Path, out: str | Path, *, merge: bool = True, gguf: bool = False,
               dtype: str = "float16", overwrite: bool = False) -> Path:
    """Write an export folder and return it.

    run_dir: a run folder from `amauta train`.
    out: the folder to write (built under a temporary name, renamed when complete).
    merge: merge the adapter into the base weights; otherwise copy the adapter only.
    gguf: also write `model-<f16|f32>.gguf` (needs merge; llama-family architectures).
    dtype: weight type of the merged safetensors: float16, bfloat16 or float32.
    overwrite: replace `out` when it is an export made from other inputs (never a folder `amauta export`
        did not make, nor one holding the run: see core/outdir.py).
    """
    if dtype not in _DTYPES:
        raise AmautaError(f"--dtype {dtype}: choose one of {', '.join(_DTYPES)}")
    run_dir, config = read_run(run_dir)
    out = Path(out)
    if gguf and not merge:
        raise AmautaError("--gguf needs --merge (a GGUF file holds whole weights)")
    if config.finetuning == "full" and not merge:
        raise AmautaError(f"{run_dir}: a full fine-tuning run has no adapter to export alone; export with --merge")
    settings = {"run_dir": str(run_dir), "merge": merge, "gguf": gguf, "dtype": dtype}
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
    with folder.replace() as tmp:
        if merge:
            model, tokenizer, profile = merged_model(run_dir, config, dtype)
            if gguf:  # check before the slow writes
                arch = model.config.model_type
                if arch not in GGUF_ARCHITECTURES:
                    raise AmautaError(f"{run_dir}: GGUF export supports {', '.join(GGUF_ARCHITECTURES)} models, not "
                                      f"'{arch}'; export with --merge and convert with llama.cpp's convert_hf_to_gguf.py")
            model.save_pretrained(tmp, safe_serialization=True)
            tokenizer.save_pretrained(tmp)
            # How to talk to these weights (profile, template, system prompt), read back by load_model.
            info = model_info(profile, tokenizer)
            atomic_write_json(tmp / MODEL_INFO_FILE, info)
            if gguf:
                suffix = "f32" if dtype == "float32" else "f16"
                write_gguf(model, tokenizer, tmp / f"model-{suffix}.gguf", name=out.name, float32=dtype == "float32",
                           info=info)
        else:
            shutil.copytree(run_dir / "adapter", tmp, dirs_exist_ok=True)
        atomic_write_text(tmp / "README.md", model_card(run_dir, config, merged=merge, dtype=dtype,
                                                        files=sorted(p.name for p in tmp.iterdir())))
        write_manifest(tmp, "export", settings, inputs=inputs)
        give_usual_permissions(tmp)  # safetensors writes 0600: an export is for other people too


def model_card(run_dir: Path, config: TrainConfig, *, merged: bool, dtype: str, files: list[str]) -> str:
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
              + ("" if merged else " --adapter ."), "```", "",
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


# ---------------------------------------------------------------------------------------------- GGUF
def _permute_rotary(weight, n_head: int):
    """HF's rotary layout (halves) → llama.cpp's (interleaved pairs), per head: what llama.cpp expects."""
    rows = weight.shape[0]
    return weight.reshape(n_head, 2, rows // n_head // 2, *weight.shape[1:]).swapaxes(1, 2).reshape(weight.shape)


def _tokenizer_fields(tokenizer: Any) -> dict[str, Any]:
    """tokens / types / merges / scores for `tokenizer.ggml.*`, from a fast tokenizer's tokenizer.json."""
    import gguf

    spec = json.loads(tokenizer.backend_tokenizer.to_str())
    model = spec["model"]
    if model.get("type") != "BPE":
        raise AmautaError(f"GGUF export: tokenizer model {model.get('type')} is not supported (BPE only)")
    vocab = dict(model["vocab"])
    special = set()
    for added in spec.get("added_tokens", []):
        vocab[added["content"]] = added["id"]
        if added.get("special"):
            special.add(added["content"])
    size = max(vocab.values()) + 1
    tokens = [f"[PAD{i}]" for i in range(size)]
    types = [gguf.TokenType.UNUSED] * size
    for token, index in vocab.items():
        tokens[index] = token
        types[index] = gguf.TokenType.CONTROL if token in special else gguf.TokenType.NORMAL
    merges = [m if isinstance(m, str) else " ".join(m) for m in model.get("merges", [])]
    if model.get("byte_fallback"):  # sentencepiece-style (Llama 2, Mistral): llama.cpp's "llama" vocabulary
        for index, token in enumerate(tokens):
            if len(token) == 6 and token.startswith("<0x") and token.endswith(">"):
                types[index] = gguf.TokenType.BYTE
        unk = model.get("unk_token")
        if unk in vocab:
            types[vocab[unk]] = gguf.TokenType.UNKNOWN
        kind, pre = "llama", "default"
    else:  # byte-level BPE (GPT-2 style: SmolLM2, Falcon, the tiny test models)
        kind, pre = "gpt2", "gpt-2"
    # Scores order the vocabulary for llama.cpp's sentencepiece path: earlier tokens merge first.
    return {"model": kind, "pre": pre, "tokens": tokens, "types": types, "merges": merges,
            "scores": [-float(i) for i in range(size)]}


def write_gguf(model: Any, tokenizer: Any, path: Path, *, name: str = "amauta", float32: bool = False,
               info: dict[str, Any] | None = None) -> Path:
    """Write a merged llama-family model as GGUF (F16 matrices, F32 norms; or all F32).

    info: `amauta.models.load.model_info` (profile, template, system prompt), written as `amauta.*` keys
        that loading the GGUF reads back (`amauta.models.embedded.gguf_model_info`).
    """
    import gguf
    import numpy as np
    import torch

    config = model.config
    arch = GGUF_ARCHITECTURES.get(config.model_type)
    if arch is None:
        raise AmautaError(f"GGUF export supports {', '.join(GGUF_ARCHITECTURES)} models, not '{config.model_type}'")
    n_head, n_kv = config.num_attention_heads, getattr(config, "num_key_value_heads", None) or config.num_attention_heads
    head_dim = getattr(config, "head_dim", None) or config.hidden_size // n_head
    rope = getattr(config, "rope_parameters", None) or {}
    theta = rope.get("rope_theta") or getattr(config, "rope_theta", 10000.0)

    writer = gguf.GGUFWriter(str(path), arch)
    writer.add_name(name)
    writer.add_context_length(config.max_position_embeddings)
    writer.add_embedding_length(config.hidden_size)
    writer.add_block_count(config.num_hidden_layers)
    writer.add_feed_forward_length(config.intermediate_size)
    writer.add_head_count(n_head)
    writer.add_head_count_kv(n_kv)
    writer.add_rope_dimension_count(head_dim)
    writer.add_rope_freq_base(float(theta))
    writer.add_layer_norm_rms_eps(float(config.rms_norm_eps))
    writer.add_vocab_size(config.vocab_size)
    writer.add_file_type(gguf.LlamaFileType.ALL_F32 if float32 else gguf.LlamaFileType.MOSTLY_F16)

    fields = _tokenizer_fields(tokenizer)
    writer.add_tokenizer_model(fields["model"])
    writer.add_tokenizer_pre(fields["pre"])
    writer.add_token_list(fields["tokens"])
    writer.add_token_types(fields["types"])
    writer.add_token_scores(fields["scores"])
    if fields["merges"]:
        writer.add_token_merges(fields["merges"])
    for key, method in (("bos_token_id", writer.add_bos_token_id), ("eos_token_id", writer.add_eos_token_id),
                        ("unk_token_id", writer.add_unk_token_id), ("pad_token_id", writer.add_pad_token_id)):
        value = getattr(tokenizer, key, None)
        if value is not None:
            method(int(value))
    writer.add_add_bos_token(bool(getattr(tokenizer, "add_bos_token", False)))
    if getattr(tokenizer, "chat_template", None):
        writer.add_chat_template(tokenizer.chat_template)
    for key, field in GGUF_INFO_KEYS.items():
        value = (info or {}).get(field)
        if key.startswith("amauta.") and isinstance(value, bool):
            writer.add_bool(key, value)
        elif key.startswith("amauta.") and isinstance(value, str):  # add_string would drop "" (no system prompt)
            writer.add_key_value(key, value, gguf.GGUFValueType.STRING)

    names = gguf.get_tensor_name_map(gguf.MODEL_ARCH.LLAMA, config.num_hidden_layers)
    state = model.state_dict()
    tied = getattr(config, "tie_word_embeddings", False)
    for hf_name, tensor in state.items():
        if tied and hf_name == "lm_head.weight":
            continue  # llama.cpp reuses token_embd when there is no output tensor
        if hf_name.endswith("rotary_emb.inv_freq"):
            continue
        gguf_name = names.get_name(hf_name, try_suffixes=(".weight", ".bias"))
        if gguf_name is None:
            raise AmautaError(f"GGUF export: no llama.cpp name for tensor '{hf_name}'")
        data = tensor.detach().to(torch.float32).cpu().numpy()
        if hf_name.endswith("q_proj.weight"):
            data = _permute_rotary(data, n_head)
        elif hf_name.endswith("k_proj.weight"):
            data = _permute_rotary(data, n_kv)
        # llama.cpp's convention: 1-D tensors (norms) stay F32, matrices F16.
        if not float32 and data.ndim > 1:
            data = data.astype(np.float16)
        writer.add_tensor(gguf_name, np.ascontiguousarray(data))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path
