"""Preference data for DPO, ORPO and KTO: readers, the preference dataset folder, pairs from a judge run.

Input rows (JSONL, or a JSON array), told apart by their keys:

- pairs: `{"prompt", "chosen", "rejected"}`; `prompt` is text or a message list ending with the user's
  turn, `chosen`/`rejected` are text or a one-message assistant list (TRL's conversational form). Without
  `prompt`, `chosen` and `rejected` are whole conversations sharing every turn but the last reply.
- scored lists (UltraFeedback): `{"prompt" | "instruction", "completions": [{"response" | "text", "score" |
  "overall_score" | "rating"}, ...]}`: the best against the worst, when their scores differ by `min_gap`.
- unpaired (KTO): `{"prompt", "completion", "label": true | false}`.

Each becomes a `Preference` (pair) or an `Unpaired` example with the prompt as messages. A missing side,
empty text, or a pair whose chosen and rejected answers are the same is refused in one line naming
file:line, before anything is written.

A preference dataset folder (`amauta data preferences ... --out FOLDER`) holds train.jsonl, val.jsonl
and manifest.json (stage `data.preferences`); `amauta train --method dpo|orpo|kto` reads it.
"""

from __future__ import annotations

import hashlib
import json
from collections import defaultdict
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from pydantic import Field

from amauta.core.config import StageConfig
from amauta.core.errors import AmautaError
from amauta.core.files import read_jsonl

STAGE = "data.preferences"
FILES = ("train.jsonl", "val.jsonl", "manifest.json")
_TEXT_KEYS = ("response", "text", "completion", "answer", "content")
_SCORE_KEYS = ("score", "overall_score", "overall", "rating")


@dataclass
class Preference:
    """A prompt (messages, ending with the user's turn) with a preferred and a dispreferred reply."""

    id: str
    prompt: list[dict[str, str]]
    chosen: str
    rejected: str
    source: str = ""


@dataclass
class Unpaired:
    """KTO's example: a prompt with one reply labelled desirable (True) or not (False)."""

    id: str
    prompt: list[dict[str, str]]
    completion: str
    label: bool
    source: str = ""


def _example_id(source: str, *parts: Any) -> str:
    digest = hashlib.sha256(json.dumps([source, *parts], ensure_ascii=False, sort_keys=True).encode()).hexdigest()
    return f"{source}-{digest[:12]}"


def _reply(value: Any, key: str, where: str) -> str:
    """A reply given as text or as a one-message assistant list (TRL's conversational form)."""
    if isinstance(value, list) and len(value) == 1 and isinstance(value[0], dict):
        value = value[0].get("content")
    if value is None:
        raise AmautaError(f"{where}: missing '{key}'; every preference row needs prompt, chosen and rejected")
    if not isinstance(value, str):
        raise AmautaError(f"{where}: '{key}' must be text or [{{\"role\": \"assistant\", \"content\": ...}}]")
    if not value.strip():
        raise AmautaError(f"{where}: '{key}' is empty; remove the row or write the reply")
    return value.strip()


def _prompt(value: Any, where: str) -> list[dict[str, str]]:
    """A prompt as messages: text becomes one user turn; a list must end with the user's turn."""
    if isinstance(value, str):
        if not value.strip():
            raise AmautaError(f"{where}: 'prompt' is empty; remove the row or write the prompt")
        return [{"role": "user", "content": value.strip()}]
    if not isinstance(value, list) or not value:
        raise AmautaError(f"{where}: missing 'prompt' (text or a message list ending with the user's turn)")
    messages = []
    for message in value:
        if not isinstance(message, dict) or message.get("role") not in ("system", "user", "assistant"):
            raise AmautaError(f"{where}: 'prompt' messages need a role (system, user, assistant) and content")
        content = message.get("content")
        if not isinstance(content, str) or not content.strip():
            raise AmautaError(f"{where}: a '{message.get('role')}' message of 'prompt' is empty")
        messages.append({"role": message["role"], "content": content.strip()})
    if messages[-1]["role"] != "user":
        raise AmautaError(f"{where}: 'prompt' must end with the user's turn, not '{messages[-1]['role']}'")
    return messages


def _split_conversations(obj: dict, where: str) -> tuple[list[dict[str, str]], Any, Any]:
    """Implicit prompt: `chosen` and `rejected` are whole conversations differing only in the last reply."""
    chosen, rejected = obj.get("chosen"), obj.get("rejected")
    if not (isinstance(chosen, list) and isinstance(rejected, list) and len(chosen) > 1 and len(rejected) > 1):
        raise AmautaError(f"{where}: missing 'prompt' (text or messages); or give 'chosen' and 'rejected' as "
                          "whole conversations that share all but the last reply")
    if chosen[:-1] != rejected[:-1]:
        raise AmautaError(f"{where}: 'chosen' and 'rejected' conversations differ before the last reply; "
                          "give a 'prompt' key instead")
    return _prompt(chosen[:-1], where), [chosen[-1]], [rejected[-1]]


