"""Review generated question–answer pairs in the terminal: the thesis's "human double checking".

`amauta data review qa.jsonl` shows each pair beside the document chunk it came from and asks for a
decision: accept, edit, reject or skip (later), plus undo and quit. Every decision is appended at once to
`qa.decisions.jsonl` beside the input, so closing the terminal loses nothing and the next run resumes
with the first undecided pair. The accepted pairs (edited ones in their edited form) are written in
Alpaca form (`instruction`, `input`, `output`, plus `category` and provenance) to `qa.accepted.jsonl`,
ready for `amauta data prepare`. The input file is never modified.

The accepted file is rebuilt from the decisions at the end of every session, yet people also edit it by
hand between sessions. So `qa.review.jsonl` (beside the log) records a digest of every row a session
wrote; a line of the accepted file that review did not write is the user's (added or edited by hand) and
is kept as it is. Only a decision taken later on that same pair replaces it, and the replaced line is
copied into `qa.review.jsonl` (`replaced_hand_row`) and named in the closing message: nothing is lost.

An exam file (the output of `amauta data build-exam`) is reviewed the same way, item by item, with the
same log, resume, undo and hand-edit guarantees; what differs (reading, showing, fixing, the accepted
line) is in `review_exam.py`.
"""

from __future__ import annotations

import hashlib
import json
import re
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from amauta.core.errors import AmautaError
from amauta.core.files import append_jsonl, atomic_write_jsonl, read_jsonl
from amauta.data.asking import seal_jsonl
from amauta.data.review_exam import accepted_row, edit_item, is_exam_file, load_items, render_item

FIELDS = ("instruction", "input", "output")
ALPACA_KEYS = ("id", "instruction", "input", "output", "category", "source", "page", "article", "chunk_id", "model")
FINAL = ("accept", "edit", "reject")
KEYS = {"a": "accept", "e": "edit", "r": "reject", "s": "skip", "u": "undo", "q": "quit"}
MENU = r"\[a] aceptar  \[e] editar  \[r] rechazar  \[s] saltar  \[u] deshacer  \[q] salir"  # rich markup escaped


@dataclass
class ReviewSummary:
    """Counts after a review session; `out` is the accepted-pairs file."""

    total: int
    accepted: int
    edited: int
    rejected: int
    pending: int
    out: Path
    decisions: Path
    hand_kept: int = 0  # lines of the accepted file added or edited by hand, kept as they are
    hand_replaced: int = 0  # hand-edited lines replaced by a decision of this session (copied to the log)


def decisions_path(qa_path: Path) -> Path:
    return qa_path.with_name(f"{qa_path.stem}.decisions.jsonl")


def bookkeeping_path(qa_path: Path) -> Path:
    """Where review records the rows it wrote and the hand-edited lines it replaced (not decisions)."""
    return qa_path.with_name(f"{qa_path.stem}.review.jsonl")


def load_pairs(path: Path) -> list[dict]:
    """The pairs of a build-qa file (or any Alpaca JSONL), each with an id; errors name file and line."""
    pairs, ids = [], set()
    for number, row in enumerate(read_jsonl(path), start=1):
        for key in ("instruction", "output"):
            if not isinstance(row.get(key), str) or not row[key].strip():
                raise AmautaError(f"{path}: record {number}: '{key}' must be a non-empty string; fix or remove the record")
        row.setdefault("input", "")
        if not row.get("id"):
            # A hand-made Alpaca file has no ids: the content is the id, stable across runs.
            row["id"] = hashlib.sha256("\x00".join(row[k] or "" for k in FIELDS).encode()).hexdigest()[:16]
        if row["id"] in ids:
            raise AmautaError(f"{path}: record {number}: duplicate id '{row['id']}'; ids must be unique")
        ids.add(row["id"])
        pairs.append(row)
    if not pairs:
        raise AmautaError(f"{path}: no pairs to review (the file is empty)")
    return pairs


def load_decisions(path: Path) -> dict[str, dict]:
    """The latest standing decision per pair id (an "undone" entry withdraws the one before it)."""
    standing: dict[str, list[dict]] = {}
    if path.is_file():
        # A line torn by a killed session is a decision that was never saved: skip it.
        for entry in read_jsonl(path, skip_invalid=True):
            history = standing.setdefault(str(entry.get("pair_id")), [])
            if entry.get("decision") == "undone":
                if history:
                    history.pop()
            elif entry.get("decision") in FINAL:
                history.append(entry)
    return {pid: history[-1] for pid, history in standing.items() if history}


