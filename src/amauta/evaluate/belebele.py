"""Belebele reading comprehension in Spanish: the thesis's Table 5, with honest statistics.

Three ways to score an item (passage, question, four options, one gold letter):

- `letter`: the options are listed A–D and the model scores the continuations " A" … " D"
  (lm-evaluation-harness's stock task; acc, and acc_norm by characters, which equals acc here).
- `cloze`: the options are not listed; the model scores each option's own text after the passage and
  question. `acc` picks the highest total log-probability, `acc_norm` the highest per character
  (long options are not penalised). Small models sit at chance on `letter` but not here.
- `generate`: a chat model reads an instruction, answers in words, and the letter is extracted
  (the Belebele paper's method for chat models).

Prompts: `es` (Spanish, the default), `lm-eval` (the harness's `belebele_*` template, for parity) and
`paper` (the Belebele paper's instruction prompt for chat models; its few-shot template is lm-eval's).
"""

from __future__ import annotations

import hashlib
import json
import re
import unicodedata
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from pydantic import Field

from amauta.core.errors import AmautaError
from amauta.core.files import parse_json, read_text
from amauta.evaluate import stats
from amauta.evaluate.runner import EvalModelsConfig, run_eval

if TYPE_CHECKING:  # loglik imports torch: the CLI imports this module for its config's options, torch only on use
    from amauta.evaluate.loglik import SharedPrefix

LETTERS = ("A", "B", "C", "D")
SHORT_FIELDS = ("passage", "question", "options", "gold")
OFFICIAL_FIELDS = ("flores_passage", "question", "mc_answer1", "mc_answer2", "mc_answer3", "mc_answer4",
                   "correct_answer_num")

Formulation = Literal["letter", "cloze", "generate"]
PromptName = Literal["es", "lm-eval", "paper"]

_LM_EVAL_LETTER = "P: {passage}\nQ: {question}\nA: {a}\nB: {b}\nC: {c}\nD: {d}\nAnswer:"
PROMPTS: dict[str, dict[str, str]] = {
    "es": {
        "letter": "Pasaje: {passage}\nPregunta: {question}\nA: {a}\nB: {b}\nC: {c}\nD: {d}\nRespuesta:",
        "cloze": "Pasaje: {passage}\nPregunta: {question}\nRespuesta:",
        "instruction": ("Lee el siguiente pasaje, la pregunta y las opciones de respuesta, y escribe solo la letra "
                        "de la respuesta correcta.\n###\nPasaje:\n{passage}\n###\nPregunta:\n{question}\n###\n"
                        "Opciones:\n(A) {a}\n(B) {b}\n(C) {c}\n(D) {d}\n###\nRespuesta:"),
    },
    "lm-eval": {
        "letter": _LM_EVAL_LETTER,
        "cloze": "P: {passage}\nQ: {question}\nAnswer:",
        "instruction": _LM_EVAL_LETTER,
    },
    "paper": {
        "letter": _LM_EVAL_LETTER,
        "cloze": "P: {passage}\nQ: {question}\nAnswer:",
        "instruction": ("Given the following passage, query, and answer choices, output the letter corresponding "
                        "to the correct answer.\n###\nPassage:\n{passage}\n###\nQuery:\n{question}\n###\n"
                        "Choices:\n(A) {a}\n(B) {b}\n(C) {c}\n(D) {d}\n###\nAnswer:"),
    },
}


class BelebeleConfig(EvalModelsConfig):
    """`amauta eval belebele`: reading comprehension, one model or a base-vs-adapters comparison."""

    data: str = Field("examples/data/belebele_sample.jsonl",
                      description="JSONL/parquet file (official or short layout) or a hub id like facebook/belebele.")
    language: str = Field("spa_Latn", description="Hub dataset config (language) when `data` is a hub id.")
    split: str = Field("test", description="Hub dataset split when `data` is a hub id.")
    formulation: Formulation = Field("cloze", description="letter, cloze (log-likelihood) or generate (chat).")
    prompt: PromptName = Field("es", description="Prompt format: es (Spanish), lm-eval, or paper.")
    shots: int = Field(0, ge=0, le=10, description="Solved examples before each item (k-shot).")
    shots_from: str | None = Field(None, description="File the shots come from; else the first items, not scored.")
    limit: int | None = Field(None, ge=1, description="Score only the first N items (quick checks).")
    batch_size: int = Field(8, ge=1, description="Items per forward pass.")
    max_new_tokens: int = Field(16, ge=1, description="generate only: tokens the model may write.")
    out: str = Field("runs/eval-belebele", description="Eval folder (items.jsonl, summary.json, manifest.json).")


