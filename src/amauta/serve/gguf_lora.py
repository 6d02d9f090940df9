"""LoRA adapters for the llama.cpp backend: checked against the GGUF, converted once, cached.

`amauta serve --backend llamacpp --adapter NAME=RUN` (and `amauta chat --backend llamacpp --adapter RUN`)
take a PEFT adapter (a training run folder or its `adapter/`) or a GGUF LoRA file. Before llama.cpp loads
anything, `prepare_adapter` checks that the adapter fits the GGUF it will be applied to:

- shapes: every LoRA pair must target a tensor the GGUF has, with the same input and output sizes (so an
  adapter of another size, layer count or architecture is refused; llama.cpp itself would print a log and
  fail, or worse);
- identity: when both are known, the registry profile the adapter was trained on (the run's manifest.json)
  must be the GGUF's (an adapter of SmolLM2-135M base on SmolLM2-135M-Instruct has the right shapes but
  other weights under it).

Each refusal is one line that names the base the adapter needs. A PEFT adapter is then converted with
`amauta.train.gguf_export.write_gguf_lora_for_gguf` into `amauta_home()/gguf-lora/<key>.gguf`, the key a
hash of the adapter's files and of the GGUF's layout: a folder Amauta made, written atomically, reused by
every later start (the run folder itself is never written to).
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from amauta.core.errors import AmautaError
from amauta.core.files import sha256_file
from amauta.core.paths import amauta_home

CACHE_FOLDER = "gguf-lora"
CONVERTER_VERSION = "1"
"""Part of each cache key: bump it when the conversion's output changes, so old files are not reused."""

Shape = tuple[int, ...]


@dataclass
class GgufBase:
    """What an adapter is checked against: a GGUF model's identity, metadata and tensor shapes."""

    path: Path
    model_id: str
    profile: str | None = None
    """The registry profile the GGUF is (a registry name, or `amauta.profile` of an Amauta export)."""
    metadata: dict[str, Any] = field(default_factory=dict)
    shapes: dict[str, Shape] = field(default_factory=dict)
    """GGUF tensor name → shape in PyTorch order (out, in)."""

    @property
    def arch(self) -> str:
        return str(self.metadata.get("general.architecture", "?"))

    @property
    def n_layers(self) -> int:
        return int(self.metadata.get(f"{self.arch}.block_count", 0))

    def describe(self) -> str:
        hidden = self.metadata.get(f"{self.arch}.embedding_length", "?")
        return f"{self.model_id} ({self.arch}, {self.n_layers} layers, hidden size {hidden})"


def read_base(path: Path, model_id: str, profile: str | None = None) -> GgufBase:
    """The identity and tensor shapes of the GGUF model at `path` (its header only: nothing is loaded).
    profile: the registry profile it is; by default the one an Amauta export recorded (`amauta.profile`)."""
    metadata, shapes = read_gguf_header(path)
    return GgufBase(path, model_id, profile or metadata.get("amauta.profile"), metadata, shapes)


_SCALARS = {"UINT8": "<B", "INT8": "<b", "UINT16": "<H", "INT16": "<h", "UINT32": "<I", "INT32": "<i",
            "FLOAT32": "<f", "BOOL": "<?", "UINT64": "<Q", "INT64": "<q", "FLOAT64": "<d"}


def read_gguf_header(path: Path) -> tuple[dict[str, Any], dict[str, Shape]]:
    """A GGUF file's metadata (numbers and strings; an array as its length) and tensor shapes (PyTorch order).

    The layout and type codes are the `gguf` package's; the reading is ours because `gguf.GGUFReader` builds a
    numpy view per array element: SmolLM2's 49k tokens and 49k merges took it 5-45 s here, this reads the
    header in a fraction of a second by skipping arrays."""
    import struct

    from gguf import GGUF_MAGIC, GGUFValueType

    scalars = {int(GGUFValueType[name]): fmt for name, fmt in _SCALARS.items()}
    string_type, array_type = int(GGUFValueType.STRING), int(GGUFValueType.ARRAY)
    try:
        with open(path, "rb") as handle:
            def read(fmt: str) -> Any:
                size = struct.calcsize(fmt)
                data = handle.read(size)
                if len(data) < size:
                    raise ValueError("the file ends inside its header")
                return struct.unpack(fmt, data)[0]

            def string() -> str:
                return handle.read(read("<Q")).decode("utf-8", "replace")

            def value(kind: int) -> Any:
                if kind in scalars:
                    return read(scalars[kind])
                if kind == string_type:
                    return string()
                if kind != array_type:
                    raise ValueError(f"unknown value type {kind}")
                item, count = read("<I"), read("<Q")
                if item in scalars:
                    handle.seek(count * struct.calcsize(scalars[item]), 1)
                else:
                    for _ in range(count):
                        value(item)
                return count

            if read("<I") != GGUF_MAGIC:
                raise ValueError("no GGUF magic number at its start")
            if read("<I") < 2:
                raise ValueError("GGUF version 1 is not supported")
            n_tensors, n_keys = read("<Q"), read("<Q")
            metadata = {}
            for _ in range(n_keys):
                key = string()
                metadata[key] = value(read("<I"))
            shapes = {}
            for _ in range(n_tensors):
                name = string()
                dims = [read("<Q") for _ in range(read("<I"))]
                read("<I"), read("<Q")  # type and data offset
                shapes[name] = tuple(reversed(dims))
    except (ValueError, OSError, struct.error) as exc:
        raise AmautaError(f"{path}: not a readable GGUF file ({exc})") from None
    return metadata, shapes