def _decision_order(log: Path, by_id: dict) -> list[str]:
    """Ids of the standing decisions in the order they were made (replaying the log, undos included)."""
    order: list[str] = []
    if log.is_file():
        for entry in read_jsonl(log, skip_invalid=True):
            pid = str(entry.get("pair_id"))
            if entry.get("decision") == "undone":
                if pid in order:
                    order.reverse()
                    order.remove(pid)  # the latest occurrence
                    order.reverse()
            elif entry.get("decision") in FINAL:
                order.append(pid)
    return [pid for pid in order if pid in by_id]


def _row_digest(row: dict) -> str:
    """A digest of one accepted row's content (key order and JSON spacing do not matter)."""
    return hashlib.sha256(json.dumps(row, ensure_ascii=False, sort_keys=True).encode()).hexdigest()[:16]


def _written_digests(book: Path) -> set[str]:
    """Digests of every row that review sessions wrote to an accepted file (the "written" lines of `book`)."""
    digests: set[str] = set()
    if book.is_file():
        for entry in read_jsonl(book, skip_invalid=True):
            if isinstance(entry.get("written"), str) and isinstance(entry.get("rows"), list):
                digests.update(str(d) for d in entry["rows"])
    return digests


def _accepted_rows(pairs: list[dict], decided: dict[str, dict], exam: bool = False) -> dict[str, dict]:
    """Pair id → its row for the accepted file (Alpaca keys and provenance, edits applied), in input order.

    exam: the pairs are exam items (their accepted line is an exam line: `review_exam.accepted_row`).
    """
    rows = {}
    for pair in pairs:
        entry = decided.get(pair["id"])
        if entry and entry["decision"] in ("accept", "edit") and exam:
            rows[pair["id"]] = accepted_row(pair, entry)
        elif entry and entry["decision"] in ("accept", "edit"):
            row = {k: pair.get(k) for k in ALPACA_KEYS if k in pair}
            if entry["decision"] == "edit":
                row.update({k: entry["pair"][k] for k in FIELDS})
                row["edited"] = True
            rows[pair["id"]] = row
    return rows


@dataclass
class HandRow:
    """A line of the accepted file that no review session wrote: the user added or edited it."""

    line: int
    row: dict

    @property
    def pair_id(self) -> str | None:
        return str(self.row["id"]) if self.row.get("id") is not None else None


def _hand_rows(out: Path, review_made: set[str]) -> list[HandRow]:
    """The lines of `out` whose content review did not write (digest not in `review_made`), in file order.

    A line that is not a JSON object is refused in one line before anything is written, so a half-typed
    edit is never dropped.
    """
    if not out.is_file():
        return []
    try:
        lines = out.read_text(encoding="utf-8-sig").splitlines()
    except UnicodeDecodeError:
        raise AmautaError(f"{out}: not UTF-8 text; save it as UTF-8 (or pass another --out), then rerun review "
                          "(nothing was changed)") from None
    hand = []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            # json's "Unterminated string starting at" already ends in "at": say it once.
            raise AmautaError(f"{out}:{number}: invalid JSON ({exc.msg.removesuffix(' at')} at column {exc.colno}); "
                              "this line was edited by hand: fix it, then rerun review (nothing was changed)") from None
        if not isinstance(row, dict):
            raise AmautaError(f"{out}:{number}: expected a JSON object, found {type(row).__name__}; fix the line, "
                              "then rerun review (nothing was changed)")
        if _row_digest(row) not in review_made:
            hand.append(HandRow(number, row))
    return hand


def _render(console, pair: dict, position: int, total: int, counts: dict) -> None:
    from rich.panel import Panel
    from rich.table import Table
    from rich.text import Text

    where = ", ".join(str(x) for x in (Path(str(pair.get("source", ""))).name or None,
                                       f"p. {pair['page']}" if pair.get("page") and str(pair.get("source", "")).lower().endswith(".pdf") else None,
                                       pair.get("article")) if x)
    # Source lines are hard-wrapped (PDF, Markdown); rejoin them so the panel wraps the text itself.
    source_text = re.sub(r"(?<=\S)\n(?![-*|>\d\n])", " ", pair.get("chunk_text") or "(sin fragmento de origen)")
    chunk = Text(source_text)
    qa = Text()
    qa.append("Pregunta\n", style="bold cyan")
    qa.append(pair["instruction"] + "\n")
    if pair.get("input"):
        qa.append("\nContexto\n", style="bold cyan")
        qa.append(pair["input"] + "\n")
    qa.append("\nRespuesta\n", style="bold green")
    qa.append(pair["output"])
    console.rule(f"Par {position}/{total} · {counts['accept'] + counts['edit']} aceptados, {counts['reject']} rechazados")
    # A two-column grid keeps the source and the pair side by side at any terminal width.
    grid = Table.grid(expand=True, padding=(0, 1))
    grid.add_column(ratio=1)
    grid.add_column(ratio=1)
    grid.add_row(Panel(chunk, title=f"Fuente: {where or '?'}"), Panel(qa, title=f"Par {pair['id']}"))
    console.print(grid)