# --------------------------------------------------------------------------- reading items

def load_items(source: str | Path, *, language: str = "spa_Latn", split: str = "test") -> list[dict[str, Any]]:
    """Belebele items as `{id, passage, question, options[4], gold}` from a file or the Hugging Face Hub.

    source: a folder of such files, or a `.jsonl`/`.json`/`.parquet` file in the official layout (`flores_passage`, `mc_answer1..4`,
        `correct_answer_num`) or the short one (`passage`, `options`, `gold`), or a hub id
        (`facebook/belebele`) read with `datasets.load_dataset(source, language, split=split)`.
    language: the hub config, e.g. `spa_Latn`.
    split: the hub split.
    """
    path = Path(source)
    if path.is_dir():  # a folder of Belebele files: every .jsonl and .parquet in it, in name order
        files = sorted(p for p in path.iterdir() if p.suffix in (".jsonl", ".parquet"))
        if not files:
            raise AmautaError(f"{path}: no .jsonl or .parquet files in this folder")
        return [item for f in files for item in load_items(f)]
    if path.is_file():
        records = list(_read_file(path))
        where = str(path)
    elif path.suffix in (".jsonl", ".json", ".parquet") or path.exists() or str(source).count("/") != 1:
        raise AmautaError(f"{source}: file not found; pass a Belebele JSONL/parquet file or a hub id (facebook/belebele)")
    else:
        records = _read_hub(str(source), language, split)
        where = f"{source}[{language}/{split}]"
    if not records:
        raise AmautaError(f"{where}: no items; the file is empty")
    return [_normalise(record, f"{where}:{label}", n) for n, (label, record) in enumerate(records, start=1)]


def _read_file(path: Path):
    if path.suffix == ".parquet":
        import pyarrow.parquet as pq

        for n, row in enumerate(pq.read_table(path).to_pylist(), start=1):
            yield f"row {n}", row
        return
    text = read_text(path)  # Latin-1 or binary: one line naming the file, line and byte
    if path.suffix == ".json" and text.lstrip().startswith("["):
        for n, row in enumerate(parse_json(text, path, fix="fix the file"), start=1):
            yield f"record {n}", row
        return
    for number, line in enumerate(text.split("\n"), start=1):
        if line.strip():
            yield str(number), parse_json(line, path, first_line=number)


def _read_hub(dataset_id: str, language: str, split: str) -> list[tuple[str, dict]]:
    from datasets import load_dataset

    try:
        data = load_dataset(dataset_id, language, split=split)
    except Exception as exc:  # offline, unknown id or config: say which and how to get around it
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise AmautaError(f"{dataset_id} ({language}, {split}): cannot load from the Hugging Face Hub ({first}); "
                          "check the id and config, or pass a local JSONL/parquet file") from None
    return [(f"row {n}", dict(row)) for n, row in enumerate(data, start=1)]


def _normalise(record: Any, where: str, n: int) -> dict[str, Any]:
    """One record in either layout → the common item, or a one-line error naming the record."""
    if not isinstance(record, dict):
        raise AmautaError(f"{where}: expected a JSON object, found {type(record).__name__}")
    if "flores_passage" in record or "mc_answer1" in record:
        missing = [f for f in OFFICIAL_FIELDS if record.get(f) in (None, "")]
        if missing:
            raise AmautaError(f"{where}: missing field '{missing[0]}'; official Belebele items need "
                              f"{', '.join(OFFICIAL_FIELDS)}")
        num = str(record["correct_answer_num"]).strip()
        if num not in ("1", "2", "3", "4"):
            raise AmautaError(f"{where}: correct_answer_num is {record['correct_answer_num']!r}; it must be 1, 2, 3 or 4")
        link, qn = record.get("link"), record.get("question_number")
        return {"id": f"{link}#{qn}" if link and qn is not None else str(n), "passage": str(record["flores_passage"]),
                "question": str(record["question"]), "options": [str(record[f"mc_answer{i}"]) for i in range(1, 5)],
                "gold": LETTERS[int(num) - 1]}
    missing = [f for f in SHORT_FIELDS if record.get(f) in (None, "")]
    if missing:
        raise AmautaError(f"{where}: missing field '{missing[0]}'; each item needs passage, question, options (4) "
                          "and gold (A-D), or the official flores_passage/mc_answer1..4/correct_answer_num")
    options = record["options"]
    if not isinstance(options, list) or len(options) != 4 or not all(isinstance(o, str) and o.strip() for o in options):
        raise AmautaError(f"{where}: 'options' must be a list of 4 non-empty strings")
    gold = str(record["gold"]).strip().upper()
    if gold not in LETTERS:
        raise AmautaError(f"{where}: gold {record['gold']!r} is not one of A, B, C, D")
    item = {"id": str(record.get("id", n)), "passage": str(record["passage"]), "question": str(record["question"]),
            "options": list(options), "gold": gold}
    if record.get("category"):
        item["category"] = str(record["category"])
    return item