def pair_from_json(obj: dict, where: str, source: str) -> Preference:
    """`{prompt, chosen, rejected}` (text or messages) → a `Preference`."""
    if "prompt" in obj:
        prompt, chosen, rejected = _prompt(obj["prompt"], where), obj.get("chosen"), obj.get("rejected")
    else:
        prompt, chosen, rejected = _split_conversations(obj, where)
    good, bad = _reply(chosen, "chosen", where), _reply(rejected, "rejected", where)
    if good == bad:
        raise AmautaError(f"{where}: 'chosen' and 'rejected' are the same text, so there is no preference; "
                          "remove the row or write a worse 'rejected'")
    return Preference(id=str(obj.get("id") or _example_id(source, prompt, good, bad)), prompt=prompt,
                      chosen=good, rejected=bad, source=source)


def _scored(completion: Any, where: str, index: int) -> tuple[str, float]:
    here = f"{where} (completion {index + 1})"
    if not isinstance(completion, dict):
        raise AmautaError(f"{here}: expected {{\"response\": ..., \"score\": ...}}")
    text = next((completion[k] for k in _TEXT_KEYS if k in completion), None)
    score = next((completion[k] for k in _SCORE_KEYS if k in completion), None)
    if not isinstance(score, (int, float)) or isinstance(score, bool):
        raise AmautaError(f"{here}: no numeric score (one of {', '.join(_SCORE_KEYS)})")
    return _reply(text, "response", here), float(score)


def pair_from_scored(obj: dict, where: str, source: str, min_gap: float) -> Preference | None:
    """UltraFeedback-style row → best against worst, or None when the scores differ by less than `min_gap`."""
    prompt = _prompt(obj.get("prompt", obj.get("instruction")), where)
    completions = obj["completions"]
    if not isinstance(completions, list) or len(completions) < 2:
        raise AmautaError(f"{where}: 'completions' needs at least two scored answers")
    scored = [_scored(c, where, i) for i, c in enumerate(completions)]
    best = max(scored, key=lambda item: item[1])  # the first of equals: the order the file gives
    worst = min(scored, key=lambda item: item[1])
    if best[1] - worst[1] < min_gap or best[0] == worst[0]:
        return None
    return Preference(id=str(obj.get("id") or _example_id(source, prompt, best[0], worst[0])), prompt=prompt,
                      chosen=best[0], rejected=worst[0], source=source)


def unpaired_from_json(obj: dict, where: str, source: str) -> Unpaired:
    """`{prompt, completion, label}` → an `Unpaired` example."""
    label = obj.get("label")
    if not isinstance(label, bool):
        raise AmautaError(f"{where}: 'label' must be true (a desirable completion) or false")
    prompt, completion = _prompt(obj.get("prompt"), where), _reply(obj.get("completion"), "completion", where)
    return Unpaired(id=str(obj.get("id") or _example_id(source, prompt, completion, label)), prompt=prompt,
                    completion=completion, label=label, source=source)


def _rows(path: Path) -> list[tuple[str, Any]]:
    """(file:line, object) of a JSONL file or a JSON array, malformed JSON refused with its place."""
    if not path.is_file():
        raise AmautaError(f"{path}: file not found")
    text = path.read_text(encoding="utf-8")
    if text.lstrip().startswith("["):
        try:
            items = json.loads(text)
        except json.JSONDecodeError as exc:
            raise AmautaError(f"{path}:{exc.lineno}: invalid JSON ({exc.msg})") from None
        return [(f"{path}:item {i}", obj) for i, obj in enumerate(items, start=1)]
    rows = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            rows.append((f"{path}:{number}", json.loads(line)))
        except json.JSONDecodeError as exc:
            raise AmautaError(f"{path}:{number}: invalid JSON ({exc.msg} at column {exc.colno})") from None
    return rows