def _edit(pair: dict, ask: Callable[[str], str], console) -> dict | None:
    """Ask for each field anew; Enter keeps it, "\\n" in the text is a line break. None when nothing changed."""
    from rich.markup import escape

    edited = {}
    for field in FIELDS:
        console.print(f"[bold]{field}[/] actual: {escape(pair.get(field) or '(vacío)')}", highlight=False)
        answer = ask(f"Nuevo {field} (Enter = mantener, '-' = vaciar): ")
        if answer.strip() == "-":
            edited[field] = ""
        elif answer.strip():
            edited[field] = answer.strip().replace("\\n", "\n")
        else:
            edited[field] = pair.get(field) or ""
    if not edited["instruction"].strip() or not edited["output"].strip():
        console.print("[red]la pregunta y la respuesta no pueden quedar vacías; el par sigue pendiente[/]")
        return None
    if all(edited[f] == (pair.get(f) or "") for f in FIELDS):
        return None
    return edited


def review(qa_path: str | Path, out: str | Path | None = None, *, ask: Callable[[str], str] | None = None,
           console=None) -> ReviewSummary:
    """Review the pairs in `qa_path` interactively; return the counts and write the accepted pairs.

    qa_path: the build-qa output (or any Alpaca JSONL), or an exam (the build-exam output, or any exam file).
    out: where to write accepted pairs (default: `<qa>.accepted.jsonl` beside the input).
    ask: reads one answer given a prompt (default: the terminal); tests pass scripted answers.
    console: a rich Console to draw on.
    """
    from rich.console import Console

    qa_path = Path(qa_path)
    console = console or Console()
    out = Path(out) if out else qa_path.with_name(f"{qa_path.stem}.accepted.jsonl")
    if out.resolve() == qa_path.resolve():
        raise AmautaError(f"{out}: the accepted pairs cannot overwrite the file under review; choose another --out")
    ask = ask or (lambda prompt: console.input(prompt))
    exam = is_exam_file(qa_path)
    pairs = load_items(qa_path) if exam else load_pairs(qa_path)
    render, edit = (render_item, edit_item) if exam else (_render, _edit)
    log = decisions_path(qa_path)
    seal_jsonl(log)
    by_id = {p["id"]: p for p in pairs}
    # Decisions about pairs no longer in the file (it was rebuilt) do not count.
    decided = {pid: entry for pid, entry in load_decisions(log).items() if pid in by_id}
    undo_stack = _decision_order(log, by_id)  # ids in the order they were decided, for undo
    skipped: set[str] = set()
    # Lines of the accepted file that review did not write are the user's. Review's own rows are those it
    # recorded writing, or (for a log from before those records) exactly what the decisions give now.
    book = bookkeeping_path(qa_path)
    seal_jsonl(book)
    recorded = _written_digests(book)
    review_made = recorded | {_row_digest(r) for r in _accepted_rows(pairs, decided, exam).values()}
    hand = _hand_rows(out, review_made)
    hand_lines = {h.pair_id: h.line for h in hand}
    # Standing decisions taken in this session, per pair: such a decision replaces a hand-edited line.
    decided_now: Counter[str] = Counter()

    def counts() -> dict:
        c = {d: 0 for d in FINAL}
        for entry in decided.values():
            c[entry["decision"]] += 1
        return c

    def record(pid: str, decision: str, **extra) -> None:
        entry = {"pair_id": pid, "decision": decision, "time": time.strftime("%Y-%m-%dT%H:%M:%S"), **extra}
        append_jsonl(log, entry)
        if decision == "undone":
            # Undo withdraws the latest decision: this session's if there is one (then the user's line
            # stands again), else an older one (which takes nothing from the user's line either).
            decided_now[pid] = max(0, decided_now[pid] - 1)
            decided.pop(pid, None)
            standing = load_decisions(log).get(pid)  # an earlier decision of a past session may stand again
            if standing:
                decided[pid] = standing
        else:
            decided[pid] = entry
            decided_now[pid] += 1

    first: list[str] = []  # undone pairs come back before the rest
    while True:
        pending = [by_id[i] for i in first if i not in decided] + [
            p for p in pairs if p["id"] not in decided and p["id"] not in skipped and p["id"] not in first]
        if not pending:
            break
        pair = pending[0]
        position = pairs.index(pair) + 1
        render(console, pair, position, len(pairs), counts())
        if str(pair["id"]) in hand_lines and not decided_now[pair["id"]]:
            console.print(f"[yellow]{'este ítem' if exam else 'este par'} está editado a mano en {out.name} (línea {hand_lines[str(pair['id'])]}); "
                          f"decidir aquí reemplaza esa línea (se guarda una copia en {book.name})[/]", highlight=False)
        try:
            choice = ask(f"{MENU}\n> ").strip().lower()[:1]
        except (EOFError, KeyboardInterrupt):
            console.print()
            break
        action = KEYS.get(choice)
        if action is None:
            console.print(f"[yellow]opción no válida '{choice}'[/]; usa a, e, r, s, u o q")
            continue
        if action == "quit":
            break
        if action == "skip":
            skipped.add(pair["id"])
        elif action == "undo":
            if not undo_stack:
                console.print("[yellow]no hay decisiones que deshacer[/]")
                continue
            last = undo_stack.pop()
            record(last, "undone")
            skipped.discard(last)
            first.insert(0, last)
        elif action == "edit":
            try:
                edited = edit(pair, ask, console)
            except (EOFError, KeyboardInterrupt):
                break
            if edited is None:
                console.print("[yellow]sin cambios; elige aceptar, rechazar o editar de nuevo[/]")
                continue
            record(pair["id"], "edit", pair=edited)
            undo_stack.append(pair["id"])
        else:
            record(pair["id"], action)
            undo_stack.append(pair["id"])

    touched = {pid for pid, count in decided_now.items() if count}
    rows, kept, replaced = _merge(pairs, _accepted_rows(pairs, decided, exam), hand, touched)
    for item in replaced:  # a copy: a replaced hand edit is never lost
        append_jsonl(book, {"pair_id": item.pair_id, "replaced_hand_row": item.row, "line": item.line,
                           "time": time.strftime("%Y-%m-%dT%H:%M:%S")})
    users = {id(h.row) for h in kept}
    _record_written(book, out, [r for r in rows if id(r) not in users], recorded)
    atomic_write_jsonl(out, rows)
    c = counts()
    summary = ReviewSummary(total=len(pairs), accepted=c["accept"] + c["edit"], edited=c["edit"], rejected=c["reject"],
                            pending=len(pairs) - len(decided), out=out, decisions=log, hand_kept=len(kept),
                            hand_replaced=len(replaced))
    mine = f", {len(kept)} líneas editadas a mano conservadas" if kept else ""
    console.print(f"revisados {len(decided)}/{len(pairs)}: {summary.accepted} aceptados ({summary.edited} editados), "
                  f"{summary.rejected} rechazados, {summary.pending} pendientes{mine} → {out}", highlight=False)
    if replaced:
        where = ", ".join(f"{out.name}:{h.line} ({h.pair_id})" for h in replaced)
        console.print(f"[yellow]líneas editadas a mano reemplazadas por tus decisiones de hoy: {where}; "
                      f"hay una copia en {book.name}[/]", highlight=False)
    return summary