# --- what the adapter needs ---------------------------------------------------------------------------

def needed_base(adapter_folder: Path) -> tuple[str | None, str | None]:
    """(registry profile, description) of the base an adapter was trained on: the training run's manifest.json
    (its `profile`), else adapter_config.json's `base_model_name_or_path` (a registry profile when it names
    one: Amauta's converted folder of an embedded model, or a profile's unique hub id); None when unknown."""
    for folder in (adapter_folder, adapter_folder.parent):
        manifest = folder / "manifest.json"
        if manifest.is_file():
            try:
                data = json.loads(manifest.read_text(encoding="utf-8"))
            except (ValueError, OSError):
                continue
            if data.get("stage") == "train" and data.get("profile"):
                return str(data["profile"]), str(data["profile"])
    try:
        config = json.loads((adapter_folder / "adapter_config.json").read_text(encoding="utf-8"))
    except (ValueError, OSError):
        return None, None
    base = config.get("base_model_name_or_path")
    return (_registry_profile(str(base)), str(base)) if base else (None, None)


def _registry_profile(base: str) -> str | None:
    from amauta.models.registry import get_profile, profile_names

    names = profile_names()
    if Path(base).name in names:
        return Path(base).name
    matches = [n for n in names if base in (get_profile(n).hub_id, get_profile(n).source)]
    return matches[0] if len(matches) == 1 else None


def _refuse(where: Path, base: GgufBase, needed: str | None, reason: str, profile: str | None = None) -> AmautaError:
    if needed:
        return AmautaError(f"{where}: this adapter needs the base {needed}, not {base.describe()}: {reason}; "
                           f"serve it on {profile or 'that base'} (with --backend transformers, or a GGUF of it), "
                           f"or give an adapter trained on {base.model_id}")
    return AmautaError(f"{where}: this adapter does not fit {base.describe()}: {reason}; serve it with the base "
                       "model it was trained on")


def _check_pairs(pairs: dict[str, tuple[Shape, Shape]], base: GgufBase, where: Path, needed: str | None,
                 profile: str | None = None) -> None:
    """Every (A, B) pair must target a base tensor with A: (r, in) and B: (out, r)."""
    if not pairs:
        raise AmautaError(f"{where}: no LoRA tensors found; pass a PEFT LoRA adapter folder, a training run folder "
                          "or a GGUF LoRA file")
    for target, (a, b) in sorted(pairs.items()):
        if target not in base.shapes:
            raise _refuse(where, base, needed, f"it changes '{target}', which that GGUF does not have", profile)
        weight = base.shapes[target]
        if len(a) != 2 or len(b) != 2 or a[0] != b[1] or len(weight) != 2 or (b[0], a[1]) != weight:
            raise _refuse(where, base, needed, f"its '{target}' pair is {b[0]}×{b[1]} · {a[0]}×{a[1]}, "
                                               f"the GGUF's tensor is {'×'.join(map(str, weight))}", profile)