def items_digest(items: list[dict[str, Any]]) -> str:
    """A hash of the items' content, so that edited data never reuses stale cached results."""
    blob = json.dumps([[i["id"], i["passage"], i["question"], i["options"], i["gold"]] for i in items], ensure_ascii=False)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def split_shots(items: list[dict], shots: int, shot_items: list[dict] | None = None) -> tuple[list[dict], list[dict]]:
    """(shots, items to score): shots from `shot_items`, else the first `shots` items, never both scored and shown.

    Like lm-eval's `first_n` sampler, but the examples are removed from the scored set.
    """
    if shots == 0:
        return [], items
    if shot_items is None:
        if shots >= len(items):
            raise AmautaError(f"--shots {shots}: only {len(items)} items; pass --shots-from another split")
        return items[:shots], items[shots:]
    scored_keys = {(i["passage"], i["question"]) for i in items}
    pool = [s for s in shot_items if (s["passage"], s["question"]) not in scored_keys]
    if len(pool) < shots:
        raise AmautaError(f"--shots-from: only {len(pool)} items not among the scored ones; need {shots}")
    return pool[:shots], items


# --------------------------------------------------------------------------- prompts

def _fields(item: dict) -> dict[str, str]:
    a, b, c, d = item["options"]
    return {"passage": item["passage"].strip(), "question": item["question"].strip(), "a": a, "b": b, "c": c, "d": d}


def build_context(item: dict, formulation: str, prompt: str, shots: list[dict]) -> str:
    """The text before the answer: k solved examples, then the item (lm-eval's "\\n\\n" between examples)."""
    template = PROMPTS[prompt][formulation]
    solved = [template.format(**_fields(s)) + " " + answer_text(s, formulation, s["gold"]) for s in shots]
    return "\n\n".join([*solved, template.format(**_fields(item))])


def answer_text(item: dict, formulation: str, letter: str) -> str:
    """What follows the context for option `letter`: the letter itself, or the option's own text."""
    return letter if formulation == "letter" else item["options"][LETTERS.index(letter)]


def build_messages(item: dict, prompt: str, shots: list[dict]) -> list[dict[str, str]]:
    """Chat messages for the `generate` formulation: shots as earlier user/assistant turns."""
    template = PROMPTS[prompt]["instruction"]
    messages: list[dict[str, str]] = []
    for shot in shots:
        messages += [{"role": "user", "content": template.format(**_fields(shot))},
                     {"role": "assistant", "content": shot["gold"]}]
    return [*messages, {"role": "user", "content": template.format(**_fields(item))}]


def _fold(text: str) -> str:
    text = unicodedata.normalize("NFKD", text.lower())
    return " ".join("".join(ch for ch in text if not unicodedata.combining(ch) and (ch.isalnum() or ch.isspace())).split())


_ANSWER_IS = re.compile(r"(?:respuesta|answer|opci[oó]n|option)[^A-Za-z]{0,20}?(?:correcta\s+|correct\s+)?"
                        r"(?:es|is|:)?\s*\(?([ABCD])\b", re.IGNORECASE)
_LEADING = re.compile(r"^\W*\(?([ABCD])(?:\)|\.|:|\s|$)")
_ANYWHERE = re.compile(r"\(([ABCD])\)|\b([ABCD])\b")


def extract_letter(text: str, options: list[str]) -> str | None:
    """The letter a chat model chose: 'B', '(B)', 'La respuesta es B', or an option's text copied out."""
    stripped = text.strip()
    for pattern in (_LEADING, _ANSWER_IS):
        if m := pattern.search(stripped):
            return m.group(1).upper()
    folded = _fold(stripped)
    hits = [LETTERS[k] for k, opt in enumerate(options) if _fold(opt) and _fold(opt) in folded]
    if len(hits) == 1:
        return hits[0]
    if m := _ANYWHERE.search(stripped):
        return (m.group(1) or m.group(2)).upper()
    return None