def _merge(pairs: list[dict], generated: dict[str, dict], hand: list[HandRow],
           touched: set[str]) -> tuple[list[dict], list[HandRow], list[HandRow]]:
    """The accepted file's rows: review's rows in input order with the user's lines kept in place.

    A hand line about a pair stands in that pair's place (the user's edit wins over an older decision)
    unless the pair was decided in this session; lines about no known pair follow, in their file order.
    Returns (rows, hand lines kept, hand lines replaced by a decision of this session).
    """
    by_pair: dict[str, list[HandRow]] = {}
    loose = []
    ids = {str(p["id"]) for p in pairs}
    for item in hand:
        if item.pair_id in ids:
            by_pair.setdefault(item.pair_id, []).append(item)
        else:
            loose.append(item)
    rows, kept, replaced = [], [], []
    for pair in pairs:
        mine = by_pair.get(str(pair["id"]), [])
        if mine and pair["id"] not in touched:
            rows += [h.row for h in mine]
            kept += mine
            continue
        replaced += mine
        if pair["id"] in generated:
            rows.append(generated[pair["id"]])
    rows += [h.row for h in loose]
    return rows, kept + loose, replaced


def _record_written(book: Path, out: Path, rows: list[dict], known: set[str]) -> None:
    """Append the digests of review's own rows not yet on record, before the file is written: if the
    session dies in between, those rows are still recognised as review's (never mistaken for the user's)."""
    new = sorted({_row_digest(r) for r in rows} - known)
    if new:
        append_jsonl(book, {"written": out.name, "rows": new, "time": time.strftime("%Y-%m-%dT%H:%M:%S")})
