"""The few lines a finished pipeline ends with: what each step made, where the report is, what to try next.

`amauta run` prints its steps as one line each and keeps their own output in `amauta.log`; what a
newcomer needs at the end is here instead, read back from the folders the steps wrote (each one's
`manifest.json` says which stage made it): the training run (model, preset, steps, final loss, minutes),
each benchmark's models with their 95% intervals, the chat demo's speed, the report's path, and three
commands to go on with. At most `MAX_LINES` lines, however many steps there were.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from amauta.evaluate.compare import COLUMNS, _fmt, _fmt_ci
from amauta.report.report import TASK_TITLES

# The exam's headline in one line: multiple-choice accuracy of each row (closed, open and options-only book).
EXAM_COLUMNS = [("acc", "Accuracy", True)]
MAX_LINES = 14  # with the pipeline's "finished" rule above them, 15
NEXT_COMMANDS = 3


def _read(path: Path) -> dict[str, Any]:
    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return value if isinstance(value, dict) else {}


def _data_line(folder: Path, manifest: dict[str, Any]) -> str:
    totals = _read(folder / "stats.json").get("totals") or {}
    if not totals:
        return f"Data: {folder}"
    return (f"Data: {totals.get('train', '?')} training and {totals.get('val', '?')} validation examples "
            f"({totals.get('kept', '?')} of {totals.get('read', '?')} kept) → {folder}")


def _train_line(folder: Path, manifest: dict[str, Any]) -> str:
    config, summary = manifest.get("config") or {}, _read(folder / "summary.json")
    preset = f", preset {config['preset']}" if config.get("preset") else ""
    loss = summary.get("final_loss")
    loss_text = f"{loss:.3f}" if isinstance(loss, (int, float)) else "–"
    minutes = (summary.get("train_seconds") or 0) / 60
    return (f"Trained: {config.get('model', '?')}{preset}, {summary.get('steps', '?')} steps, "
            f"final loss {loss_text}, {minutes:.1f} min → {folder}")


def _eval_line(folder: Path, manifest: dict[str, Any]) -> str:
    summary = _read(folder / "summary.json")
    task = summary.get("task", "")
    columns = COLUMNS.get(task) or (EXAM_COLUMNS if task == "exam" else None)
    if not columns or not summary.get("models"):
        return f"{manifest.get('stage', 'eval')}: {folder}"
    key, title, percent = columns[0]
    unit = " %" if percent else ""
    config = summary.get("task_config") or {}
    detail = str(config.get("formulation") or (f"{(summary.get('exam') or {}).get('split', '?')} split" if task == "exam"
                                                   else title.lower()))
    scores = [f"{m['label']} {_fmt(m['metrics'].get(key), percent)}{unit} "
              f"{_fmt_ci(m['metrics'].get(f'{key}_ci'), percent, m.get('n'))}" for m in summary["models"]]
    deltas = [f"Δ {c['other']} {100 * c['delta']:+.1f} pts {_fmt_ci(c.get('delta_ci'), True)}".removesuffix(" –")
              for c in summary.get("comparisons") or [] if isinstance(c.get("delta"), (int, float))]
    name = TASK_TITLES.get(task, task).split(" ")[0]
    return f"{name} ({detail}, {summary.get('n_items', '?')} items, 95% CI): " + ", ".join(scores) + \
        ("; " + ", ".join(deltas) if deltas else "")


def _chat_line(folder: Path, manifest: dict[str, Any]) -> str:
    per = _read(folder / "summary.json").get("strategies") or {}
    speeds = " · ".join(f"{name} {entry.get('tokens_per_second', 0):.1f}" for name, entry in per.items())
    prompts = len((manifest.get("config") or {}).get("prompts") or [])
    return (f"Chat demo: {prompts} prompt{'s' if prompts != 1 else ''} × {len(per)} strategies, tokens/s {speeds} "
            "(answers in the report)")


def _report_line(folder: Path, manifest: dict[str, Any]) -> str:
    return f"Report: {folder / 'report.html'} (Markdown: {folder / 'report.md'})"


# The manifest's `stage` → its line; a benchmark's stage is `evaluate.<task>`.
_LINES: dict[str, Callable[[Path, dict[str, Any]], str]] = {
    "data.prepare": _data_line, "train": _train_line, "chat.demo": _chat_line, "evaluate.report": _report_line,
}


def _line(folder: Path, manifest: dict[str, Any]) -> str:
    stage = str(manifest.get("stage", ""))
    if stage in _LINES:
        return _LINES[stage](folder, manifest)
    if stage.startswith("evaluate."):
        return _eval_line(folder, manifest)
    return f"{stage or 'step'}: {folder}"


def next_commands(folders: dict[str, list[tuple[Path, dict[str, Any]]]]) -> list[str]:
    """Up to three commands to try with what the pipeline made: chat with the adapter, evaluate it
    another way, serve it (none when it trained nothing)."""
    runs = folders.get("train") or []
    if not runs:
        return []
    run = runs[-1][0]
    commands = [f"amauta chat --adapter {run}"]
    belebele = (folders.get("evaluate.belebele") or [(run, {})])[-1][1].get("config") or {}
    data = belebele.get("data") or "facebook/belebele"
    other = "cloze" if belebele.get("formulation") == "letter" else "letter"  # the same items, asked the other way
    commands.append(f"amauta eval belebele --compare base,{run} --data {data} --formulation {other} "
                    f"--out {run.parent / f'belebele-{other}'}")
    # The index the pipeline built, if any, goes with the served model (answers cite the documents).
    index = (folders.get("rag.index") or [(None, {})])[-1][0]
    rag = f" --rag {index}" if index is not None else ""
    commands.append(f"amauta serve --adapter {run.parent.name or 'adapter'}={run}{rag}")
    return commands[:NEXT_COMMANDS]


def closing_summary(folders: list[Path], *, log: Path | None = None) -> list[str]:
    """At most `MAX_LINES` lines (rich markup) about the folders a pipeline's steps wrote, in order."""
    from rich.markup import escape

    made: dict[str, list[tuple[Path, dict[str, Any]]]] = {}
    lines = []
    for folder in folders:
        manifest = _read(folder / "manifest.json")
        made.setdefault(str(manifest.get("stage", "")), []).append((folder, manifest))
        lines.append(escape(_line(folder, manifest)))
    tail = []
    if log is not None:
        tail.append(f"[dim]Log: {escape(str(log))} (each step's own output and the libraries' warnings; "
                    "--verbose shows them here)[/]")
    commands = next_commands(made)
    if commands:
        tail += ["Next:"] + [f"  [bold]{escape(command)}[/]" for command in commands]
    room = MAX_LINES - len(tail)
    if len(lines) > room:
        lines = lines[: room - 1] + [f"… and {len(lines) - room + 1} more steps (see the report)"]
    return lines + tail
