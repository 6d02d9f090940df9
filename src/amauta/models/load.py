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
import re
import tempfile
import time
from pathlib import Path
from typing import Any

from amauta.core.errors import AmautaError
from amauta.models import embedded
from amauta.models.registry import (
    Profile,
    find_profile_by_source,
    get_profile,
    profile_for_architecture,
    profile_names,
)
from amauta.models.types import MODEL_INFO_FILE, Device, DType, LoadedModel, Quantization

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

    from amauta.models import hub

    local = Path(path_or_id).exists()
    try:
        return AutoConfig.from_pretrained(path_or_id, **kwargs)
    except (OSError, ValueError, KeyError) as exc:
        first = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else type(exc).__name__
        if local:
            raise AmautaError(f"{path_or_id}: not a readable model folder ({first}); it needs a config.json "
                              f"and weights saved by save_pretrained") from None
        hint = (f"{hub.offline_reason()} and it is not in the local hub cache; download it where there is "
                f"internet (hf download {path_or_id}) or pass a local folder"
                if kwargs.get("local_files_only") else f"check the id or your access to it ({first})")
        raise AmautaError(f"cannot load hub model '{path_or_id}' (no local folder has that name either): {hint}") from None


# --- what an exported model says about itself -------------------------------------------------------

_INFO_KEYS = ("profile", "template", "use_tokenizer_template", "system_prompt")


def model_info(profile: Profile, tokenizer: Any = None) -> dict[str, Any]:
    """What an export records so that loading it later talks to it as it was trained (see `MODEL_INFO_FILE`)."""
    info: dict[str, Any] = {"profile": profile.name, "template": profile.template,
                            "use_tokenizer_template": profile.use_tokenizer_template,
                            "system_prompt": profile.system_prompt}
    chat_template = getattr(tokenizer, "chat_template", None)
    info["chat_template"] = chat_template if isinstance(chat_template, str) else None
    return info


def read_model_info(folder: Path) -> dict[str, Any]:
    """`MODEL_INFO_FILE` of a folder ({} when absent or unreadable)."""
    with contextlib.suppress(OSError, ValueError):
        info = json.loads((Path(folder) / MODEL_INFO_FILE).read_text(encoding="utf-8"))
        if isinstance(info, dict):
            return info
    return {}


def recorded_system_prompt(spec: str) -> str | None:
    """The system prompt `load_model(spec)` will give, found without loading: a registry profile's (also by
    hub id), or the one an export recorded (folder or GGUF); None when only loading can tell."""
    from amauta.models.embedded import gguf_model_info

    if spec in profile_names():
        return get_profile(spec).system_prompt
    path = Path(spec).expanduser()
    info = gguf_model_info(path) if path.suffix.lower() == ".gguf" and path.is_file() else (
        read_model_info(path) if path.is_dir() else {})
    if info.get("system_prompt") is not None:
        return info["system_prompt"]
    if info.get("profile") in profile_names():
        return get_profile(info["profile"]).system_prompt
    named = None if path.exists() else find_profile_by_source(spec)
    return named.system_prompt if named is not None else None


def check_template_name(template: str) -> None:
    """Refuse, with close matches, a `--template` that is not one of Amauta's templates."""
    from amauta.core.errors import did_you_mean
    from amauta.models.registry import TEMPLATES

    if template not in TEMPLATES:
        raise AmautaError(f"--template {template}: unknown template{did_you_mean(template, TEMPLATES)}; "
                          f"choose one of {', '.join(TEMPLATES)}")


def customize_profile(profile: Profile, *, system_prompt: str | None = None, template: str | None = None) -> Profile:
    """`profile` with this run's system prompt ("" = none) and/or template (Amauta's, instead of the tokenizer's)."""
    update: dict[str, Any] = {}
    if system_prompt is not None:
        update["system_prompt"] = system_prompt.strip()
    if template is not None:
        check_template_name(template)
        update.update(template=template, use_tokenizer_template=False)
    return profile.model_copy(update=update) if update else profile


def _profile_from_info(info: dict[str, Any], guess: Any) -> Profile | None:
    """The profile an export recorded: its registry profile (or `guess()`), with the recorded template and prompt."""
    if not info.get("profile") and not info.get("template"):
        return None
    base = get_profile(info["profile"]) if info.get("profile") in profile_names() else guess()
    fields = {k: info[k] for k in _INFO_KEYS[1:] if info.get(k) is not None}
    return base.model_copy(update=fields) if fields else base


