"""XQuAD-es (or any SQuAD-style JSON): extractive question answering by generation, exact match and F1.

The model reads a paragraph and a question in Spanish and answers in a few words; the answer is
compared with every gold answer after SQuAD's normalisation adapted to Spanish (lower case, no
punctuation including ¿ and ¡, no Spanish articles, accents kept as MLQA does, whitespace collapsed).
"""

from __future__ import annotations

import re
import string
import unicodedata
from collections import Counter
from pathlib import Path
from typing import Any

from pydantic import Field

from amauta.core.errors import AmautaError
from amauta.core.files import parse_json, read_text
from amauta.evaluate import stats
from amauta.evaluate.generation import GenerativeTask
from amauta.evaluate.runner import EvalModelsConfig, run_eval

INSTRUCTION = ("Lee el texto y responde la pregunta con las palabras exactas del texto, lo más breve posible "
               "(una palabra, una cifra o una frase corta). No expliques.\n\nTexto: {context}\n\nPregunta: {question}")


class XquadConfig(EvalModelsConfig):
    """`amauta eval xquad`: extractive QA in Spanish, EM and F1 by generation."""

    data: str = Field("../shared/data/xquad/xquad.es.json", description="SQuAD-style JSON (XQuAD-es, SQuAD-es).")
    limit: int | None = Field(100, ge=1, description="Score only the first N questions (generation is slow on CPU).")
    max_new_tokens: int = Field(32, ge=1, description="Tokens the model may write per answer.")
    batch_size: int = Field(8, ge=1, description="Questions per generation batch.")
    out: str = Field("runs/eval-xquad", description="Eval folder (items.jsonl, summary.json, manifest.json).")


def read_squad_articles(path: Path) -> list[dict[str, Any]]:
    """The `data` list of articles of a SQuAD-style JSON file (XQuAD, SQuAD-es), with one-line errors."""
    if not path.is_file():
        raise AmautaError(f"{path}: file not found; pass a SQuAD-style JSON such as xquad.es.json")
    data = parse_json(read_text(path), path, fix="fix the file or download it again")
    if not isinstance(data, dict) or not isinstance(data.get("data"), list):
        raise AmautaError(f"{path}: expected SQuAD-style JSON with a top-level 'data' list of articles")
    return data["data"]


def load_questions(source: str | Path) -> list[dict[str, Any]]:
    """Questions as `{id, title, context, question, answers[]}` from a SQuAD-style JSON file."""
    path = Path(source)
    items = []
    for a, article in enumerate(read_squad_articles(path), start=1):
        for p, para in enumerate(article.get("paragraphs", []), start=1):
            for q, qa in enumerate(para.get("qas", []), start=1):
                where = f"{path}: data[{a}].paragraphs[{p}].qas[{q}]"
                answers = [ans.get("text", "") for ans in qa.get("answers", []) if ans.get("text", "").strip()]
                if not qa.get("question") or not para.get("context"):
                    raise AmautaError(f"{where}: missing 'question' or 'context'")
                if not answers:
                    continue  # SQuAD 2.0 unanswerable questions: not part of extractive EM/F1
                items.append({"id": str(qa.get("id", f"{a}.{p}.{q}")), "title": article.get("title", ""),
                              "context": para["context"].replace("\ufeff", "").strip(), "question": qa["question"].strip(),
                              "answers": answers})
    if not items:
        raise AmautaError(f"{path}: no answerable questions found")
    return items


_ARTICLES = re.compile(r"\b(el|la|los|las|lo|un|una|unos|unas|al|del)\b")
_PUNCT = set(string.punctuation) | {"¿", "¡", "«", "»", "“", "”", "‘", "’", "…", "–", "—"}


def normalize_answer(text: str) -> str:
    """SQuAD normalisation for Spanish: lower case, drop punctuation and articles, collapse spaces."""
    text = unicodedata.normalize("NFC", text.lower())
    text = "".join(" " if ch in _PUNCT or unicodedata.category(ch).startswith("P") else ch for ch in text)
    text = _ARTICLES.sub(" ", text)
    return " ".join(text.split())


def f1_score(prediction: str, gold: str) -> float:
    """Token-overlap F1 between normalised answers."""
    pred, ref = normalize_answer(prediction).split(), normalize_answer(gold).split()
    common = Counter(pred) & Counter(ref)
    same = sum(common.values())
    if not pred or not ref:
        return float(pred == ref)
    if same == 0:
        return 0.0
    precision, recall = same / len(pred), same / len(ref)
    return 2 * precision * recall / (precision + recall)


def clean_prediction(output: str) -> str:
    """The answer part of a chat model's reply: its first line, without a 'Respuesta:' prefix or quotes."""
    line = next((ln for ln in output.strip().splitlines() if ln.strip()), "")
    line = re.sub(r"^\s*(respuesta|answer)\s*:\s*", "", line, flags=re.IGNORECASE)
    return line.strip().strip('"«»“”').strip()


def build_messages(item: dict[str, Any]) -> list[dict[str, str]]:
    """The Spanish instruction the model answers."""
    return [{"role": "user", "content": INSTRUCTION.format(context=item["context"], question=item["question"])}]


class XquadTask(GenerativeTask):
    """XQuAD as a runner task."""

    name = "xquad"
    instruction = INSTRUCTION

    def messages(self, item: dict) -> list[dict[str, str]]:
        return build_messages(item)

    def score(self, item: dict, output: str) -> dict[str, Any]:
        pred = clean_prediction(output)
        em = max(float(normalize_answer(pred) == normalize_answer(g)) for g in item["answers"])
        f1 = max(f1_score(pred, g) for g in item["answers"])
        return {"question": item["question"], "answers": item["answers"], "output": output,
                "prediction": pred, "em": em, "f1": round(f1, 4), "correct": em == 1.0}

    def summarize(self, rows: list[dict]) -> dict[str, Any]:
        em, f1 = [r["em"] for r in rows], [r["f1"] for r in rows]
        return {"em": sum(em) / len(em), "em_ci": list(stats.bootstrap_ci(em)),
                "f1": sum(f1) / len(f1), "f1_ci": list(stats.bootstrap_ci(f1)), "n": len(rows)}


def run(config: XquadConfig, *, loader=None, show_progress: bool = True) -> Path:
    """Pipeline entry point: EM/F1 of the model (or the `compare` list) into `config.out`; return it."""
    items = load_questions(config.data)
    task = XquadTask(items[: config.limit] if config.limit else items, config.max_new_tokens, Path(config.data).name)
    specs, load_kwargs = config.model_specs(), config.load_kwargs()
    return run_eval(task, specs, config.out, batch_size=config.batch_size, loader=loader, load_kwargs=load_kwargs,
                    config=config, inputs=[config.data], show_progress=show_progress).folder
