"""GGUF files from transformers models: whole models, LoRA adapters, and quantized copies.

The writer is ours, built on the `gguf` package (llama.cpp's own Python library): tensor names come
from gguf's name map, metadata keys from the same table transformers reads GGUF with, and each
architecture's weights are laid out as llama.cpp's `convert_hf_to_gguf.py` lays them out:

- llama, mistral  (llama.cpp `llama`): query/key rows permuted into llama.cpp's rotary layout.
- qwen2           (llama.cpp `qwen2`): as stored (NeoX rotary), with the query/key/value biases.
- gemma3_text     (llama.cpp `gemma3`): RMSNorm weights stored as 1 + w (llama.cpp multiplies by w).
- falcon          (llama.cpp `falcon`): the fused query_key_value rows regrouped as all queries, keys, values.

Mixtral (mixture of experts) is not covered: its fused expert tensors need llama.cpp's own converter.
A model these layouts cannot express exactly (an attention scale or rotary base llama.cpp hard-codes
differently) is refused in one line rather than written wrong.

`write_gguf_lora` writes a PEFT LoRA adapter as a GGUF LoRA (llama.cpp's `--lora`, Ollama's `ADAPTER`),
and `quantize_gguf` turns an F16/F32 file into q8_0, q4_k_m... with llama.cpp's quantizer
(`llama_model_quantize`, from the llama-cpp-python binding).
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from amauta.core.errors import AmautaError
from amauta.models.embedded import GGUF_INFO_KEYS

GGUF_ARCHITECTURES = {"llama": "llama", "mistral": "llama", "qwen2": "qwen2", "gemma3_text": "gemma3",
                      "falcon": "falcon"}
"""transformers model_type → llama.cpp architecture, for the architectures `write_gguf` writes."""

GGUF_TYPES = {"f32": 0, "f16": 1, "q4_0": 2, "q8_0": 7, "q4_k_m": 15, "q5_k_m": 17, "q6_k": 18}
"""`--gguf-type` → llama.cpp's `LLAMA_FTYPE_*` (f32 and f16 are written directly; the rest are quantized)."""

QUANTIZER_HINT = "pip install llama-cpp-python (or 'amauta[llamacpp]')"
_UNSUPPORTED_HINT = {"mixtral": "mixture-of-experts models are not covered; export with --merge and convert with "
                                "llama.cpp's convert_hf_to_gguf.py"}


@dataclass(frozen=True)
class _Layout:
    """How one architecture's tensors and hyperparameters go into a GGUF."""

    arch: str
    """llama.cpp's architecture name."""
    n_head: int
    n_kv: int
    head_dim: int


def check_gguf_architecture(config: Any, where: str = "GGUF export") -> str:
    """The llama.cpp architecture for a transformers config, or one `AmautaError` line saying why not."""
    model_type = config.model_type
    if model_type not in GGUF_ARCHITECTURES:
        hint = _UNSUPPORTED_HINT.get(model_type, "export with --merge and convert with llama.cpp's convert_hf_to_gguf.py")
        raise AmautaError(f"{where}: GGUF export supports {', '.join(GGUF_ARCHITECTURES)} models, not "
                          f"'{model_type}'; {hint}")
    if model_type == "falcon":
        if config.alibi or not config.parallel_attn or getattr(config, "bias", False):
            raise AmautaError(f"{where}: llama.cpp's falcon covers rotary, parallel-attention, bias-free Falcon "
                              f"(7B/40B/180B); this one has alibi={config.alibi}, parallel_attn={config.parallel_attn}, "
                              f"bias={config.bias}")
    if model_type == "gemma3_text":
        _check_gemma3(config, where)
    return GGUF_ARCHITECTURES[model_type]


def _rope_theta(config: Any, layer_type: str | None = None) -> float:
    rope = getattr(config, "rope_parameters", None) or {}
    if layer_type and isinstance(rope.get(layer_type), dict):
        rope = rope[layer_type]
    return float(rope.get("rope_theta") or getattr(config, "rope_theta", None) or 10000.0)


