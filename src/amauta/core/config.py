"""Typed configs read from YAML, with errors a person can act on.

Every stage's config is a pydantic model with `extra="forbid"`: a misspelt key is refused with the
file, the key and the closest valid name, instead of being silently ignored.
"""

from __future__ import annotations

import difflib
import re
from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ConfigDict, ValidationError

from amauta.core.errors import AmautaError
from amauta.core.files import nesting_line, read_text, too_deep_message

C = TypeVar("C", bound=BaseModel)


class StageConfig(BaseModel):
    """Base for stage configs: unknown keys are errors, values are validated on assignment.

    Fields are documented with `Field(description=...)`, the one style: the description is the field's
    `--help` line (core/cli_options.py) and what did-you-mean reads ("learning_rate" → optimizer.lr).
    """

    model_config = ConfigDict(extra="forbid", validate_assignment=True, protected_namespaces=())


def read_yaml(path: str | Path) -> dict[str, Any]:
    """Read a YAML mapping, naming the file and line when it is malformed, not UTF-8 or nested too deeply."""
    path = Path(path)
    if not path.is_file():
        raise AmautaError(f"{path}: config file not found")
    text = read_text(path)
    try:
        data = yaml.safe_load(text)
    except yaml.reader.ReaderError as exc:  # a control character: a binary file, or text that is not YAML
        line = text.count("\n", 0, exc.position) + 1
        raise AmautaError(f"{path}:{line}: not a YAML text file (character #x{exc.character:02x}: {exc.reason}); "
                          "pass a YAML config") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f":{mark.line + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise AmautaError(f"{path}{where}: invalid YAML ({problem})") from None
    except RecursionError:
        raise AmautaError(too_deep_message(f"{path}:{nesting_line(text)}")) from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise AmautaError(f"{path}: expected a mapping of keys to values at the top level")
    return data


def _model_class(annotation: Any) -> Any:
    """The pydantic model inside an annotation such as `Sub`, `Sub | None` or `list[Sub]`, else None."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in getattr(annotation, "__args__", ()):
        found = _model_class(arg)
        if found is not None:
            return found
    return None


def _field_names(model: type[BaseModel], loc: tuple) -> list[str]:
    """The valid keys at the place `loc` points to inside `model` (for did-you-mean suggestions)."""
    current: Any = model
    for part in loc[:-1]:
        if isinstance(part, int):  # a list index: stay on the list's item model
            continue
        fields = getattr(current, "model_fields", None)
        if not fields or part not in fields:
            return []
        current = _model_class(fields[part].annotation)
        if current is None:
            return []
    fields = getattr(current, "model_fields", None)
    return list(fields) if fields else []


def _dotted_fields(model: type[BaseModel], prefix: str = "", depth: int = 3) -> dict[str, Any]:
    """Every key of `model` and of the models nested in it (to `depth` levels), as dotted path → FieldInfo."""
    found: dict[str, Any] = {}
    for name, info in model.model_fields.items():
        found[prefix + name] = info
        inner = _model_class(info.annotation)
        if inner is not None and depth > 1:
            found.update(_dotted_fields(inner, f"{prefix}{name}.", depth - 1))
    return found


def _words(text: str) -> list[str]:
    return re.findall(r"[a-z0-9]+", text.lower())


def _unknown_key_hint(model: type[BaseModel], loc: tuple) -> str:
    """' (did you mean: …?)' for an unknown key: a key of that name elsewhere, a close name at its level,
    a close name elsewhere, a field whose description holds the key's words, a looser name at its level.

    A key written at the wrong level (`lr:` at the top of a train config, `learning_rate:` under `lora:`) is
    looked up in the whole config and suggested by its dotted path: `optimizer.lr` ("Peak learning rate").
    """
    key = str(loc[-1])
    here = ".".join(str(p) for p in loc[:-1] if not isinstance(p, int))
    siblings = _field_names(model, loc)
    elsewhere = {path: info for path, info in _dotted_fields(model).items() if path.rpartition(".")[0] != here}
    by_name: dict[str, list[str]] = {}
    for path in elsewhere:
        by_name.setdefault(path.rpartition(".")[2], []).append(path)
    paths = (by_name.get(key)
             or difflib.get_close_matches(key, siblings, n=3, cutoff=0.75)
             or [path for name in difflib.get_close_matches(key, list(by_name), n=3, cutoff=0.75) for path in by_name[name]]
             or _described_by(key, elsewhere)
             or difflib.get_close_matches(key, siblings, n=3, cutoff=0.5))
    return f" (did you mean: {', '.join(paths[:3])}?)" if paths else ""


def _described_by(key: str, fields: dict[str, Any]) -> list[str]:
    """The dotted paths whose description holds every word of `key`, the most specific ones first."""
    wanted = _words(key)
    scored = []
    for path, info in fields.items():
        described = _words(info.description or "")
        if wanted and all(word in described for word in wanted):
            scored.append((len(wanted) / len(described), path))
    best = max((score for score, _ in scored), default=0)
    return [path for score, path in scored if score == best]


def validate_config(model: type[C], data: dict[str, Any], source: str = "config") -> C:
    """Validate `data` as `model`, turning the first pydantic error into one clear line."""
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        err = exc.errors()[0]
        loc = tuple(err.get("loc", ()))
        key = ".".join(str(p) for p in loc) or "(top level)"
        if err.get("type") == "extra_forbidden":
            hint = _unknown_key_hint(model, loc)
            raise AmautaError(f"{source}: unknown key '{key}'{hint}") from None
        raise AmautaError(f"{source}: '{key}': {err.get('msg')} (got {err.get('input')!r})") from None


def set_dotted(data: dict[str, Any], dotted: str, value: Any) -> None:
    """Set `data["optim"]["lr"] = value` for dotted "optim.lr", making the sections it needs."""
    *parents, last = dotted.split(".")
    for part in parents:
        child = data.setdefault(part, {})
        if not isinstance(child, dict):
            raise AmautaError(f"override '{dotted}': '{part}' is not a section")
        data = child
    data[last] = value


def parse_set(items: list[str]) -> dict[str, Any]:
    """`["lora.r=8", "optimizer.lr=1e-4"]` → {"lora.r": 8, "optimizer.lr": 0.0001} (values parsed as YAML)."""
    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise AmautaError(f"--set '{item}': expected KEY=VALUE, e.g. --set lora.r=8")
        parsed = yaml.safe_load(value) if value.strip() else None
        # YAML reads 1e-4 as a string (it wants 1.0e-4); numbers are what people mean here.
        if isinstance(parsed, str):
            try:
                parsed = float(parsed)
            except ValueError:
                pass
        out[key.strip()] = parsed
    return out


def load_config(model: type[C], path: str | Path, overrides: dict[str, Any] | None = None) -> C:
    """Read YAML at `path`, apply dotted `overrides` ({"optim.lr": 1e-4}; None = keep), and validate as `model`."""
    data = read_yaml(path)
    for dotted, value in (overrides or {}).items():
        if value is not None:
            set_dotted(data, dotted, value)
    return validate_config(model, data, source=str(path))


def dump_config(config: BaseModel) -> str:
    """The config as YAML text (what a run folder's config.yaml holds)."""
    return yaml.safe_dump(config.model_dump(mode="json"), sort_keys=False, allow_unicode=True)
