"""`load_model`: a profile name, hub id, local folder or GGUF file → a ready `LoadedModel`.

    load_model("smollm2-135m-instruct")                  # embedded: converted once, then ~1 s
    load_model("mistral-7b", quantization="4bit")        # hub id from the registry (QLoRA, thesis Table 1)
    load_model("tiny-falcon")                            # random weights in memory, for tests
    load_model("runs/mi-modelo", adapter="runs/sri-lora")  # a folder plus a trained LoRA adapter

Before any weight is read, the memory the model needs (parameters × bytes per parameter, plus 20 %)
is checked against free RAM or GPU memory, and a model that will not fit is refused with the estimate
and the options. The tokenizer always gets a pad token.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import tempfile
import time
from pathlib import Path
from typing import Any, Literal

from amauta.core.errors import AmautaError
from amauta.models import embedded
from amauta.models.registry import (
    Profile,
    find_profile_by_source,
    get_profile,
    profile_for_architecture,
    profile_names,
)
from amauta.models.types import LoadedModel

Quantization = Literal["none", "8bit", "4bit"]
DType = Literal["auto", "float32", "bfloat16", "float16"]
Device = Literal["auto", "cpu", "cuda"]

BYTES_PER_PARAM = {"float32": 4.0, "bfloat16": 2.0, "float16": 2.0, "8bit": 1.0, "4bit": 0.55}
OVERHEAD = 1.2  # activations, buffers and the allocator's slack on top of the weights
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")


# --- the machine -------------------------------------------------------------------------------------

def cpu_supports_bf16() -> bool:
    """Whether this CPU computes bf16 natively (AVX512-BF16 or AMX), where bf16 beats fp32."""
    import torch

    for probe in ("_is_avx512_bf16_supported", "_is_amx_tile_supported"):
        with contextlib.suppress(Exception):
            if getattr(torch.cpu, probe)():
                return True
    with contextlib.suppress(OSError):
        flags = Path("/proc/cpuinfo").read_text()
        return "avx512_bf16" in flags or "amx_bf16" in flags
    return False


def resolve_device(device: str) -> str:
    """`auto` → `cuda` when a GPU is visible, else `cpu`; asking for a missing GPU is an error."""
    import torch

    if device not in ("auto", "cpu", "cuda"):
        raise AmautaError(f"unknown device '{device}'; choose auto, cpu or cuda")
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda" and not torch.cuda.is_available():
        raise AmautaError("device 'cuda' requested but no GPU is visible to torch; use --device cpu")
    return device


def resolve_dtype(dtype: str, device: str) -> str:
    """`auto` → bf16 on a GPU or a bf16-capable CPU, fp16 on older GPUs, fp32 otherwise."""
    import torch

    if dtype not in ("auto", "float32", "bfloat16", "float16"):
        raise AmautaError(f"unknown dtype '{dtype}'; choose auto, float32, bfloat16 or float16")
    if dtype != "auto":
        return dtype
    if device == "cuda":
        return "bfloat16" if torch.cuda.is_bf16_supported() else "float16"
    return "bfloat16" if cpu_supports_bf16() else "float32"


def free_memory_bytes(device: str) -> int:
    """Free GPU memory, or available RAM, in bytes."""
    import torch

    if device == "cuda":
        return int(torch.cuda.mem_get_info()[0])
    import psutil

    return int(psutil.virtual_memory().available)


def check_fits(params: float, dtype: str, quantization: str, device: str, name: str) -> float:
    """Refuse, with the estimate and the options, a model whose weights will not fit; return GB needed."""
    key = quantization if quantization != "none" else dtype
    need = params * BYTES_PER_PARAM[key] * OVERHEAD
    free = free_memory_bytes(device)
    if need > free:
        gb = 1024**3
        options = []
        if quantization != "4bit":
            options.append(f"--quantization 4bit (~{params * BYTES_PER_PARAM['4bit'] * OVERHEAD / gb:.1f} GB)")
        if quantization == "none" and dtype == "float32":
            options.append(f"--dtype bfloat16 (~{params * 2 * OVERHEAD / gb:.1f} GB)")
        options.append("a smaller model such as smollm2-135m-instruct or gemma-3-270m")
        raise AmautaError(f"{name} will not fit: {params / 1e9:.2f}B parameters × {BYTES_PER_PARAM[key]:g} bytes "
                          f"({key}) × {OVERHEAD} ≈ {need / gb:.1f} GB, but only {free / gb:.1f} GB is free on {device}; "
                          f"try {' or '.join(options)}")
    return need / 1024**3


def count_params(config: Any) -> int:
    """Parameters of the model `config` describes, counted on the meta device (no memory used)."""
    import torch
    from transformers import AutoModelForCausalLM

    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(config)
    return sum(p.numel() for p in model.parameters())


# --- where the weights are ---------------------------------------------------------------------------

def _read_config(path_or_id: str, **kwargs: Any) -> Any:
    from transformers import AutoConfig

    try:
        return AutoConfig.from_pretrained(path_or_id, **kwargs)
    except (OSError, ValueError, KeyError) as exc:
        first = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else type(exc).__name__
        if Path(path_or_id).exists():
            raise AmautaError(f"{path_or_id}: not a readable model folder ({first}); it needs a config.json "
                              f"and weights saved by save_pretrained") from None
        offline = os.environ.get("HF_HUB_OFFLINE", "0") not in ("0", "", "false")
        hint = ("the hub is offline (HF_HUB_OFFLINE=1) and it is not in the local hub cache; "
                "download it where there is internet (hf download " + path_or_id + ") or pass a local folder"
                if offline else f"check the id or your access to it ({first})")
        raise AmautaError(f"cannot load hub model '{path_or_id}' (no local folder has that name either): {hint}") from None


def folder_profile(folder: Path, config: Any, tokenizer: Any, source: str) -> Profile:
    """The profile of a folder: the one recorded by a conversion, a registry hub id, or a guess."""
    manifest = folder / "manifest.json"
    with contextlib.suppress(OSError, ValueError, KeyError, AmautaError, TypeError):
        recorded = json.loads(manifest.read_text())["config"]["profile"]
        if recorded in profile_names():
            return get_profile(recorded)
    named = find_profile_by_source(str(getattr(config, "_name_or_path", "")) or source)
    if named is not None:
        return named
    return profile_for_architecture(config.model_type, name=folder.name or source, source=source,
                                    params_billion=count_params(config) / 1e9,
                                    context_length=getattr(config, "max_position_embeddings", None),
                                    has_chat_template=bool(getattr(tokenizer, "chat_template", None)))


def _bnb_config(quantization: str) -> Any:
    """bitsandbytes settings: 4-bit is the thesis's QLoRA (nf4, double quantization, bf16 compute)."""
    import torch
    from transformers import BitsAndBytesConfig

    try:
        import bitsandbytes  # noqa: F401
    except ImportError:
        raise AmautaError(f"--quantization {quantization} needs bitsandbytes; run: pip install 'amauta[gpu]' "
                          "(or pip install bitsandbytes)") from None
    if quantization == "8bit":
        return BitsAndBytesConfig(load_in_8bit=True)
    return BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True,
                              bnb_4bit_compute_dtype=torch.bfloat16)