def _check_gemma3(config: Any, where: str) -> None:
    """llama.cpp hard-codes Gemma 3's attention scale, sliding pattern and local rotary base: refuse others."""
    n_head = config.num_attention_heads
    scale_dim = config.hidden_size // n_head if config.num_hidden_layers == 62 else config.head_dim  # 27B: n_embd/n_head
    if config.query_pre_attn_scalar != scale_dim:
        raise AmautaError(f"{where}: llama.cpp scales Gemma 3 queries by 1/sqrt({scale_dim}), this model by "
                          f"1/sqrt({config.query_pre_attn_scalar}) (query_pre_attn_scalar); its GGUF would compute "
                          f"other logits")
    expected = ["sliding_attention" if (i + 1) % 6 else "full_attention" for i in range(config.num_hidden_layers)]
    if list(getattr(config, "layer_types", expected) or expected) != expected:
        raise AmautaError(f"{where}: llama.cpp's Gemma 3 has one full-attention layer in six; this model's "
                          f"layer_types differ")
    if _rope_theta(config, "sliding_attention") != 10000.0:
        raise AmautaError(f"{where}: llama.cpp's Gemma 3 uses rotary base 10000 on sliding layers, this model "
                          f"{_rope_theta(config, 'sliding_attention')}")
    if config.final_logit_softcapping or config.attn_logit_softcapping:
        raise AmautaError(f"{where}: llama.cpp's Gemma 3 has no logit soft-capping; this model has it")