def folder_profile(folder: Path, config: Any, tokenizer: Any, source: str) -> Profile:
    """The profile of a folder: the one an export or a conversion recorded, a registry hub id, or a guess."""
    def guess() -> Profile:
        return profile_for_architecture(config.model_type, name=folder.name or source, source=source,
                                        params_billion=count_params(config) / 1e9,
                                        context_length=getattr(config, "max_position_embeddings", None),
                                        has_chat_template=bool(getattr(tokenizer, "chat_template", None)))

    recorded = _profile_from_info(read_model_info(folder), guess)
    if recorded is not None:
        return recorded
    manifest = folder / "manifest.json"
    with contextlib.suppress(OSError, ValueError, KeyError, AmautaError, TypeError):
        name = json.loads(manifest.read_text())["config"]["profile"]
        if name in profile_names():
            return get_profile(name)
    named = find_profile_by_source(str(getattr(config, "_name_or_path", "")) or source)
    return named if named is not None else guess()


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

    from amauta.models.hub import hub_kwargs

    if params is not None:  # known from the profile: refuse before touching the hub or the disk
        check_fits(params, dtype, quantization, device, name)
    hub = {} if Path(src).exists() else hub_kwargs()  # offline: the local hub cache only, no retries
    config = _read_config(src, **hub)
    if params is None:
        params = count_params(config)
        check_fits(params, dtype, quantization, device, name)
    try:
        tokenizer = AutoTokenizer.from_pretrained(src, **hub)
    except (OSError, ValueError, KeyError) as exc:
        raise AmautaError(f"{src}: cannot read the tokenizer ({str(exc).strip()[:200]}); the folder needs the files "
                          "tokenizer.save_pretrained writes") from None
    # Weights go straight to their device (a 7B model is never staged in CPU RAM on its way to the GPU).
    kwargs: dict[str, Any] = {"dtype": getattr(torch, dtype), "device_map": {"": 0 if device == "cuda" else "cpu"}, **hub}
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
    if (path / "model" / "config.json").is_file():
        raise AmautaError(f"{path}: a full fine-tuning run holds a whole model, not an adapter; load it as the model "
                          f"(--model {path}) without --adapter")
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
               profile: Profile | str | None = None, system_prompt: str | None = None,
               template: str | None = None) -> LoadedModel:
    """Load a model and its tokenizer.

    spec: a registry name (`amauta models`), a hub id (`org/name`), a local folder (or a full fine-tuning
        run folder, whose model/ it loads), or a `.gguf` file.
    quantization: `none`, `8bit` or `4bit` (bitsandbytes; 4-bit = nf4 + double quantization + bf16 compute).
    dtype: `auto` (bf16 on a GPU or a bf16-capable CPU, else fp32; tiny test models stay fp32), or explicit.
    device: `auto` (cuda when available), `cpu` or `cuda`.
    adapter: a peft adapter folder, or a training run folder containing `adapter/`.
    profile: a registry profile (or its name) to use instead of the one found from `spec`.
    system_prompt: this run's system prompt instead of the profile's ("" = none); None keeps the profile's
        (or the one an exported model recorded).
    template: render with this Amauta template instead of the tokenizer's own (`--template`), for
        folders and GGUF files whose template cannot be found out.
    """

    started = time.perf_counter()
    if quantization not in ("none", "8bit", "4bit"):
        raise AmautaError(f"unknown quantization '{quantization}'; choose none, 8bit or 4bit")
    if template is not None:
        check_template_name(template)  # before any weight is read
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
        if not (path / "config.json").is_file() and (path / "model" / "config.json").is_file():
            path = path / "model"  # a full fine-tuning run folder: its weights are in model/
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
    chosen = customize_profile(chosen, system_prompt=system_prompt, template=template)
    return LoadedModel(model=model, tokenizer=tokenizer, profile=chosen, source=source, extra=extra)


def load_tokenizer(model: str, *, system_prompt: str | None = None) -> tuple[Any, Any]:
    """(tokenizer, profile) of `model` (a registry name, hub id or folder) without loading its weights.

    system_prompt: this run's system prompt instead of the profile's ("" = none), as in `load_model`.
    """
    tokenizer, profile = _tokenizer_and_profile(model)
    return tokenizer, customize_profile(profile, system_prompt=system_prompt)


def _tokenizer_and_profile(model: str) -> tuple[Any, Any]:
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
    from amauta.models.hub import hub_kwargs

    hub = {} if Path(where).exists() else hub_kwargs()  # offline: the local hub cache only, no retries
    try:
        tokenizer = AutoTokenizer.from_pretrained(where, **hub)
        if profile is None and Path(where).is_dir():
            profile = folder_profile(Path(where), AutoConfig.from_pretrained(where), tokenizer, where)
        elif profile is None:
            profile = find_profile_by_source(where) or profile_for_architecture(
                AutoConfig.from_pretrained(where, **hub).model_type, name=str(model), source=where,
                has_chat_template=bool(getattr(tokenizer, "chat_template", None)))
    except Exception as exc:  # offline hub, gated repo, missing files, not a model folder
        raise AmautaError(f"model '{model}': cannot load its tokenizer from {where} "
                          f"({type(exc).__name__}: {str(exc).splitlines()[0][:160]}); use a registry name "
                          "(`amauta models`), a local model folder or a .gguf file") from None
    return tokenizer, profile