def _from_folder(src: str, *, dtype: str, quantization: str, device: str, name: str,
                 params: float | None, profile: Profile | None) -> tuple[Any, Any, Profile]:
    """Load config, tokenizer and weights with `from_pretrained` (a local folder or a hub id)."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    if params is not None:  # known from the profile: refuse before touching the hub or the disk
        check_fits(params, dtype, quantization, device, name)
    config = _read_config(src)
    if params is None:
        params = count_params(config)
        check_fits(params, dtype, quantization, device, name)
    try:
        tokenizer = AutoTokenizer.from_pretrained(src)
    except (OSError, ValueError, KeyError) as exc:
        raise AmautaError(f"{src}: cannot read the tokenizer ({str(exc).strip()[:200]}); the folder needs the files "
                          "tokenizer.save_pretrained writes") from None
    # Weights go straight to their device (a 7B model is never staged in CPU RAM on its way to the GPU).
    kwargs: dict[str, Any] = {"dtype": getattr(torch, dtype), "device_map": {"": 0 if device == "cuda" else "cpu"}}
    if quantization != "none":
        kwargs["quantization_config"] = _bnb_config(quantization)
    try:
        model = AutoModelForCausalLM.from_pretrained(src, **kwargs)
    except (OSError, ValueError, KeyError) as exc:
        raise AmautaError(f"{src}: cannot load the weights ({str(exc).strip().splitlines()[0][:200]}); check the "
                          "folder holds complete *.safetensors or *.bin files") from None
    if profile is None:
        profile = folder_profile(Path(src), config, tokenizer, src) if Path(src).is_dir() else \
            (find_profile_by_source(src) or profile_for_architecture(
                config.model_type, name=src, source=src, params_billion=params / 1e9,
                context_length=getattr(config, "max_position_embeddings", None),
                has_chat_template=bool(getattr(tokenizer, "chat_template", None))))
    return model.eval(), tokenizer, profile


def _tiny(profile: Profile, dtype: str, device: str) -> tuple[Any, Any]:
    import torch

    from amauta.models.tiny import tiny_model, tiny_tokenizer

    model = tiny_model(profile.source.removeprefix("tiny:"))
    return model.to(device=device, dtype=getattr(torch, dtype)), tiny_tokenizer()


def adapter_dir(adapter: str | Path) -> Path:
    """An adapter folder, or a training run folder that holds `adapter/`."""
    path = Path(adapter).expanduser()
    for candidate in (path, path / "adapter"):
        if (candidate / "adapter_config.json").is_file():
            return candidate
    if not path.exists():
        raise AmautaError(f"{path}: adapter folder not found")
    raise AmautaError(f"{path}: no adapter_config.json here or in {path / 'adapter'}; pass the adapter/ folder "
                      "a training run wrote (or the run folder itself)")


def _ensure_pad(model: Any, tokenizer: Any) -> None:
    """Give the tokenizer a pad token (batching and training need one) without growing the vocabulary."""
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.unk_token or tokenizer.eos_token
    if getattr(model, "generation_config", None) is not None and model.generation_config.pad_token_id is None:
        model.generation_config.pad_token_id = tokenizer.pad_token_id


# --- the one entry point ----------------------------------------------------------------------------

def load_model(spec: str | Path, *, quantization: Quantization = "none", dtype: DType = "auto",
               device: Device = "auto", adapter: str | Path | None = None,
               profile: Profile | str | None = None) -> LoadedModel:
    """Load a model and its tokenizer.

    spec: a registry name (`amauta models`), a hub id (`org/name`), a local folder, or a `.gguf` file.
    quantization: `none`, `8bit` or `4bit` (bitsandbytes; 4-bit = nf4 + double quantization + bf16 compute).
    dtype: `auto` (bf16 on a GPU or a bf16-capable CPU, else fp32; tiny test models stay fp32), or explicit.
    device: `auto` (cuda when available), `cpu` or `cuda`.
    adapter: a peft adapter folder, or a training run folder containing `adapter/`.
    profile: a registry profile (or its name) to use instead of the one found from `spec`.
    """

    started = time.perf_counter()
    if quantization not in ("none", "8bit", "4bit"):
        raise AmautaError(f"unknown quantization '{quantization}'; choose none, 8bit or 4bit")
    device = resolve_device(device)
    chosen = get_profile(profile) if isinstance(profile, str) else profile
    spec = str(spec)
    path = Path(spec).expanduser()
    extra: dict[str, Any] = {"quantization": quantization, "device": device}

    if spec in profile_names():
        base = get_profile(spec)
        chosen = chosen or base
        if base.kind == "tiny":
            dtype = "float32" if dtype == "auto" else dtype  # tests compare numbers: keep fp32 unless asked
        if base.kind == "local":  # a user profile whose source is a folder or a .gguf on this machine
            path = Path(base.source).expanduser()
            if not path.exists():
                raise AmautaError(f"profile '{base.name}': its source {path} does not exist; fix 'source' in "
                                  "your profiles file")
    elif path.suffix.lower() == ".gguf" or path.exists() or spec.startswith(("/", ".", "~")):
        base = None
        if not path.exists():
            raise AmautaError(f"{path}: {'file' if path.suffix else 'folder'} not found")
    elif _HUB_ID.match(spec):
        base = find_profile_by_source(spec)
        chosen = chosen or base
    else:
        get_profile(spec)  # raises with close matches
    dtype = resolve_dtype(dtype, device)
    extra["dtype"] = dtype
    if quantization != "none" and device == "cpu":
        extra["note"] = "bitsandbytes on CPU is slow; for speed use a GPU or quantization none"

    if base is not None and base.kind == "tiny":
        if quantization == "none":
            model, tokenizer = _tiny(base, dtype, device)
            source: str = "tiny"
        else:  # bitsandbytes quantizes while loading: write the tiny model to a folder and load that
            model, tokenizer = _tiny(base, "float32", "cpu")
            with tempfile.TemporaryDirectory(prefix="amauta-tiny-") as tmp:
                model.save_pretrained(tmp)
                tokenizer.save_pretrained(tmp)
                model, tokenizer, _ = _from_folder(tmp, dtype=dtype, quantization=quantization, device=device,
                                                   name=spec, params=1e5, profile=base)
            source = "tiny"
    elif base is not None and base.kind == "embedded":
        check_fits(base.params_billion * 1e9, dtype, quantization, device, base.name)
        folder = embedded.ensure_converted(base.name, base.source)
        model, tokenizer, _ = _from_folder(str(folder), dtype=dtype, quantization=quantization, device=device,
                                           name=base.name, params=base.params_billion * 1e9, profile=chosen)
        source, extra["converted_from"] = str(folder), base.source
    elif path.suffix.lower() == ".gguf":
        # A GGUF loads slowly and cannot be quantized by bitsandbytes: convert it once, then load the folder.
        folder = embedded.convert_gguf(path, embedded.gguf_cache_name(path))
        model, tokenizer, found = _from_folder(str(folder), dtype=dtype, quantization=quantization, device=device,
                                               name=path.name, params=None, profile=chosen)
        if chosen is None:
            found = found.model_copy(update={"name": path.stem, "source": str(path)})
        chosen, source, extra["converted_from"] = found, str(folder), str(path)
    elif path.exists():
        if not path.is_dir():
            raise AmautaError(f"{path}: not a model folder or a .gguf file")
        model, tokenizer, chosen = _from_folder(str(path), dtype=dtype, quantization=quantization, device=device,
                                                name=path.name, params=None, profile=chosen)
        source = str(path)
    else:  # a hub id: real from_pretrained, served from the local hub cache when offline
        hub_id = base.source if base is not None else spec
        params = base.params_billion * 1e9 if base is not None else None
        model, tokenizer, chosen = _from_folder(hub_id, dtype=dtype, quantization=quantization, device=device,
                                                name=spec, params=params, profile=chosen)
        source = hub_id

    _ensure_pad(model, tokenizer)
    if adapter is not None:
        from peft import PeftModel

        adapter_folder = adapter_dir(adapter)
        try:
            model = PeftModel.from_pretrained(model, str(adapter_folder)).eval()
        except (ValueError, KeyError, RuntimeError, OSError) as exc:
            raise AmautaError(f"{adapter_folder}: this adapter does not fit {chosen.name} "
                              f"({str(exc).strip().splitlines()[0][:200]}); load it on the base model it was trained on") from None
        extra["adapter"] = str(adapter_folder)
    extra["load_seconds"] = round(time.perf_counter() - started, 2)
    return LoadedModel(model=model, tokenizer=tokenizer, profile=chosen, source=source, extra=extra)


def load_tokenizer(model: str) -> tuple[Any, Any]:
    """(tokenizer, profile) of `model` (a registry name, hub id or folder) without loading its weights."""
    from amauta.models.registry import find_profile_by_source, get_profile, profile_for_architecture

    if str(model).endswith(".gguf"):  # the tokenizer lives inside the GGUF: the models room's loader reads it
        loaded = load_model(model, device="cpu")
        return loaded.tokenizer, loaded.profile
    try:
        profile = get_profile(model)
    except AmautaError:
        profile = None
    if profile is not None and profile.kind == "tiny":
        from amauta.models.tiny import tiny_tokenizer

        return tiny_tokenizer(), profile
    from transformers import AutoConfig, AutoTokenizer

    if profile is not None and profile.kind == "embedded":
        from amauta.models.embedded import ensure_converted

        where = str(ensure_converted(profile.name, profile.source))
    else:
        where = profile.source if profile is not None else str(model)
    try:
        tokenizer = AutoTokenizer.from_pretrained(where)
        if profile is None and Path(where).is_dir():
            profile = folder_profile(Path(where), AutoConfig.from_pretrained(where), tokenizer, where)
        elif profile is None:
            profile = find_profile_by_source(where) or profile_for_architecture(
                AutoConfig.from_pretrained(where).model_type, name=str(model), source=where,
                has_chat_template=bool(getattr(tokenizer, "chat_template", None)))
    except Exception as exc:  # offline hub, gated repo, missing files, not a model folder
        raise AmautaError(f"model '{model}': cannot load its tokenizer from {where} "
                          f"({type(exc).__name__}: {str(exc).splitlines()[0][:160]}); use a registry name "
                          "(`amauta models`), a local model folder or a .gguf file") from None
    return tokenizer, profile