def _peft_pairs(folder: Path, base: GgufBase, needed: str | None, profile: str | None) -> dict[str, tuple[Shape, Shape]]:
    """GGUF target name → (A shape, B shape) of a PEFT adapter, read from the safetensors header only."""
    import gguf
    from safetensors import safe_open

    weights = folder / "adapter_model.safetensors"
    if not weights.is_file():
        raise AmautaError(f"{weights}: not found; the llamacpp backend needs a PEFT adapter saved as safetensors "
                          "(what `amauta train` writes)")
    arch_enum = next((key for key, name in gguf.MODEL_ARCH_NAMES.items() if name == base.arch), None)
    if arch_enum is None:
        raise AmautaError(f"{base.path}: llama.cpp architecture '{base.arch}' is unknown to the gguf package")
    names = gguf.get_tensor_name_map(arch_enum, base.n_layers)
    shapes: dict[str, Shape] = {}
    with safe_open(str(weights), framework="numpy") as handle:
        for key in handle.keys():
            shapes[key] = tuple(handle.get_slice(key).get_shape())
    pairs: dict[str, tuple[Shape, Shape]] = {}
    for key, a in shapes.items():
        if ".lora_A." not in key:
            continue
        hf_name = key.removeprefix("base_model.model.").replace(".lora_A.weight", ".weight")
        target = names.get_name(hf_name, try_suffixes=(".weight", ".bias"))
        if target is None:
            raise _refuse(folder, base, needed, f"its module '{hf_name.removesuffix('.weight')}' has no counterpart "
                                                f"in a {base.n_layers}-layer {base.arch} GGUF", profile)
        pairs[target] = (a, shapes.get(key.replace(".lora_A.", ".lora_B."), ()))
    return pairs


def _gguf_lora_pairs(path: Path, base: GgufBase) -> dict[str, tuple[Shape, Shape]]:
    """Target name → (A shape, B shape) of a GGUF LoRA file, after checking it is one, for this architecture."""
    metadata, tensors = read_gguf_header(path)
    if metadata.get("general.type") != "adapter" or metadata.get("adapter.type") != "lora":
        raise AmautaError(f"{path}: not a GGUF LoRA adapter (general.type {metadata.get('general.type')!r}); "
                          "give a LoRA written by `amauta export` or llama.cpp's convert_lora_to_gguf.py")
    arch = metadata.get("general.architecture")
    if arch != base.arch:
        raise _refuse(path, base, None, f"it is a LoRA for llama.cpp architecture '{arch}', the GGUF is '{base.arch}'")
    return {name.removesuffix(".lora_a"): (shape, tensors.get(name.removesuffix(".lora_a") + ".lora_b", ()))
            for name, shape in tensors.items() if name.endswith(".lora_a")}


# --- the one entry point ------------------------------------------------------------------------------

def prepare_adapter(path: Path, base: GgufBase) -> Path:
    """A GGUF LoRA file that fits `base`: `path` itself when it is one, else the PEFT adapter at `path`
    (a run folder or adapter folder) converted once into Amauta's cache. Refuses in one line, before
    llama.cpp loads anything, an adapter that does not fit."""
    from amauta.models.load import adapter_dir

    path = Path(path).expanduser()
    if path.suffix.lower() == ".gguf":
        if not path.is_file():
            raise AmautaError(f"{path}: GGUF LoRA file not found")
        _check_pairs(_gguf_lora_pairs(path, base), base, path, None)
        return path
    folder = adapter_dir(path)
    profile, needed = needed_base(folder)
    _check_pairs(_peft_pairs(folder, base, needed, profile), base, folder, needed, profile)
    if profile and base.profile and profile != base.profile:
        raise _refuse(folder, base, needed, "the shapes match, but the weights under it are another model's",
                      profile)
    return converted_lora(folder, base)


def cache_key(folder: Path, base: GgufBase) -> str:
    """The adapter's bytes and the GGUF layout the conversion depends on (architecture, heads, layers)."""
    from amauta.train.gguf_export import gguf_layout

    layout, n_layers = gguf_layout(base.metadata)
    digest = hashlib.sha256()
    for part in (CONVERTER_VERSION, (folder / "adapter_config.json").read_bytes().decode("utf-8", "replace"),
                 sha256_file(folder / "adapter_model.safetensors"),
                 f"{layout.arch}/{layout.n_head}/{layout.n_kv}/{layout.head_dim}/{n_layers}"):
        digest.update(part.encode("utf-8") + b"\0")
    return digest.hexdigest()[:24]


def converted_lora(folder: Path, base: GgufBase) -> Path:
    """`folder`'s adapter as a GGUF LoRA in `amauta_home()/gguf-lora/`, converted on the first call only."""
    from amauta.train.gguf_export import write_gguf_lora_for_gguf

    cache = amauta_home() / CACHE_FOLDER
    target = cache / f"{cache_key(folder, base)}.gguf"
    if target.is_file():
        return target
    cache.mkdir(parents=True, exist_ok=True)
    # Written beside its final name and renamed: a killed conversion leaves no half file under that name.
    fd, tmp = tempfile.mkstemp(prefix=f".{target.stem}.", suffix=".tmp", dir=cache)
    os.close(fd)
    try:
        write_gguf_lora_for_gguf(base.metadata, folder, Path(tmp), name=folder.parent.name if folder.name == "adapter"
                                 else folder.name)
        os.chmod(tmp, 0o644)
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return target
