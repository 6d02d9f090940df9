"""MGSM in Spanish: grade-school maths word problems, accuracy of the final number.

The model is asked to reason step by step and end with "Respuesta: N"; the number after the last
"Respuesta" (or else the last number it wrote) is compared with the gold value. Spanish writes
numbers as "80 000", "80.000" or "1,5": the parser understands all three.
"""

from __future__ import annotations

import csv
import io
import re
from pathlib import Path
from typing import Any

from pydantic import Field

from amauta.core.errors import AmautaError
from amauta.core.files import read_text
from amauta.evaluate import stats
from amauta.evaluate.generation import GenerativeTask
from amauta.evaluate.runner import EvalModelsConfig, run_eval

INSTRUCTION = ("Resuelve el siguiente problema paso a paso. Al final escribe una línea que diga "
               "«Respuesta:» seguida solo del número.\n\nProblema: {question}")


class MgsmConfig(EvalModelsConfig):
    """`amauta eval mgsm`: maths word problems in Spanish, accuracy of the final number."""

    data: str = Field("../shared/data/mgsm/mgsm_es.tsv", description="TSV: question<TAB>answer, no header.")
    limit: int | None = Field(50, ge=1, description="Score only the first N problems (generation is slow on CPU).")
    max_new_tokens: int = Field(256, ge=1, description="Tokens the model may write (room for its reasoning).")
    batch_size: int = Field(8, ge=1, description="Problems per generation batch.")
    out: str = Field("runs/eval-mgsm", description="Eval folder (items.jsonl, summary.json, manifest.json).")


def load_problems(source: str | Path) -> list[dict[str, Any]]:
    """Problems as `{id, question, answer}` from MGSM's TSV (question, tab, numeric answer)."""
    path = Path(source)
    if not path.is_file():
        raise AmautaError(f"{source}: file not found; pass MGSM's mgsm_es.tsv")
    items = []
    text = io.StringIO(read_text(path), newline="")  # Latin-1 or binary: one line naming the byte
    for number, row in enumerate(csv.reader(text, delimiter="\t", quoting=csv.QUOTE_NONE), start=1):
        if not row or not "".join(row).strip():
            continue
        if len(row) != 2:
            raise AmautaError(f"{path}:{number}: expected 2 tab-separated columns (question, answer), found {len(row)}")
        value = parse_number(row[1])
        if value is None:
            raise AmautaError(f"{path}:{number}: answer {row[1]!r} is not a number")
        items.append({"id": str(number), "question": row[0].strip(), "answer": value})
    if not items:
        raise AmautaError(f"{path}: no problems; the file is empty")
    return items


# Digits, with groups of three after a space ("80 000") or any digits after "." or ",".
_NUMBER = re.compile(r"-?\d+(?:[ \u00a0\u202f]\d{3}(?!\d)|[.,]\d+)*")


def parse_number(text: str) -> float | None:
    """A number written the Spanish or English way: '70 000', '70.000', '70,000', '1,5', '1.5', '-3'."""
    text = text.strip()
    if not _NUMBER.fullmatch(text):
        return None
    text = re.sub(r"[ \u00a0\u202f]", "", text)
    seps = [ch for ch in text if ch in ".,"]
    if not seps:
        return float(text)
    last = max(text.rfind("."), text.rfind(","))
    decimals = len(text) - last - 1
    if len(set(seps)) == 2 or (len(seps) == 1 and decimals != 3):
        # two kinds of separator, or one that is not followed by three digits: the last is the decimal point
        whole, frac = text[:last], text[last + 1:]
        return float(re.sub(r"[.,]", "", whole) + "." + frac)
    return float(text.replace(".", "").replace(",", ""))  # 70.000 / 70,000 / 1.000.000: thousands


def extract_answer(output: str) -> float | None:
    """The final number of a reply: after the last 'Respuesta' when present, else the last number."""
    lowered = output.lower()
    cut = max(lowered.rfind("respuesta"), lowered.rfind("answer"))
    tail = output[cut:] if cut >= 0 else output
    numbers = _NUMBER.findall(tail) or _NUMBER.findall(output)
    if not numbers:
        return None
    chosen = numbers[0] if cut >= 0 and _NUMBER.findall(tail) else numbers[-1]
    return parse_number(chosen.strip(" .,"))


class MgsmTask(GenerativeTask):
    """MGSM as a runner task."""

    name = "mgsm"
    instruction = INSTRUCTION

    def messages(self, item: dict) -> list[dict[str, str]]:
        return [{"role": "user", "content": INSTRUCTION.format(question=item["question"])}]

    def score(self, item: dict, output: str) -> dict[str, Any]:
        pred = extract_answer(output)
        correct = pred is not None and abs(pred - item["answer"]) < 1e-6
        return {"answer": item["answer"], "prediction": pred, "output": output, "correct": correct}

    def summarize(self, rows: list[dict]) -> dict[str, Any]:
        values = [float(r["correct"]) for r in rows]
        return {"acc": sum(values) / len(values), "acc_ci": list(stats.bootstrap_ci(values)), "n": len(rows),
                "no_number": sum(1 for r in rows if r["prediction"] is None)}


def run(config: MgsmConfig, *, loader=None, show_progress: bool = True) -> Path:
    """Pipeline entry point: MGSM accuracy of the model (or the `compare` list) in `config.out`; return it."""
    items = load_problems(config.data)
    task = MgsmTask(items[: config.limit] if config.limit else items, config.max_new_tokens, Path(config.data).name)
    specs, load_kwargs = config.model_specs(), config.load_kwargs()
    return run_eval(task, specs, config.out, batch_size=config.batch_size, loader=loader, load_kwargs=load_kwargs,
                    config=config, inputs=[config.data], show_progress=show_progress).folder
