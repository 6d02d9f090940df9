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
import tempfile
import time
from pathlib import Path
from typing import Any

from amauta.core.errors import AmautaError
from amauta.models import embedded
from amauta.models.registry import Profile, get_profile
from amauta.models.resolve import ModelSource, profile_from_weights, resolve
from amauta.models.types import MODEL_INFO_FILE as MODEL_INFO_FILE  # train.export imports it from here
from amauta.models.types import Device, DType, LoadedModel, Quantization

BYTES_PER_PARAM = {"float32": 4.0, "bfloat16": 2.0, "float16": 2.0, "8bit": 1.0, "4bit": 0.55}
OVERHEAD = 1.2  # activations, buffers and the allocator's slack on top of the weights


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

def model_info(profile: Profile, tokenizer: Any = None) -> dict[str, Any]:
    """What an export records so that loading it later talks to it as it was trained (see `MODEL_INFO_FILE`)."""
    info: dict[str, Any] = {"profile": profile.name, "template": profile.template,
                            "use_tokenizer_template": profile.use_tokenizer_template,
                            "system_prompt": profile.system_prompt}
    chat_template = getattr(tokenizer, "chat_template", None)
    info["chat_template"] = chat_template if isinstance(chat_template, str) else None
    return info


def recorded_system_prompt(spec: str) -> str | None:
    """The system prompt `load_model(spec)` will give, found without loading: a registry profile's (also by
    hub id), or the one an export recorded (folder or GGUF); None when only loading can tell."""
    try:
        return resolve(spec).system_prompt
    except AmautaError:  # a spec loading will refuse: nothing recorded
        return None


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


def _from_pretrained(src: str, *, dtype: str, quantization: str, device: str, name: str,
                     params: float | None) -> tuple[Any, Any, Any, float]:
    """Config, tokenizer and weights with `from_pretrained` (a local folder or a hub id):
    `(model, tokenizer, config, parameter count)`."""
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
    return model.eval(), tokenizer, config, params


def _load_tiny(source: ModelSource, *, dtype: str, quantization: str, device: str) -> tuple[Any, Any]:
    """A tiny random-weight model; quantized through a temporary folder (bitsandbytes quantizes while loading)."""
    import torch

    from amauta.models.tiny import tiny_model, tiny_tokenizer

    model, tokenizer = tiny_model(str(source.location)), tiny_tokenizer()
    if quantization == "none":
        return model.to(device=device, dtype=getattr(torch, dtype)), tokenizer
    with tempfile.TemporaryDirectory(prefix="amauta-tiny-") as tmp:
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        model, tokenizer, _, _ = _from_pretrained(tmp, dtype=dtype, quantization=quantization, device=device,
                                                  name=source.name, params=1e5)
    return model, tokenizer


def _converted_folder(source: ModelSource) -> Path:
    """The safetensors folder of an embedded model or a GGUF file, converted on first use: a GGUF loads
    slowly and cannot be quantized by bitsandbytes."""
    if source.kind == "embedded":
        return embedded.ensure_converted(source.name, str(source.location))
    return embedded.convert_gguf(Path(source.location), embedded.gguf_cache_name(Path(source.location)))


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
        run folder, whose model/ it loads), or a `.gguf` file
        (`amauta.models.resolve.resolve` says which).
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
    source = resolve(spec)
    if source.kind == "tiny" and dtype == "auto":
        dtype = "float32"  # tests compare numbers: keep fp32 unless asked
    dtype = resolve_dtype(dtype, device)
    extra: dict[str, Any] = {"quantization": quantization, "device": device, "dtype": dtype}
    if quantization != "none" and device == "cpu":
        extra["note"] = "bitsandbytes on CPU is slow; for speed use a GPU or quantization none"
    load: dict[str, Any] = {"dtype": dtype, "quantization": quantization, "device": device, "name": source.name,
                            "params": source.params}

    match source.kind:
        case "tiny":
            model, tokenizer = _load_tiny(source, dtype=dtype, quantization=quantization, device=device)
            found, where = source.profile, "tiny"
        case "embedded" | "gguf":
            if source.params is not None:  # refuse before the one-time conversion
                check_fits(source.params, dtype, quantization, device, source.name)
            folder = _converted_folder(source)
            model, tokenizer, config, params = _from_pretrained(str(folder), **load)
            found = profile_from_weights(source, config, tokenizer, params)
            where, extra["converted_from"] = str(folder), str(source.location)
        case "folder" | "hub":  # a hub id: real from_pretrained, served from the local hub cache when offline
            where = str(source.location)
            model, tokenizer, config, params = _from_pretrained(where, **load)
            found = profile_from_weights(source, config, tokenizer, params)
    chosen = chosen or found
    assert chosen is not None  # tiny and embedded sources always come with their registry profile

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
    return LoadedModel(model=model, tokenizer=tokenizer, profile=chosen, source=where, extra=extra)


def load_tokenizer(model: str, *, system_prompt: str | None = None) -> tuple[Any, Any]:
    """(tokenizer, profile) of `model` (a registry name, hub id, folder or GGUF file) without loading its
    weights: the profile `load_model(model)` gives.

    system_prompt: this run's system prompt instead of the profile's ("" = none), as in `load_model`.
    """
    try:
        source = resolve(model)
    except AmautaError as exc:
        raise AmautaError(f"model '{model}': cannot load its tokenizer: {exc}") from None
    tokenizer, profile = _tokenizer_and_profile(model, source)
    return tokenizer, customize_profile(profile, system_prompt=system_prompt)


def _tokenizer_and_profile(model: str, source: ModelSource) -> tuple[Any, Profile]:
    if source.kind == "tiny":
        from amauta.models.tiny import tiny_tokenizer

        assert source.profile is not None  # a tiny model is always a registry profile
        return tiny_tokenizer(), source.profile
    from transformers import AutoConfig, AutoTokenizer

    from amauta.models.hub import hub_kwargs

    where = str(_converted_folder(source) if source.kind in ("embedded", "gguf") else source.location)
    hub = {} if Path(where).exists() else hub_kwargs()  # offline: the local hub cache only, no retries
    try:
        tokenizer = AutoTokenizer.from_pretrained(where, **hub)
        if source.profile is not None:
            return tokenizer, source.profile
        config = AutoConfig.from_pretrained(where, **hub)
        return tokenizer, profile_from_weights(source, config, tokenizer, count_params(config))
    except Exception as exc:  # offline hub, gated repo, missing files, not a model folder
        raise AmautaError(f"model '{model}': cannot load its tokenizer from {where} "
                          f"({type(exc).__name__}: {str(exc).splitlines()[0][:160]}); use a registry name "
                          "(`amauta models`), a local model folder or a .gguf file") from None
