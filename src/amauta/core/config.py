"""Typed configs read from YAML, with errors a person can act on.

Every stage's config is a pydantic model with `extra="forbid"`: a misspelt key is refused with the
file, the key and the closest valid name, instead of being silently ignored.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ConfigDict, ValidationError

from amauta.core.errors import AmautaError, did_you_mean

C = TypeVar("C", bound=BaseModel)


class StageConfig(BaseModel):
    """Base for stage configs: unknown keys are errors, values are validated on assignment."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True, protected_namespaces=())


def read_yaml(path: str | Path) -> dict[str, Any]:
    """Read a YAML mapping, naming the file and line when it is malformed."""
    path = Path(path)
    if not path.is_file():
        raise AmautaError(f"{path}: config file not found")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8-sig"))
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f":{mark.line + 1}" if mark is not None else ""
        raise AmautaError(f"{path}{where}: invalid YAML ({getattr(exc, 'problem', exc)})") from None
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


def validate_config(model: type[C], data: dict[str, Any], source: str = "config") -> C:
    """Validate `data` as `model`, turning the first pydantic error into one clear line."""
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        err = exc.errors()[0]
        loc = tuple(err.get("loc", ()))
        key = ".".join(str(p) for p in loc) or "(top level)"
        if err.get("type") == "extra_forbidden":
            hint = did_you_mean(str(loc[-1]), _field_names(model, loc))
            raise AmautaError(f"{source}: unknown key '{key}'{hint}") from None
        raise AmautaError(f"{source}: '{key}': {err.get('msg')} (got {err.get('input')!r})") from None


def load_config(model: type[C], path: str | Path, overrides: dict[str, Any] | None = None) -> C:
    """Read YAML at `path`, apply dotted `overrides` ({"optim.lr": 1e-4}), and validate as `model`."""
    data = read_yaml(path)
    for dotted, value in (overrides or {}).items():
        if value is None:
            continue
        target = data
        *parents, last = dotted.split(".")
        for part in parents:
            target = target.setdefault(part, {})
        target[last] = value
    return validate_config(model, data, source=str(path))


def dump_config(config: BaseModel) -> str:
    """The config as YAML text (what a run folder's config.yaml holds)."""
    return yaml.safe_dump(config.model_dump(mode="json"), sort_keys=False, allow_unicode=True)