def read_preference_file(path: str | Path, *, min_gap: float = 1.0) -> tuple[list[Preference | Unpaired], int]:
    """Read one preference file; returns its examples and how many scored rows had too small a gap."""
    path = Path(path)
    out: list[Preference | Unpaired] = []
    no_gap = 0
    for where, obj in _rows(path):
        if not isinstance(obj, dict):
            raise AmautaError(f"{where}: expected a JSON object with prompt, chosen and rejected")
        if "completions" in obj:
            pair = pair_from_scored(obj, where, path.stem, min_gap)
            no_gap += pair is None
            if pair is not None:
                out.append(pair)
        elif "label" in obj or "completion" in obj:
            out.append(unpaired_from_json(obj, where, path.stem))
        else:
            out.append(pair_from_json(obj, where, path.stem))
    if not out:
        raise AmautaError(f"{path}: no preference examples" + (f" ({no_gap} scored rows had scores closer than "
                                                               f"--min-gap {min_gap:g})" if no_gap else ""))
    return out, no_gap


def example_from_json(obj: dict, where: str) -> Preference | Unpaired:
    """A row of a preference dataset folder back into its example."""
    if not isinstance(obj, dict):
        raise AmautaError(f"{where}: expected a JSON object")
    if "label" in obj:
        return unpaired_from_json(obj, where, obj.get("source", ""))
    return pair_from_json(obj, where, obj.get("source", ""))


# ---------------------------------------------------------------------- from a judge run
def pairs_from_judge(folder: str | Path, *, min_gap: float = 1.0) -> tuple[list[Preference], dict[str, int]]:
    """Best against worst answer per prompt of a judge run folder (`amauta eval judge --out FOLDER`).

    Reads the folder's items.jsonl (every answer with the judge's `overall` score); answers of all candidates
    and attempts to the same prompt item compete. Only first turns are used: a later turn's conversation
    differs between attempts. Returns the pairs and counts of what was left out.
    """
    folder = Path(folder)
    items = folder / "items.jsonl"
    if not items.is_file():
        raise AmautaError(f"{folder}: no items.jsonl; pass a folder written by `amauta eval judge --out` "
                          "(run `amauta eval judge` to the end, or `amauta report` on it, to write it)")
    groups: dict[str, list[dict]] = defaultdict(list)
    skipped = {"unscored": 0, "later_turns": 0, "gap_too_small": 0, "single_answer": 0}
    for number, row in enumerate(read_jsonl(items), start=1):
        if not isinstance(row, dict) or "item" not in row or "answer" not in row:
            raise AmautaError(f"{items}:{number}: not a judge item row (needs item, prompt, answer, overall)")
        if row.get("turn", 0):
            skipped["later_turns"] += 1
        elif not isinstance(row.get("overall"), (int, float)) or not str(row.get("answer") or "").strip():
            skipped["unscored"] += 1
        else:
            groups[str(row["item"])].append(row)
    pairs = []
    for item, rows in groups.items():
        if len(rows) < 2:
            skipped["single_answer"] += 1
            continue
        ranked = sorted(rows, key=lambda r: (-r["overall"], r.get("candidate", ""), r.get("attempt", 0)))
        best, worst = ranked[0], ranked[-1]
        if best["overall"] - worst["overall"] < min_gap or best["answer"].strip() == worst["answer"].strip():
            skipped["gap_too_small"] += 1
            continue
        pairs.append(Preference(id=f"judge-{item}", prompt=[{"role": "user", "content": best["prompt"]}],
                                chosen=best["answer"].strip(), rejected=worst["answer"].strip(),
                                source=f"judge:{folder.name}"))
    if not pairs:
        raise AmautaError(f"{folder}: no prompt has two judged answers {min_gap:g} or more points apart "
                          f"({', '.join(f'{k} {v}' for k, v in skipped.items() if v) or 'no scored answers'}); "
                          "lower --min-gap or judge more answers per prompt (attempts)")
    return pairs, skipped


# ---------------------------------------------------------------------- the dataset folder
def split_val(examples: list, val_fraction: float) -> tuple[list, list]:
    """A deterministic split by hashed id (the same example lands in the same split every time)."""
    if val_fraction <= 0 or len(examples) < 2:
        return examples, []
    def bucket(ex) -> float:
        return int(hashlib.sha256(ex.id.encode()).hexdigest()[:8], 16) / 0xFFFFFFFF
    val = [ex for ex in examples if bucket(ex) < val_fraction]
    train = [ex for ex in examples if bucket(ex) >= val_fraction]
    return (train, val) if train else (examples, [])


