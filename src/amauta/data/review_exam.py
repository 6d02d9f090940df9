"""Exam items in `amauta data review`: how one is read, shown beside its source, fixed, and written when accepted.

`amauta data review exam.jsonl` takes an exam (the output of `amauta data build-exam`, or any exam file)
with the same keys, log and guarantees as a Q&A file (`review.py`): accept, fix (edit), reject, skip,
undo, quit; every decision saved at once; hand-edited lines of the accepted file kept. An exam file is
recognised by its first line (an object with `fact_id` and `options`); every line is then checked with the
exam's validator (`exam_items.read_exam`), and so is every fix before it is saved: a fix that would make
a bad item is refused on screen and the item stays pending. Accepted items are written as exam lines
(`chunk_text` left out), fixed ones with `"edited": true`, ready for `amauta eval exam`.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from amauta.core.errors import AmautaError
from amauta.data.exam_items import ABSTAIN_OPTION, parse_item, read_exam

# The fields a fix may change; the rest (fact, split, source, answerable) make the exam's design.
EDITABLE = ("question", "options", "gold", "reference", "key_facts", "distractor_facts")
LIST_SEPARATOR = ";"  # "|" already separates the alternatives of one key fact


def is_exam_file(path: Path) -> bool:
    """Whether `path`'s first non-empty line is an exam item (has `fact_id` and `options`)."""
    try:
        with open(path, encoding="utf-8-sig") as handle:
            first = next((line for line in handle if line.strip()), "")
        row = json.loads(first) if first else None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return False  # the Q&A reader names the problem
    return isinstance(row, dict) and "fact_id" in row and "options" in row


def load_items(path: Path) -> list[dict[str, Any]]:
    """The items of an exam file as dicts (extra keys kept); any bad line is one error naming file:line."""
    return [item.to_json() for item in read_exam(path)]


def render_item(console: Any, item: dict[str, Any], position: int, total: int, counts: dict[str, int]) -> None:
    """The item beside the chunk it came from, options numbered from 1 with the right one marked."""
    from rich.panel import Panel
    from rich.table import Table
    from rich.text import Text

    source = item.get("source") or {}
    where = ", ".join(str(x) for x in (source.get("file"), source.get("article")) if x)
    chunk = Text(item.get("chunk_text") or "(sin fragmento de origen)")
    body = Text()
    body.append(f"{'Con respuesta' if item['answerable'] else 'Sin respuesta en los documentos'} · "
                f"hecho {item['fact_id']} · parte {item['split']}\n\n", style="dim")
    body.append("Pregunta\n", style="bold cyan")
    body.append(item["question"] + "\n\nOpciones\n")
    for k, option in enumerate(item["options"]):
        right = k == item["gold"]
        body.append(f"{'✓' if right else ' '} {k + 1}. {option}\n", style="bold green" if right else "")
    body.append("\nReferencia\n", style="bold cyan")
    body.append(item["reference"] + "\n")
    body.append(f"\nDatos clave: {'; '.join(item['key_facts']) or '(ninguno)'}\n")
    body.append(f"Distractores: {'; '.join(item['distractor_facts']) or '(ninguno)'}")
    console.rule(f"Ítem {position}/{total} · {counts['accept'] + counts['edit']} aceptados, "
                 f"{counts['reject']} rechazados")
    grid = Table.grid(expand=True, padding=(0, 1))
    grid.add_column(ratio=1)
    grid.add_column(ratio=1)
    grid.add_row(Panel(chunk, title=f"Fuente: {where or '?'}"), Panel(body, title=f"Ítem {item['id']}"))
    console.print(grid)


def _shown(field: str, item: dict[str, Any]) -> str:
    value = item[field]
    if field == "gold":
        return f"{value + 1} ({item['options'][value]})"
    return f" {LIST_SEPARATOR} ".join(value) if isinstance(value, list) else str(value)


_PROMPTS = {
    "question": "Nueva pregunta",
    "options": f"Nuevas opciones separadas por '{LIST_SEPARATOR}' (incluye «{ABSTAIN_OPTION}»)",
    "gold": "Número de la opción correcta",
    "reference": "Nueva referencia",
    "key_facts": f"Nuevos datos clave separados por '{LIST_SEPARATOR}'",
    "distractor_facts": f"Nuevos distractores separados por '{LIST_SEPARATOR}'",
}


def _parsed(field: str, answer: str) -> Any:
    """The typed value of what the person typed for `field`; ValueError with a Spanish reason."""
    if field in ("options", "key_facts", "distractor_facts"):
        return [part.strip() for part in answer.split(LIST_SEPARATOR) if part.strip()]
    if field == "gold":
        if not answer.strip().isdigit():
            raise ValueError(f"la opción correcta es un número, no {answer.strip()!r}")
        return int(answer) - 1
    return answer.strip().replace("\\n", "\n")


def edit_item(item: dict[str, Any], ask: Callable[[str], str], console: Any) -> dict[str, Any] | None:
    """Ask for each editable field anew (Enter keeps it); the fixed fields, or None when nothing changed or
    the fix would make a bad exam item (the reason is shown, the item stays pending)."""
    from rich.markup import escape

    edited: dict[str, Any] = {}
    for field in EDITABLE:
        current = {**item, **edited}
        console.print(f"[bold]{field}[/] actual: {escape(_shown(field, current))}", highlight=False)
        answer = ask(f"{_PROMPTS[field]} (Enter = mantener): ")
        if not answer.strip():
            edited[field] = item[field]
            continue
        try:
            edited[field] = _parsed(field, answer)
        except ValueError as exc:
            console.print(f"[red]{escape(str(exc))}; el ítem sigue pendiente[/]", highlight=False)
            return None
    if all(edited[f] == item[f] for f in EDITABLE):
        return None
    try:
        parse_item({**item, **edited}, "la corrección")
    except AmautaError as exc:
        console.print(f"[red]{escape(str(exc))}; el ítem sigue pendiente[/]", highlight=False)
        return None
    return edited


def accepted_row(item: dict[str, Any], entry: dict[str, Any]) -> dict[str, Any]:
    """The accepted file's line for an item: the exam line without its source text, a fix applied."""
    row = {k: v for k, v in item.items() if k != "chunk_text"}
    if entry["decision"] == "edit":
        row.update({k: entry["pair"][k] for k in EDITABLE})
        row["edited"] = True
    return row
