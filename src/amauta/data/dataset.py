"""Reading a prepared dataset folder back (what training and evaluation read)."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from amauta.core.errors import AmautaError
from amauta.core.files import read_jsonl
from amauta.data.records import Record, record_from_json

FILES = ("train.jsonl", "val.jsonl", "manifest.json")


@dataclass
class DatasetDir:
    """A dataset folder written by `amauta data prepare`.

    train, val: the records.
    manifest: the folder's manifest.json (its `template` and `model` say what lengths were measured with).
    stats: stats.json, or {} when absent.
    path: the folder.
    """

    train: list[Record]
    val: list[Record]
    manifest: dict[str, Any]
    stats: dict[str, Any] = field(default_factory=dict)
    path: Path | None = None

    @property
    def template(self) -> str | None:
        return self.manifest.get("template")


def check_system_prompt(manifest: dict[str, Any], system_prompt: str, path: str | Path) -> None:
    """Refuse, in one line, a dataset prepared with another system prompt than this run's.

    Token lengths and the length filter were measured with the prompt rendered in; a folder prepared
    before manifests recorded it had the tokenizer template's own default (SmolLM2's English "You are a
    helpful AI assistant named SmolLM...") in them, so it only passes for a run without a system prompt.
    """
    if "system_prompt" not in manifest:
        if system_prompt:
            raise AmautaError(f"{path}/manifest.json: prepared before Amauta recorded the system prompt (its lengths "
                              f"may include the tokenizer's own English default), but this run uses "
                              f"{_quote(system_prompt)}; prepare the dataset again (`amauta data prepare`)")
        return
    if (manifest["system_prompt"] or "") != system_prompt:
        raise AmautaError(f"{path}/manifest.json: prepared with the system prompt {_quote(manifest['system_prompt'])}, "
                          f"but this run uses {_quote(system_prompt)}; prepare it again with the same `system_prompt:` "
                          "(or set the run's system_prompt to the dataset's)")


def _quote(prompt: str | None) -> str:
    if not prompt:
        return "none"
    return repr(prompt if len(prompt) <= 60 else prompt[:57] + "...")


def read_dataset_dir(path: str | Path, *, template: str | None = None, model: str | None = None,
                     system_prompt: str | None = None) -> DatasetDir:
    """Read and validate a dataset folder.

    path: the folder (holding train.jsonl, val.jsonl, manifest.json).
    template: when given, refuse a folder prepared for another template (token lengths and the length
        filter were measured with it); training passes its model's template.
    model: used only in the error message, to say which model asked.
    system_prompt: when given, refuse a folder prepared with another system prompt ("" = none).
    """
    path = Path(path)
    if not path.is_dir():
        raise AmautaError(f"{path}: dataset folder not found; create it with `amauta data prepare CONFIG.yaml`")
    missing = [name for name in FILES if not (path / name).is_file()]
    if missing:
        raise AmautaError(f"{path}: not a prepared dataset folder (missing {', '.join(missing)}); "
                          "create it with `amauta data prepare CONFIG.yaml`")
    try:
        manifest = json.loads((path / "manifest.json").read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise AmautaError(f"{path / 'manifest.json'}: unreadable manifest ({exc}); prepare the dataset again") from None
    if manifest.get("stage") != "data.prepare":
        raise AmautaError(f"{path}: manifest says stage {manifest.get('stage')!r}, not 'data.prepare'; "
                          "point to a folder written by `amauta data prepare`")
    if template is not None and manifest.get("template") not in (None, template):
        who = f"model '{model}' uses" if model else "the model uses"
        raise AmautaError(f"{path}: dataset prepared for template '{manifest['template']}' "
                          f"(model '{manifest.get('model')}'), but {who} '{template}'; prepare it again with "
                          f"`model:` set to this model in the prepare config")
    if system_prompt is not None and manifest.get("template") in (None, template):
        check_system_prompt(manifest, system_prompt, path)
    splits = {}
    ids: dict[str, str] = {}
    for name in ("train", "val"):
        file = path / f"{name}.jsonl"
        records = []
        for number, obj in enumerate(read_jsonl(file), start=1):
            record = record_from_json(obj, f"{file}:{number}")
            if record.id in ids:
                raise AmautaError(f"{file}:{number}: duplicate id {record.id!r} (also in {ids[record.id]}); "
                                  "prepare the dataset again")
            ids[record.id] = f"{file.name}:{number}"
            records.append(record)
        splits[name] = records
    if not splits["train"]:
        raise AmautaError(f"{path / 'train.jsonl'}: no training records; check the prepare config's sources and stats.json")
    stats_file = path / "stats.json"
    stats = json.loads(stats_file.read_text(encoding="utf-8")) if stats_file.is_file() else {}
    return DatasetDir(train=splits["train"], val=splits["val"], manifest=manifest, stats=stats, path=path)