def _layout(config: Any) -> _Layout:
    n_head = config.num_attention_heads
    if config.model_type == "falcon":
        n_kv = config.num_kv_heads if config.new_decoder_architecture else (1 if config.multi_query else n_head)
        return _Layout("falcon", n_head, n_kv, config.hidden_size // n_head)
    n_kv = getattr(config, "num_key_value_heads", None) or n_head
    head_dim = getattr(config, "head_dim", None) or config.hidden_size // n_head
    return _Layout(GGUF_ARCHITECTURES[config.model_type], n_head, n_kv, head_dim)


def _permute_rotary(weight, n_head: int):
    """HF's rotary layout (halves) → llama.cpp's (interleaved pairs), per head: what llama.cpp's `llama` expects."""
    rows = weight.shape[0]
    return weight.reshape(n_head, 2, rows // n_head // 2, *weight.shape[1:]).swapaxes(1, 2).reshape(weight.shape)


def _regroup_falcon_qkv(weight, layout: _Layout):
    """Falcon's fused rows (per kv group: its queries, one key, one value) → all queries, keys, values
    (llama.cpp's `jploski` layout; the same rows for Falcon-7B's multi-query attention)."""
    import numpy as np

    groups = weight.reshape(layout.n_kv, layout.n_head // layout.n_kv + 2, layout.head_dim, *weight.shape[1:])
    parts = (groups[:, :-2], groups[:, -2:-1], groups[:, -1:])
    return np.concatenate([p.reshape(-1, *weight.shape[1:]) for p in parts]).reshape(weight.shape)


def _arrange_rows(hf_name: str, data, layout: _Layout):
    """Reorder a tensor's output rows as llama.cpp reads them (applies to a LoRA B matrix too)."""
    if layout.arch == "llama" and hf_name.endswith("q_proj.weight"):
        return _permute_rotary(data, layout.n_head)
    if layout.arch == "llama" and hf_name.endswith("k_proj.weight"):
        return _permute_rotary(data, layout.n_kv)
    if layout.arch == "falcon" and hf_name.endswith("query_key_value.weight"):
        return _regroup_falcon_qkv(data, layout)
    return data


# Pre-tokenizers llama.cpp knows by name: a tokenizer that is not plain GPT-2 byte-level gets its family's.
_PRE_TOKENIZER = {"qwen2": "qwen2", "falcon": "falcon"}


def _is_plain_byte_level(spec: dict[str, Any]) -> bool:
    pre = spec.get("pre_tokenizer") or {}
    return pre.get("type") == "ByteLevel" and pre.get("use_regex", True)


def _tokenizer_fields(tokenizer: Any, model_type: str = "llama") -> dict[str, Any]:
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
    space_prefix = None
    if model.get("byte_fallback"):  # sentencepiece-style (Llama 2, Mistral, Gemma): llama.cpp's "llama" vocabulary
        for index, token in enumerate(tokens):
            if len(token) == 6 and token.startswith("<0x") and token.endswith(">"):
                types[index] = gguf.TokenType.BYTE
        unk = model.get("unk_token")
        if unk in vocab:
            types[vocab[unk]] = gguf.TokenType.UNKNOWN
        kind, pre = "llama", "default"
        # Llama 2 / Mistral prepend "▁" to the text (llama.cpp's default); Gemma does not.
        space_prefix = "Prepend" in json.dumps(spec.get("normalizer")) or "Metaspace" in json.dumps(spec.get("pre_tokenizer"))
    else:  # byte-level BPE (GPT-2 style: SmolLM2, Qwen, Falcon, the tiny test models)
        kind = "gpt2"
        pre = "gpt-2" if _is_plain_byte_level(spec) else _PRE_TOKENIZER.get(model_type, "gpt-2")
    # Scores order the vocabulary for llama.cpp's sentencepiece path: earlier tokens merge first.
    return {"model": kind, "pre": pre, "tokens": tokens, "types": types, "merges": merges,
            "scores": [-float(i) for i in range(size)], "space_prefix": space_prefix}


def _add_hyperparameters(writer: Any, config: Any, layout: _Layout) -> None:
    """The `<arch>.*` keys llama.cpp (and transformers' GGUF loader) read for this architecture."""
    import gguf

    writer.add_context_length(config.max_position_embeddings)
    writer.add_embedding_length(config.hidden_size)
    writer.add_block_count(config.num_hidden_layers)
    writer.add_head_count(layout.n_head)
    writer.add_head_count_kv(layout.n_kv)
    writer.add_vocab_size(config.vocab_size)
    if layout.arch == "falcon":
        writer.add_feed_forward_length(getattr(config, "ffn_hidden_size", None) or 4 * config.hidden_size)
        writer.add_tensor_data_layout("jploski")
        writer.add_layer_norm_eps(float(config.layer_norm_epsilon))
        writer.add_rope_freq_base(_rope_theta(config))
        return
    writer.add_feed_forward_length(config.intermediate_size)
    writer.add_layer_norm_rms_eps(float(config.rms_norm_eps))
    if layout.arch == "gemma3":
        writer.add_key_length(layout.head_dim)
        writer.add_value_length(layout.head_dim)
        writer.add_rope_freq_base(_rope_theta(config, "full_attention"))
        writer.add_sliding_window(int(config.sliding_window))
        rope = (getattr(config, "rope_parameters", None) or {}).get("full_attention") or {}
        if rope.get("rope_type") == "linear":  # Gemma 3 4B and larger stretch their global layers' rotary
            writer.add_rope_scaling_type(gguf.RopeScalingType.LINEAR)
            writer.add_rope_scaling_factor(float(rope["factor"]))
        return
    writer.add_rope_dimension_count(layout.head_dim)
    writer.add_rope_freq_base(_rope_theta(config))


def _add_tokenizer(writer: Any, tokenizer: Any, model_type: str) -> None:
    fields = _tokenizer_fields(tokenizer, model_type)
    writer.add_tokenizer_model(fields["model"])
    writer.add_tokenizer_pre(fields["pre"])
    writer.add_token_list(fields["tokens"])
    writer.add_token_types(fields["types"])
    writer.add_token_scores(fields["scores"])
    if fields["merges"]:
        writer.add_token_merges(fields["merges"])
    if fields["space_prefix"] is not None:
        writer.add_add_space_prefix(bool(fields["space_prefix"]))
    for key, method in (("bos_token_id", writer.add_bos_token_id), ("eos_token_id", writer.add_eos_token_id),
                        ("unk_token_id", writer.add_unk_token_id), ("pad_token_id", writer.add_pad_token_id)):
        value = getattr(tokenizer, key, None)
        if value is not None:
            method(int(value))
    writer.add_add_bos_token(bool(getattr(tokenizer, "add_bos_token", False)))
    if getattr(tokenizer, "chat_template", None):
        writer.add_chat_template(tokenizer.chat_template)


def _add_amauta_info(writer: Any, info: dict[str, Any] | None) -> None:
    import gguf

    for key, field in GGUF_INFO_KEYS.items():
        value = (info or {}).get(field)
        if key.startswith("amauta.") and isinstance(value, bool):
            writer.add_bool(key, value)
        elif key.startswith("amauta.") and isinstance(value, str):  # add_string would drop "" (no system prompt)
            writer.add_key_value(key, value, gguf.GGUFValueType.STRING)


def _tensor_names(arch: str, n_layers: int) -> Any:
    import gguf

    arch_enum = next(key for key, name in gguf.MODEL_ARCH_NAMES.items() if name == arch)
    return gguf.get_tensor_name_map(arch_enum, n_layers)


def _gguf_name(names: Any, hf_name: str) -> str:
    gguf_name = names.get_name(hf_name, try_suffixes=(".weight", ".bias"))
    if gguf_name is None:
        raise AmautaError(f"GGUF export: no llama.cpp name for tensor '{hf_name}'")
    return gguf_name


def _finish(writer: Any) -> None:
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()


def write_gguf(model: Any, tokenizer: Any, path: Path, *, name: str = "amauta", float32: bool = False,
               info: dict[str, Any] | None = None) -> Path:
    """Write a merged model (llama, mistral, qwen2, gemma3, falcon) as GGUF (F16 matrices, F32 norms; or all F32).

    info: `amauta.models.load.model_info` (profile, template, system prompt), written as `amauta.*` keys
        that loading the GGUF reads back (`amauta.models.embedded.gguf_model_info`).
    """
    import gguf
    import numpy as np
    import torch

    config = model.config
    arch = check_gguf_architecture(config)
    layout = _layout(config)
    writer = gguf.GGUFWriter(str(path), arch)
    writer.add_name(name)
    _add_hyperparameters(writer, config, layout)
    writer.add_file_type(gguf.LlamaFileType.ALL_F32 if float32 else gguf.LlamaFileType.MOSTLY_F16)
    _add_tokenizer(writer, tokenizer, config.model_type)
    _add_amauta_info(writer, info)

    names = _tensor_names(arch, config.num_hidden_layers)
    tied = getattr(config, "tie_word_embeddings", False)
    for hf_name, tensor in model.state_dict().items():
        if (tied and hf_name == "lm_head.weight") or hf_name.endswith("rotary_emb.inv_freq"):
            continue  # llama.cpp reuses token_embd when there is no output tensor
        data = _arrange_rows(hf_name, tensor.detach().to(torch.float32).cpu().numpy(), layout)
        if layout.arch == "gemma3" and hf_name.endswith("norm.weight"):
            data = data + 1.0  # Gemma's RMSNorm multiplies by (1 + w); llama.cpp's by w
        # llama.cpp's convention: 1-D tensors (norms, biases) stay F32, matrices F16.
        if not float32 and data.ndim > 1:
            data = data.astype(np.float16)
        writer.add_tensor(_gguf_name(names, hf_name), np.ascontiguousarray(data))
    _finish(writer)
    return path


# ---------------------------------------------------------------------------------------------- LoRA
def write_gguf_lora(model: Any, adapter_dir: Path, path: Path, *, name: str = "amauta-lora") -> Path:
    """Write the PEFT LoRA adapter in `adapter_dir` (trained on `model`, the plain base) as a GGUF LoRA.

    The layout is llama.cpp's `convert_lora_to_gguf.py`: `<tensor>.lora_a` (r × in) and `<tensor>.lora_b`
    (out × r), B's rows reordered like the base tensor's, and `adapter.lora.alpha` such that llama.cpp's
    scale alpha / r equals PEFT's (rsLoRA's alpha / sqrt(r) included).
    """
    config = model.config
    check_gguf_architecture(config)
    return _write_lora(adapter_dir, path, _layout(config), config.num_hidden_layers, name)


def write_gguf_lora_for_gguf(metadata: Mapping[str, Any], adapter_dir: Path, path: Path, *,
                             name: str = "amauta-lora") -> Path:
    """`write_gguf_lora` for the GGUF the LoRA will be applied to: its layout (architecture, heads, layers)
    taken from that file's `metadata` (key → value), so no transformers model is loaded (`amauta serve
    --backend llamacpp`)."""
    layout, n_layers = gguf_layout(metadata)
    return _write_lora(adapter_dir, path, layout, n_layers, name)


def gguf_layout(metadata: Mapping[str, Any]) -> tuple[_Layout, int]:
    """(layout, layer count) from a GGUF model's metadata; one line when its llama.cpp architecture is not one
    whose LoRA rows `write_gguf_lora` knows how to arrange."""
    arch = metadata.get("general.architecture")
    if arch not in set(GGUF_ARCHITECTURES.values()):
        raise AmautaError(f"a GGUF LoRA can be written for {', '.join(sorted(set(GGUF_ARCHITECTURES.values())))} "
                          f"models, and this GGUF is '{arch}'; give a GGUF LoRA file instead of the adapter folder")
    n_head = int(metadata[f"{arch}.attention.head_count"])
    n_kv = int(metadata.get(f"{arch}.attention.head_count_kv", n_head))
    head_dim = int(metadata.get(f"{arch}.attention.key_length", 0) or int(metadata[f"{arch}.embedding_length"]) // n_head)
    return _Layout(arch, n_head, n_kv, head_dim), int(metadata[f"{arch}.block_count"])


def _write_lora(adapter_dir: Path, path: Path, layout: _Layout, n_layers: int, name: str) -> Path:
    import gguf
    import numpy as np
    import torch
    from safetensors.torch import load_file

    arch = layout.arch
    adapter = json.loads((adapter_dir / "adapter_config.json").read_text(encoding="utf-8"))
    if adapter.get("rank_pattern") or adapter.get("alpha_pattern") or adapter.get("use_dora") or adapter.get(
            "modules_to_save") or adapter.get("target_parameters"):
        raise AmautaError(f"{adapter_dir}: a GGUF LoRA holds plain low-rank pairs with one scale; this adapter has "
                          f"per-module ranks, DoRA, fused expert targets or fully trained modules: export with --merge")
    rank, alpha = int(adapter["r"]), float(adapter["lora_alpha"])
    scaling = alpha / math.sqrt(rank) if adapter.get("use_rslora") else alpha / rank
    weights = load_file(str(adapter_dir / "adapter_model.safetensors"))
    names = _tensor_names(arch, n_layers)

    writer = gguf.GGUFWriter(str(path), arch)
    writer.add_name(name)
    writer.add_type(gguf.GGUFType.ADAPTER)
    writer.add_string(gguf.Keys.Adapter.TYPE, "lora")
    writer.add_float32(gguf.Keys.Adapter.LORA_ALPHA, scaling * rank)
    for key, a in sorted(weights.items()):
        if ".lora_A." not in key:
            if ".lora_B." not in key:
                raise AmautaError(f"{adapter_dir}: tensor '{key}' is not a LoRA pair: export with --merge")
            continue
        b = weights[key.replace(".lora_A.", ".lora_B.")]
        hf_name = key.removeprefix("base_model.model.").replace(".lora_A.weight", ".weight")
        target = _gguf_name(names, hf_name)
        a_np = a.to(torch.float32).numpy()
        b_np = _arrange_rows(hf_name, b.to(torch.float32).numpy(), layout)
        writer.add_tensor(f"{target}.lora_a", np.ascontiguousarray(a_np))
        writer.add_tensor(f"{target}.lora_b", np.ascontiguousarray(b_np))
    _finish(writer)
    return path


# ---------------------------------------------------------------------------------------------- quantize
def quantizer_available() -> bool:
    """Whether llama.cpp's quantizer (the llama-cpp-python binding) is importable."""
    import importlib.util

    return importlib.util.find_spec("llama_cpp") is not None


def check_gguf_type(gguf_type: str) -> None:
    """Refuse an unknown `--gguf-type`, or a quantized one without llama.cpp's quantizer, in one line."""
    if gguf_type not in GGUF_TYPES:
        raise AmautaError(f"--gguf-type {gguf_type}: choose one of {', '.join(GGUF_TYPES)}")
    if gguf_type not in ("f16", "f32") and not quantizer_available():
        raise AmautaError(f"--gguf-type {gguf_type} needs llama.cpp's quantizer, which is not installed: {QUANTIZER_HINT}")


def quantize_gguf(source: Path, target: Path, gguf_type: str, threads: int = 0) -> Path:
    """Quantize an F16/F32 GGUF into `target` with llama.cpp's `llama_model_quantize`.

    Tensors whose rows do not fit a k-quant block (256 values) get llama.cpp's own fallback type.
    """
    check_gguf_type(gguf_type)
    import llama_cpp

    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype = GGUF_TYPES[gguf_type]
    params.nthread = threads
    status = llama_cpp.llama_model_quantize(str(source).encode(), str(target).encode(), params)
    if status != 0 or not target.is_file():
        raise AmautaError(f"{source}: llama.cpp could not quantize this GGUF to {gguf_type} (status {status})")
    return target