# --------------------------------------------------------------------------- scoring

def score_batch(loaded: Any, batch: list[dict], formulation: str, prompt: str, shots: list[dict],
                max_new_tokens: int = 16, reuse_cache: bool = True,
                prefix: SharedPrefix | None = None) -> list[dict[str, Any]]:
    """Per-item result rows for a batch: prediction, correctness, and the option scores.

    prefix: keeps the few-shot examples' KV cache from batch to batch.
    """
    if formulation == "generate":
        from amauta.evaluate.generation import generate_texts

        outputs = generate_texts(loaded, [build_messages(item, prompt, shots) for item in batch], max_new_tokens)
        rows = []
        for item, output in zip(batch, outputs, strict=True):
            pred = extract_letter(output, item["options"])
            rows.append({"gold": item["gold"], "pred": pred, "output": output, "correct": pred == item["gold"]})
        return rows
    from amauta.evaluate.loglik import encode_pair, score_continuations

    tok = loaded.tokenizer
    limit = getattr(getattr(loaded.model, "config", None), "max_position_embeddings", None)
    contexts, continuations, texts = [], [], []
    for item in batch:
        context = build_context(item, formulation, prompt, shots)
        options = [" " + answer_text(item, formulation, letter) for letter in LETTERS]
        pairs = [encode_pair(tok, context, option) for option in options]
        ctx = pairs[0][0]
        longest = max(len(c) for _, c in pairs)
        if limit and len(ctx) + longest > limit + 1:  # keep the end of the context, like lm-eval
            ctx = ctx[-(limit + 1 - longest):]
        contexts.append(ctx)
        continuations.append([cont for _, cont in pairs])
        texts.append(options)
    scored = score_continuations(loaded.model, tok, contexts, continuations, reuse_cache=reuse_cache, prefix=prefix)
    rows = []
    for item, context, options, per_option in zip(batch, contexts, texts, scored, strict=True):
        logp = [s for s, _, _ in per_option]
        # acc_norm divides by the option's length in characters, without the leading space (as lm-eval)
        norm = [s / max(len(text.lstrip()), 1) for s, text in zip(logp, options, strict=True)]
        pred = LETTERS[max(range(4), key=lambda k: logp[k])]
        pred_norm = LETTERS[max(range(4), key=lambda k: norm[k])]
        rows.append({"gold": item["gold"], "pred": pred, "pred_norm": pred_norm, "correct": pred == item["gold"],
                     "correct_norm": pred_norm == item["gold"], "logprobs": [round(x, 5) for x in logp],
                     "tokens": [n for _, n, _ in per_option], "context_tokens": len(context)})
    return rows