def write_preference_dir(out: str | Path, examples: list[Preference | Unpaired], *, config: dict[str, Any],
                         inputs: list[Path], val_fraction: float, overwrite: bool = False,
                         extra: dict[str, Any] | None = None) -> Path:
    """Write train.jsonl, val.jsonl and manifest.json into `out` (claimed like every Amauta output folder)."""
    from amauta.core.files import atomic_write_jsonl
    from amauta.core.manifest import write_manifest
    from amauta.core.outdir import claim

    ids: dict[str, int] = {}
    for ex in examples:
        ids[ex.id] = ids.get(ex.id, 0) + 1
    dup = next((i for i, n in ids.items() if n > 1), None)
    if dup:
        raise AmautaError(f"duplicate preference id {dup!r}; give every row its own 'id' (or none)")
    train, val = split_val(examples, val_fraction)
    counts = {"train": len(train), "val": len(val),
              "pairs": sum(isinstance(e, Preference) for e in examples),
              "unpaired": sum(isinstance(e, Unpaired) for e in examples)}
    with claim(out, STAGE, overwrite=overwrite) as folder:
        if folder.up_to_date(config, inputs):
            return Path(out)  # the same config and inputs: nothing to do
        folder.check_replace(config, inputs)
        with folder.replace() as tmp:
            atomic_write_jsonl(tmp / "train.jsonl", (asdict(e) for e in train))
            atomic_write_jsonl(tmp / "val.jsonl", (asdict(e) for e in val))
            write_manifest(tmp, STAGE, config, inputs=inputs, counts=counts, **(extra or {}))
    return Path(out)


@dataclass
class PreferenceDir:
    """A preference dataset folder read back (what `amauta train --method dpo|orpo|kto` reads)."""

    train: list[Preference | Unpaired]
    val: list[Preference | Unpaired]
    manifest: dict[str, Any]
    path: Path


def read_preference_dir(path: str | Path) -> PreferenceDir:
    """Read and check a folder written by `amauta data preferences`."""
    path = Path(path)
    if not path.is_dir() or not all((path / name).is_file() for name in FILES):
        raise AmautaError(f"{path}: not a preference dataset folder (train.jsonl, val.jsonl, manifest.json); "
                          "make one with `amauta data preferences FILE.jsonl --out FOLDER`")
    manifest = json.loads((path / "manifest.json").read_text(encoding="utf-8"))
    if manifest.get("stage") != STAGE:
        raise AmautaError(f"{path}: manifest says stage {manifest.get('stage')!r}, not '{STAGE}'; preference "
                          "training reads folders written by `amauta data preferences`")
    splits = {}
    for name in ("train", "val"):
        file = path / f"{name}.jsonl"
        splits[name] = [example_from_json(obj, f"{file}:{n}") for n, obj in enumerate(read_jsonl(file), start=1)]
    if not splits["train"]:
        raise AmautaError(f"{path / 'train.jsonl'}: no training examples")
    return PreferenceDir(train=splits["train"], val=splits["val"], manifest=manifest, path=path)


# ---------------------------------------------------------------------- the stage
class PreferencesConfig(StageConfig):
    """`amauta data preferences` (pipeline step `data.preferences`): preference files and/or a judge run → a folder."""

    files: list[str] = Field(
        default_factory=list, description="Preference files: pairs, scored lists (UltraFeedback) or KTO rows; "
                                          "JSONL or a JSON array.")
    from_judge: str | None = Field(
        None, description="A judge run folder (`amauta eval judge --out`): best against worst answer per prompt.")
    out: str = Field(description="The preference folder to write.")
    min_gap: float = Field(
        1.0, ge=0, description="Least score difference between the best and the worst answer for a pair.")
    val_fraction: float = Field(
        0.1, ge=0, lt=1, description="Share of examples held out for validation (by hashed id).")


def run(config: PreferencesConfig, *, overwrite: bool = False, notes: list[str] | None = None) -> Path:
    """Read every input (a bad row stops here, before anything is written), then write the folder.

    notes: a list to which what was left out (close scores, unscored answers) is appended.
    """
    if not config.files and config.from_judge is None:
        raise AmautaError("amauta data preferences: give preference files or --from-judge JUDGE_FOLDER")
    notes = notes if notes is not None else []
    examples: list[Preference | Unpaired] = []
    inputs: list[Path] = []
    for path in config.files:
        found, no_gap = read_preference_file(path, min_gap=config.min_gap)
        examples += found
        inputs.append(Path(path))
        if no_gap:
            notes.append(f"{path}: {no_gap} scored rows closer than --min-gap {config.min_gap:g} left out")
    if config.from_judge is not None:
        pairs, skipped = pairs_from_judge(config.from_judge, min_gap=config.min_gap)
        examples += pairs
        inputs.append(Path(config.from_judge) / "items.jsonl")
        if any(skipped.values()):
            notes.append(f"{config.from_judge}: left out " + ", ".join(f"{k.replace('_', ' ')} {v}"
                                                                       for k, v in skipped.items() if v))
    return write_preference_dir(config.out, examples, config=config.model_dump(mode="json"), inputs=inputs,
                                val_fraction=config.val_fraction, overwrite=overwrite,
                                extra={"count": len(examples)})
