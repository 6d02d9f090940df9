"""`amauta eval grade RUN`: people grade the same answers the judge graded, blind and resumable.

Each answer is shown with its question (and the earlier turns of its conversation, and the reference
answer when there is one) but never with the model that wrote it; the order is shuffled with a seed
derived from the grader's name, so two graders see different orders and the same grader sees the same
order after a restart. Every graded answer is appended to `RUN/grades/<grader>.jsonl` at once; a
restarted session skips what the grader already did.
"""

from __future__ import annotations

import getpass
import hashlib
import random
import re
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from amauta.core.errors import AmautaError
from amauta.core.files import append_jsonl, read_jsonl
from amauta.judge.candidates import Answer, conversation_before, read_answers

GRADES_DIR = "grades"


def grader_slug(name: str) -> str:
    """A grader's name as a file name (letters, digits, - and _)."""
    slug = re.sub(r"[^\w-]+", "_", name.strip(), flags=re.UNICODE).strip("_")
    if not slug:
        raise AmautaError(f"grader name '{name}' is empty; pass --grader NAME (e.g. your first name)")
    return slug


def blind_id(answer: Answer) -> str:
    """A short id for an answer that does not reveal which candidate wrote it."""
    blob = f"{answer.candidate}|{answer.item}|{answer.turn}|{answer.attempt}"
    return hashlib.sha256(blob.encode()).hexdigest()[:8]


def load_grades(run_dir: str | Path) -> dict[str, dict[tuple, dict[str, int]]]:
    """grader → answer key (candidate, item, turn, attempt) → scores, from RUN/grades/*.jsonl."""
    folder = Path(run_dir) / GRADES_DIR
    grades: dict[str, dict[tuple, dict[str, int]]] = {}
    for path in sorted(folder.glob("*.jsonl")) if folder.is_dir() else []:
        rows = {}
        for row in read_jsonl(path, tolerate_torn_tail=True):
            try:
                key = (row["candidate"], row["item"], int(row["turn"]), int(row["attempt"]))
                rows[key] = {c: int(v) for c, v in row["scores"].items()}
            except (KeyError, TypeError, ValueError):
                raise AmautaError(f"{path}: a grade without candidate/item/turn/attempt/scores; "
                                  "remove the line or grade that answer again") from None
        if rows:
            grades[path.stem] = rows
    return grades


def grading_order(answers: list[Answer], grader: str, seed: int | None = None) -> list[Answer]:
    """The answers in this grader's fixed random order (the seed comes from the name unless given)."""
    if seed is None:
        seed = int.from_bytes(hashlib.sha256(grader.encode()).digest()[:8], "big")
    order = sorted(answers, key=lambda a: a.key)
    random.Random(seed).shuffle(order)
    return order


def _ask_score(ask: Callable[[str], str], console, label: str) -> int | str:
    """One criterion's score from the grader: 1–5, or 's' (skip this answer) or 'q' (stop)."""
    while True:
        try:
            text = ask(f"{label} [1-5, s=saltar, q=salir]: ").strip().lower()
        except EOFError:
            return "q"
        if text in ("1", "2", "3", "4", "5"):
            return int(text)
        if text in ("s", "q"):
            return text
        console.print("  escribe un número del 1 al 5, s para saltar esta respuesta o q para salir")


def grade(run_dir: str | Path, grader: str | None = None, *, ask: Callable[[str], str] | None = None,
          console=None, limit: int | None = None, attempts: int | None = None, seed: int | None = None,
          show_rubric: bool = True) -> int:
    """Run a grading session; returns how many answers were graded in it.

    run_dir: a judge run folder (it holds answers.jsonl). grader: the person's name (default: the login).
    ask: reads one line (the keyboard by default; tests inject answers). console: a rich console.
    limit: stop after this many answers in this session. attempts: grade only the first K attempts of
    each prompt (people rarely grade all N). seed: replaces the name-derived order seed.
    show_rubric: print the 1–5 scale of every criterion at the start.
    """
    from rich.console import Console
    from rich.panel import Panel

    from amauta.judge.rubric import CRITERIA, NAMES_ES, rubric_text

    console = console or Console()
    ask = ask or input
    run = Path(run_dir)
    grader = grader or getpass.getuser()
    slug = grader_slug(grader)
    answers = read_answers(run)
    if attempts is not None:
        answers = [a for a in answers if a.attempt < attempts]
    if not answers:
        raise AmautaError(f"{run}/answers.jsonl has no answers to grade; run amauta eval judge first")
    path = run / GRADES_DIR / f"{slug}.jsonl"
    done = load_grades(run).get(slug, {})
    todo = [a for a in grading_order(answers, slug, seed) if a.key not in done]
    by_key = {a.key: a for a in answers}
    console.print(f"[bold]{slug}[/]: {len(done)} de {len(answers)} respuestas ya calificadas; quedan {len(todo)}. "
                  f"Se guardan en {path}.")
    if show_rubric and todo:
        console.print(Panel(rubric_text(), title="Escala de calificación (1–5)", expand=False))
    graded = 0
    for position, answer in enumerate(todo, start=len(done) + 1):
        if limit is not None and graded >= limit:
            break
        console.rule(f"Respuesta {position}/{len(answers)} · id {blind_id(answer)}")
        for message in conversation_before(by_key, answer):
            who = "Usuario" if message["role"] == "user" else "Asistente"
            console.print(f"[dim]{who}: {message['content']}[/]")
        console.print(Panel(answer.prompt, title="Pregunta", expand=False))
        if answer.reference:
            console.print(Panel(answer.reference, title="Respuesta de referencia", expand=False, style="green"))
        console.print(Panel(answer.answer or "(respuesta vacía)", title="Respuesta a calificar", expand=False))
        started = time.perf_counter()
        scores: dict[str, int] = {}
        for criterion in CRITERIA:
            value = _ask_score(ask, console, NAMES_ES[criterion])
            if value == "q":
                console.print(f"[yellow]sesión terminada: {graded} respuestas calificadas ahora; "
                              "vuelve a ejecutar el mismo comando para continuar[/]")
                return graded
            if value == "s":
                break
            scores[criterion] = int(value)
        if len(scores) < len(CRITERIA):
            console.print("[dim]saltada; volverá a aparecer en la próxima sesión[/]")
            continue
        append_jsonl(path, {"grader": slug, "blind_id": blind_id(answer), "candidate": answer.candidate,
                            "item": answer.item, "turn": answer.turn, "attempt": answer.attempt, "scores": scores,
                            "seconds": round(time.perf_counter() - started, 1),
                            "time": time.strftime("%Y-%m-%dT%H:%M:%S%z")})
        graded += 1
    console.print(f"[green]{graded} respuestas calificadas en esta sesión[/]")
    return graded


def grading_status(run_dir: str | Path) -> dict[str, Any]:
    """How many answers each grader has done, out of the run's answers."""
    answers = read_answers(Path(run_dir))
    keys = {a.key for a in answers}
    return {"answers": len(answers),
            "graders": {g: len(set(rows) & keys) for g, rows in load_grades(run_dir).items()}}