def summarize_rows(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """acc (and acc_norm) with 95% bootstrap intervals, the prediction histogram, and per category."""
    correct = [float(r["correct"]) for r in rows]
    metrics: dict[str, Any] = {"acc": sum(correct) / len(correct), "acc_ci": list(stats.bootstrap_ci(correct)),
                               "n": len(rows), "chance": 0.25}
    if all("correct_norm" in r for r in rows):
        norm = [float(r["correct_norm"]) for r in rows]
        metrics["acc_norm"] = sum(norm) / len(norm)
        metrics["acc_norm_ci"] = list(stats.bootstrap_ci(norm))
    metrics["predictions"] = {letter: sum(1 for r in rows if r.get("pred") == letter) for letter in (*LETTERS, None)}
    metrics["predictions"]["none"] = metrics["predictions"].pop(None)
    categories = sorted({r["category"] for r in rows if r.get("category")})
    if categories:
        metrics["by_category"] = {c: _acc([r for r in rows if r.get("category") == c]) for c in categories}
    return metrics


def _acc(rows: list[dict]) -> dict[str, Any]:
    values = [float(r["correct"]) for r in rows]
    return {"acc": sum(values) / len(values), "acc_ci": list(stats.bootstrap_ci(values)), "n": len(values)}


def score(loaded: Any, items: list[dict], formulation: str = "cloze", shots: int = 0, *, prompt: str = "es",
          shot_items: list[dict] | None = None, batch_size: int = 8, reuse_cache: bool = True) -> dict[str, Any]:
    """Belebele accuracy of an in-memory model, no files written (the training forgetting guard uses it).

    loaded: a LoadedModel.
    items: from `load_items`.
    formulation: cloze, letter or generate.
    shots: k solved examples before each item; taken from `shot_items`, else from the first k items
        (which are then not scored).
    prompt: es, lm-eval or paper.
    batch_size: items per forward pass.
    reuse_cache: encode each context once for its four options (identical scores, faster).
    Returns the metrics (acc, acc_ci, acc_norm, n, predictions) and the per-item rows under "items".
    """
    _check_choice(formulation, ("letter", "cloze", "generate"), "formulation")
    _check_choice(prompt, tuple(PROMPTS), "prompt")
    examples, scored = split_shots(items, shots, shot_items)
    by_id: dict[str, dict[str, Any]] = {}
    ordered = sorted(scored, key=BelebeleTask.length, reverse=True)  # less padding per batch
    from amauta.evaluate.loglik import SharedPrefix

    prefix = SharedPrefix()  # the shots run once for the whole call, not once per batch
    for start in range(0, len(ordered), batch_size):
        batch = ordered[start:start + batch_size]
        for item, row in zip(batch, score_batch(loaded, batch, formulation, prompt, examples,
                                                 reuse_cache=reuse_cache, prefix=prefix), strict=True):
            by_id[item["id"]] = {"item_id": item["id"], **row}
    rows = [by_id[item["id"]] for item in scored]
    return {**summarize_rows(rows), "formulation": formulation, "prompt": prompt, "shots": shots, "items": rows}


def _check_choice(value: str, choices: tuple[str, ...], name: str) -> None:
    if value not in choices:
        from amauta.core.errors import did_you_mean

        raise AmautaError(f"{name} '{value}' is not one of {', '.join(choices)}{did_you_mean(value, choices)}")


class BelebeleTask:
    """Belebele as a runner task."""

    name = "belebele"

    def __init__(self, items: list[dict], shots: list[dict], formulation: str, prompt: str, *,
                 max_new_tokens: int = 16, digest: str = "", source: str = ""):
        self._items, self.shots = items, shots
        self.formulation, self.prompt, self.max_new_tokens = formulation, prompt, max_new_tokens
        self.digest, self.source = digest, source
        from amauta.evaluate.loglik import SharedPrefix

        self._prefix = SharedPrefix()  # the shots' KV cache; it starts afresh for each model

    @property
    def renders_chat(self) -> bool:
        """Only the `generate` formulation goes through the chat template (and its system prompt)."""
        return self.formulation == "generate"

    def config_key(self) -> dict[str, Any]:
        key = {"formulation": self.formulation, "prompt": self.prompt, "shots": [s["id"] for s in self.shots],
               "data": self.digest, "source": self.source}
        if self.formulation == "generate":
            key["max_new_tokens"] = self.max_new_tokens
        return key

    def items(self) -> list[dict]:
        return self._items

    @staticmethod
    def length(item: dict) -> int:
        """Rough size of the item's prompt, so that the runner batches items of similar length."""
        return len(item["passage"]) + len(item["question"]) + sum(len(o) for o in item["options"])

    def evaluate(self, loaded: Any, batch: list[dict]) -> list[dict]:
        rows = score_batch(loaded, batch, self.formulation, self.prompt, self.shots, self.max_new_tokens,
                           prefix=self._prefix)
        for item, row in zip(batch, rows, strict=True):
            if item.get("category"):
                row["category"] = item["category"]
        return rows

    def summarize(self, rows: list[dict]) -> dict[str, Any]:
        return summarize_rows(rows)


def build_task(config: BelebeleConfig) -> tuple[BelebeleTask, list[str]]:
    """The task a config describes, and the data files to hash into the manifest."""
    items = load_items(config.data, language=config.language, split=config.split)
    digest = items_digest(items)
    shot_pool = load_items(config.shots_from, language=config.language, split=config.split) if config.shots_from else None
    shots, scored = split_shots(items, config.shots, shot_pool)
    if config.limit:
        scored = scored[: config.limit]
    task = BelebeleTask(scored, shots, config.formulation, config.prompt, max_new_tokens=config.max_new_tokens,
                        digest=digest, source=Path(config.data).name)
    inputs = [p for p in (config.data, config.shots_from) if p and Path(p).is_file()]
    return task, inputs


def run(config: BelebeleConfig, *, loader=None, show_progress: bool = True) -> Path:
    """Pipeline entry point: evaluate the model (or the `compare` list) into `config.out`; return it."""
    task, inputs = build_task(config)
    specs, load_kwargs = config.model_specs(), config.load_kwargs()
    return run_eval(task, specs, config.out, batch_size=config.batch_size, loader=loader, load_kwargs=load_kwargs,
                    config=config, inputs=inputs, show_progress=show_progress).folder
