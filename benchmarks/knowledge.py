"""Which path teaches a small model a domain? The knowledge table of issue 12 (results in docs/knowledge.md).

On `examples/docs` and the exam `examples/exams/leyes.jsonl` (`test` split, read once at the end; `dev`
for early stopping and for choosing the best recipe), with the embedded SmolLM2-135M-Instruct:

    options-only   the base model with the question withheld (answers guessed from familiar options)
    base           the base model, closed-book
    qa             the thesis's recipe: Q&A pairs only            (amauta data augment --recipe qa)
    paraphrase     articles restated k times + Q&A in several wordings
    cpt            the documents as completion records + instruction data (alpaca_es)
    raft           question + gold chunk + distractor chunks, answers quoting the source
    rag            the base model with retrieval (open-book)
    best+rag       the recipe with the best dev score of that seed, with retrieval

Every recipe is built from the hand-written augmentation in examples/augment/ (`--exam` hold-out: no dev
or test question reaches training; document-only facts only through the documents), trained with the
`knowledge-cpu` preset and early stopping on the exam's dev split (best checkpoint restored), at equal
training tokens: each recipe's `max_steps` is the token budget over its dataset's mean tokens per step.

Columns: closed-book MC accuracy on QA facts and on document-only facts (held-out wordings), open-book MC
accuracy (rag rows), short-answer key-fact recall and precision, abstention on unanswerable items (MC:
the option "Los documentos no lo indican") and on answerable ones, forgetting of each seed's best recipe
(Belebele-es cloze on the 244 shared items, paired with base; XQuAD-es bits per byte), training tokens and
minutes. With `--seeds 1 2 3` the table shows mean ± spread (half the range) over seeds.

It only calls the stages' own entry points (`amauta.data.augment.run`, `amauta.train.recipe.run`,
`amauta.evaluate.exam.run`, `amauta.evaluate.belebele.run`, `amauta.evaluate.perplexity.run`,
`amauta.rag.index.run`). Every finished cell is written at once (atomically) to `--out`; a rerun with the
same settings skips finished cells, and the stages resume their own folders under `--work`. Progress on
stderr; at the end a table and one JSON line on stdout.

    .venv/bin/python benchmarks/knowledge.py --quick                        # a smoke run: minutes
    .venv/bin/python benchmarks/knowledge.py --seeds 1 2 3 --tokens 80000  # the measurement: hours on 2 cores
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
import time
from pathlib import Path
from typing import Any

from amauta.core.config import validate_config
from amauta.core.errors import AmautaError
from amauta.core.files import atomic_write_json

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "examples" / "docs"
EXAM = ROOT / "examples" / "exams" / "leyes.jsonl"
HAND_WRITTEN = [ROOT / "examples" / "augment" / "leyes-restatements.jsonl", ROOT / "examples" / "augment" / "leyes-qa.jsonl"]
MIX = ROOT / "examples" / "data" / "alpaca_es.jsonl"
SHARED = ROOT.parent / "shared" / "data"
BELEBELE = SHARED / "belebele-es" / "dev.jsonl"
XQUAD = SHARED / "xquad" / "xquad.es.json"
RECIPES = ("qa", "paraphrase", "cpt", "raft")
# raft's examples without their gold chunk answer "the documents do not say" by default; raft-memory answers
# them from memory (the paper's choice): the benchmark measures both (issue 12).
VARIANTS = ("raft-memory",)
RAFT_CONTEXT_CHARS = 2000  # gold + distractors in ~500 tokens, so RAFT examples fit a CPU's max_length


# --- settings -------------------------------------------------------------------------------------------------

def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", default="smollm2-135m-instruct")
    parser.add_argument("--seeds", type=int, nargs="+", default=[1])
    parser.add_argument("--recipes", nargs="+", default=list(RECIPES), choices=RECIPES + VARIANTS)
    parser.add_argument("--open-recipes", nargs="+", default=[], choices=RECIPES + VARIANTS,
                        help="Also score these recipes' runs with retrieval (open book), beside the best one.")
    parser.add_argument("--tokens", type=int, default=80_000, help="Training tokens per recipe (equal for all).")
    parser.add_argument("--dtype", default="float32", choices=["float32", "bfloat16"],
                        help="Training weights: knowledge-cpu's bfloat16 is emulated, and slow, on CPUs without "
                             "AVX512-BF16 (this machine's); float32 also keeps small updates.")
    parser.add_argument("--max-length", type=int, default=256, help="Tokens per training block (raft: its longest).")
    parser.add_argument("--dev-every", type=int, default=20, help="Early stopping: evaluate on dev every N steps.")
    parser.add_argument("--dev-limit", type=int, default=None, help="Early stopping: first N dev items.")
    parser.add_argument("--exam-limit", type=int, default=None, help="Score only the first N test items.")
    parser.add_argument("--belebele-limit", type=int, default=None, help="Belebele-es items (default all 244).")
    parser.add_argument("--xquad-limit", type=int, default=48, help="XQuAD-es paragraphs for bits per byte.")
    parser.add_argument("--max-new-tokens", type=int, default=48, help="Short-answer length.")
    parser.add_argument("--no-short-answer", action="store_true", help="Multiple choice only (much faster).")
    parser.add_argument("--short-answer-limit", type=int, default=48,
                        help="Short answers (generation, the slowest cells) on the first N test items of each row.")
    parser.add_argument("--open-context-chars", type=int, default=6000,
                        help="Characters of retrieved passages in an open-book prompt (the exam's default 6000).")
    parser.add_argument("--curve", choices=RECIPES, default=None,
                        help="Instead of the table: train RECIPE once for --tokens with a checkpoint every "
                             "--curve-every steps (no early stopping) and score every checkpoint on the dev split, "
                             "QA facts and document-only facts apart: accuracy vs training tokens.")
    parser.add_argument("--curve-every", type=int, default=10, help="--curve: steps between scored checkpoints.")
    parser.add_argument("--quick", action="store_true",
                        help="Smoke run: 1 seed, 2,000 tokens, 12 test items, 8 dev, 16 Belebele, 4 XQuAD texts.")
    parser.add_argument("--work", default=str(ROOT / "runs" / "bench-knowledge"), help="Folder for the stages' output.")
    parser.add_argument("--out", default=None, help="Results JSON (default: WORK/results.json).")
    args = parser.parse_args(argv)
    if args.quick:
        args.seeds, args.tokens, args.dev_every = args.seeds[:1], min(args.tokens, 2_000), 4
        args.dev_limit, args.exam_limit = args.dev_limit or 8, args.exam_limit or 12
        args.belebele_limit, args.xquad_limit, args.max_new_tokens = args.belebele_limit or 16, 4, 24
    args.out = args.out or str(Path(args.work) / "results.json")
    return args


def settings_of(args: argparse.Namespace) -> dict[str, Any]:
    """What the results depend on: a results file made with other settings is not resumed."""
    keys = ("model", "dtype", "tokens", "max_length", "dev_every", "dev_limit", "exam_limit", "belebele_limit",
            "xquad_limit", "max_new_tokens")
    # --no-short-answer, --short-answer-limit and --open-context-chars are recorded in the cells they shape
    # (short answers are cells of their own), not here: adding short answers to a finished run resumes it.
    return {key: getattr(args, key) for key in keys}


class Results:
    """The results file: settings and finished cells, rewritten atomically after each cell."""

    def __init__(self, path: Path, settings: dict[str, Any]):
        self.path = path
        data = json.loads(path.read_text()) if path.is_file() else {"settings": settings, "cells": {}}
        if data.get("settings") != settings:
            raise AmautaError(f"{path}: made with other settings ({data.get('settings')}); pass another --out "
                              "and --work, or rerun with those settings to resume")
        self.data = data

    def get(self, name: str) -> dict[str, Any] | None:
        return self.data["cells"].get(name)

    def put(self, name: str, value: dict[str, Any]) -> dict[str, Any]:
        self.data["cells"][name] = value
        atomic_write_json(self.path, self.data)
        return value


def cell(results: Results, name: str, compute, started: float) -> dict[str, Any]:
    """A finished cell from the results, or computed now (progress on stderr)."""
    done = results.get(name)
    if done is not None:
        print(f"· {name}: done already", file=sys.stderr)
        return done
    print(f"▶ {name} … (elapsed {(time.time() - started) / 60:.1f} min)", file=sys.stderr, flush=True)
    t0 = time.time()
    value = compute()
    value["seconds"] = round(time.time() - t0, 1)
    print(f"✓ {name} in {value['seconds'] / 60:.1f} min", file=sys.stderr, flush=True)
    return results.put(name, value)


# --- the stages -----------------------------------------------------------------------------------------------

def build_index(work: Path) -> dict[str, Any]:
    from amauta.rag.index import IndexConfig, run

    return {"path": str(run(IndexConfig(docs=[str(DOCS)], index=str(work / "index"))))}


def build_dataset(args: argparse.Namespace, work: Path, recipe: str) -> dict[str, Any]:
    from amauta.data.augment import AugmentConfig, run

    options: dict[str, Any] = {"docs": [str(DOCS)], "recipe": recipe.split("-")[0], "model": args.model,
                               "exam": str(EXAM),
                               "from_files": [str(f) for f in HAND_WRITTEN], "out": str(work / "data" / recipe)}
    if recipe == "cpt":
        options["mix"] = str(MIX)
    if recipe.startswith("raft"):
        options["raft_context_chars"] = RAFT_CONTEXT_CHARS
        options["raft_missing"] = "memory" if recipe == "raft-memory" else "abstain"
    folder = run(validate_config(AugmentConfig, options, source="benchmarks/knowledge.py"), quiet=True)
    stats = json.loads((folder / "stats.json").read_text())
    lengths = next(iter(stats["token_lengths"].values()))
    records = stats["totals"]["train"] + stats["totals"]["val"]
    return {"path": str(folder), "records": records, "train_records": stats["totals"]["train"],
            "tokens": stats["training_tokens"], "max_tokens": lengths["max"]}


def max_length_for(args: argparse.Namespace, recipe: str, data: dict[str, Any]) -> int:
    """raft's examples are a prompt with passages and an answer at the end: cutting them drops the answer."""
    if not recipe.startswith("raft"):
        return args.max_length
    return max(args.max_length, min(2048, 64 * math.ceil((data["max_tokens"] + 8) / 64)))


def train_recipe(args: argparse.Namespace, work: Path, recipe: str, seed: int, data: dict[str, Any],
                 curve: bool = False) -> dict[str, Any]:
    """One recipe's run at the token budget; with `curve`, no early stopping and every checkpoint kept."""
    from amauta.train.config import TrainConfig
    from amauta.train.recipe import run

    max_length = max_length_for(args, recipe, data)
    per_record = min(max_length, data["tokens"] / max(1, data["records"]))
    # knowledge-cpu's batch of 8; smaller when 8 long records (raft) would overshoot the budget in a few steps
    batch = 8 if args.tokens >= 4 * 8 * per_record else max(1, round(args.tokens / (4 * per_record)))
    steps = max(2, round(args.tokens / (batch * per_record)))
    options = {"preset": "knowledge-cpu", "model": args.model, "dataset": data["path"], "seed": seed,
               "output_dir": str(work / "train" / f"{recipe}-s{seed}"), "max_steps": steps, "batch_size": batch,
               "max_length": max_length, "dtype": args.dtype, "eval_every": max(steps, 2), "checkpoint_every": max(2, args.dev_every),
               "early_stopping": {"enabled": True, "exam": str(EXAM), "split": "dev",
                                  "every": min(args.dev_every, steps), "patience": 2, "limit": args.dev_limit}}
    if curve:
        options.update(output_dir=str(work / "curve" / f"{recipe}-s{seed}"), checkpoint_every=args.curve_every,
                       keep_checkpoints=steps, early_stopping={"enabled": False})
    folder = run(validate_config(TrainConfig, options, source="benchmarks/knowledge.py"), progress=False)
    summary = json.loads((folder / "summary.json").read_text())
    stopping = summary.get("early_stopping") or {}
    return {"path": str(folder), "batch_size": batch, "max_steps": steps, "steps": summary.get("steps"),
            "tokens": summary.get("tokens_total"), "minutes": round((summary.get("train_seconds") or 0) / 60, 2),
            "dev_acc": stopping.get("best_score"), "best_step": stopping.get("best_step"), "max_length": max_length}


def exam(args: argparse.Namespace, folder: Path, candidates: list[str], *, options_only: bool = False,
         short_answer: bool = False, split: str = "test") -> dict[str, Any]:
    """Every row of one `amauta eval exam` run, by label: the metrics the table needs. Multiple-choice cells
    run without generation; short answers are cells of their own, on the first --short-answer-limit items."""
    from amauta.evaluate.exam import ExamConfig, run

    limit = args.exam_limit
    if short_answer:
        limit = min(limit or args.short_answer_limit, args.short_answer_limit)
    if split != "test":
        limit = None  # dev is small and is what the curve is about
    config = validate_config(ExamConfig, {
        "exam": str(EXAM), "split": split, "model": args.model, "candidates": ",".join(candidates),
        "options_only": options_only, "short_answer": short_answer, "limit": limit,
        "max_context_chars": args.open_context_chars, "max_new_tokens": args.max_new_tokens, "out": str(folder)},
        source="benchmarks/knowledge.py")
    summary = json.loads((run(config, show_progress=False) / "summary.json").read_text())
    keys = ("acc", "acc_qa", "acc_document_only", "acc_worked_example", "abstain_unanswerable",
            "abstain_answerable", "sa_recall", "sa_precision", "sa_abstain_unanswerable", "sa_abstain_answerable")
    return {"rows": {m["label"]: {"mode": m["mode"], "n": m["n"], **{k: m["metrics"].get(k) for k in keys}}
                     for m in summary["models"]}, "path": str(folder), "limit": limit,
            "max_context_chars": args.open_context_chars}


def forgetting(args: argparse.Namespace, work: Path, run_path: str, name: str) -> dict[str, Any]:
    """Belebele-es cloze paired with base, and XQuAD-es bits per byte, base vs the run."""
    from amauta.evaluate.belebele import BelebeleConfig
    from amauta.evaluate.belebele import run as belebele
    from amauta.evaluate.perplexity import PerplexityConfig
    from amauta.evaluate.perplexity import run as perplexity

    result: dict[str, Any] = {}
    if BELEBELE.is_file():
        config = validate_config(BelebeleConfig, {
            "model": args.model, "compare": f"base,{run_path}", "data": str(BELEBELE), "formulation": "cloze",
            "limit": args.belebele_limit, "out": str(work / "forgetting" / f"belebele-{name}")}, source="knowledge")
        summary = json.loads((belebele(config, show_progress=False) / "summary.json").read_text())
        accs = [m["metrics"]["acc"] for m in summary["models"]]
        comparison = (summary.get("comparisons") or [{}])[0]
        result.update(belebele_base=accs[0], belebele_run=accs[1], belebele_n=summary.get("n_items"),
                      belebele_delta=comparison.get("delta"), belebele_delta_ci=comparison.get("delta_ci"))
    if XQUAD.is_file():
        config = validate_config(PerplexityConfig, {
            "model": args.model, "compare": f"base,{run_path}", "data": str(XQUAD), "limit": args.xquad_limit,
            "out": str(work / "forgetting" / f"xquad-{name}")}, source="knowledge")
        summary = json.loads((perplexity(config, show_progress=False) / "summary.json").read_text())
        bpb = [m["metrics"]["bits_per_byte"] for m in summary["models"]]
        result.update(xquad_bpb_base=bpb[0], xquad_bpb_run=bpb[1], xquad_bpb_change=bpb[1] / bpb[0] - 1,
                      xquad_texts=summary.get("n_items"))
    return result


# --- the measurement ------------------------------------------------------------------------------------------

def measure(args: argparse.Namespace) -> dict[str, Any]:
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    results = Results(Path(args.out), settings_of(args))
    started = time.time()
    index = cell(results, "index", lambda: build_index(work), started)["path"]
    data = {r: cell(results, f"data:{r}", lambda r=r: build_dataset(args, work, r), started) for r in args.recipes}
    # Closed-book rows first, open-book rows (long prompts: the slowest part on a CPU) next and short answers
    # (generation) last, so that a run cut short still has a whole closed-book multiple-choice table.
    cell(results, "exam:base", lambda: exam(args, work / "exam" / "closed-base", ["base"], options_only=True), started)
    bests = {seed: measure_seed(args, work, results, started, seed, data) for seed in args.seeds}
    open_rows = [f"rag=rag:{index}"] + [f"best-s{seed}+rag={path}+rag:{index}" for seed, path in bests.items()]
    cell(results, "exam:open", lambda: exam(args, work / "exam" / "open", open_rows), started)
    for seed in args.seeds:
        for recipe in args.open_recipes:
            path = results.get(f"train:{recipe}:s{seed}")["path"]
            cell(results, f"exam:open:{recipe}:s{seed}", lambda r=recipe, p=path, s=seed: exam(
                args, work / "exam" / f"open-{r}-s{s}", [f"{r}+rag={p}+rag:{index}"]), started)
    if not args.no_short_answer:
        closed_rows = ["base"] + [f"{recipe}-s{seed}={results.get(f'train:{recipe}:s{seed}')['path']}"
                                  for seed in args.seeds for recipe in args.recipes]
        for row in closed_rows + open_rows:
            label = row.split("=")[0]
            cell(results, f"short:{label}", lambda row=row, label=label: exam(
                args, work / "short" / label, [row], short_answer=True), started)
    return results.data


def measure_seed(args: argparse.Namespace, work: Path, results: Results, started: float, seed: int,
                 data: dict[str, dict[str, Any]]) -> str:
    """One seed: every recipe trained and examined closed-book (a cell each, so recipes can be added to a
    finished run), the best on dev chosen, forgetting of the best; returns the best run's folder."""
    runs = {}
    for recipe in args.recipes:
        runs[recipe] = cell(results, f"train:{recipe}:s{seed}",
                            lambda r=recipe: train_recipe(args, work, r, seed, data[r]), started)
        path = runs[recipe]["path"]
        cell(results, f"exam:{recipe}:s{seed}",
             lambda r=recipe, p=path: exam(args, work / "exam" / f"closed-{r}-s{seed}", [f"{r}={p}"]), started)
    best = max(runs, key=lambda r: runs[r]["dev_acc"] if runs[r]["dev_acc"] is not None else -1)
    cell(results, f"forgetting:{best}:s{seed}", lambda: {**forgetting(args, work, runs[best]["path"],
                                                                      f"{best}-s{seed}"), "recipe": best}, started)
    return runs[best]["path"]


def measure_curve(args: argparse.Namespace) -> dict[str, Any]:
    """Accuracy vs training tokens for one recipe: every kept checkpoint (and the base, at 0 tokens) scored on
    the whole dev split, closed-book multiple choice. The test split is not read."""
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    results = Results(Path(args.out), {**settings_of(args), "curve": args.curve, "curve_every": args.curve_every})
    started, recipe, seed = time.time(), args.curve, args.seeds[0]
    data = cell(results, f"data:{recipe}", lambda: build_dataset(args, work, recipe), started)
    run = cell(results, f"train:{recipe}:s{seed}",
               lambda: train_recipe(args, work, recipe, seed, data, curve=True), started)
    tokens_at = {0: 0}
    for line in (Path(run["path"]) / "log.jsonl").read_text().splitlines():
        entry = json.loads(line)
        if "tokens_total" in entry:
            tokens_at[entry["step"]] = entry["tokens_total"]
    points = [(0, "base")] + sorted(
        (int(folder.name.split("-")[1]), str(folder / "adapter"))
        for folder in (Path(run["path"]) / "checkpoints").glob("step-*"))
    for step, candidate in points:
        name = f"curve:{recipe}:s{seed}:step-{step}"
        label = "base" if step == 0 else f"step-{step}"
        spec = "base" if step == 0 else f"{label}={candidate}"
        cell(results, name, lambda spec=spec, label=label, step=step: {
            **exam(args, work / "curve-exam" / f"{recipe}-s{seed}-{label}", [spec], split="dev"),
            "step": step, "tokens": tokens_at.get(step)}, started)
    return results.data


def print_curve(data: dict[str, Any], recipe: str, seed: int) -> list[dict[str, Any]]:
    """The curve as a table (and the rows for the JSON line)."""
    points = sorted((v for k, v in data["cells"].items() if k.startswith(f"curve:{recipe}:s{seed}:")),
                    key=lambda v: v["step"])
    rows = []
    for point in points:
        metrics = next(iter(point["rows"].values()))
        rows.append({"step": point["step"], "tokens": point["tokens"],
                     **{k: metrics.get(k) for k in ("acc_qa", "acc_document_only", "acc", "abstain_unanswerable",
                                                    "abstain_answerable")}})
    print(f"{recipe}, seed {seed}: dev split, closed-book multiple choice (%)")
    print("step  tokens  QA facts  doc-only  all   abstain unans.  abstain ans.")
    for r in rows:
        print(f"{r['step']:<5} {r['tokens'] or 0:<7} {100 * (r['acc_qa'] or 0):<9.1f} "
              f"{100 * (r['acc_document_only'] or 0):<9.1f} {100 * (r['acc'] or 0):<5.1f} "
              f"{100 * (r['abstain_unanswerable'] or 0):<15.1f} {100 * (r['abstain_answerable'] or 0):.1f}")
    return rows


# --- the table ------------------------------------------------------------------------------------------------

COLUMNS = [("acc_qa", "MC QA facts"), ("acc_document_only", "MC doc-only"), ("acc", "MC all"),
           ("open_acc", "MC open-book"), ("sa_recall", "SA recall"), ("sa_precision", "SA precision"),
           ("abstain_unanswerable", "abstain unans."), ("abstain_answerable", "abstain ans."),
           ("belebele_delta", "Belebele Δ"), ("xquad_bpb_change", "XQuAD bpb Δ"), ("tokens", "train tokens"),
           ("minutes", "train min")]


SHORT = ("sa_recall", "sa_precision")


def best_recipe(cells: dict[str, Any], seed: int, recipes: list[str]) -> str | None:
    """The recipe with the highest dev score of a seed (ties: the first in --recipes order)."""
    scores = {r: (cells.get(f"train:{r}:s{seed}") or {}).get("dev_acc") for r in recipes}
    scored = [r for r in recipes if scores[r] is not None]
    return max(scored, key=lambda r: scores[r]) if scored else None


def table_rows(data: dict[str, Any], seeds: list[int], recipes: list[str],
               open_recipes: list[str] = ()) -> dict[str, dict[str, list[float]]]:
    """Row name → column → the values over seeds (one value for rows without training)."""
    cells = data["cells"]
    rows: dict[str, dict[str, list[float]]] = {}

    def add(row: str, key: str, value: Any) -> None:
        if isinstance(value, (int, float)):
            rows.setdefault(row, {}).setdefault(key, []).append(float(value))

    def short(label: str) -> dict[str, Any]:
        return ((cells.get(f"short:{label}") or {}).get("rows") or {}).get(label) or {}

    base = {**((cells.get("exam:base") or {}).get("rows") or {}), **((cells.get("exam:open") or {}).get("rows") or {})}
    for label, row in (("options-only", "base+options"), ("base", "base"), ("rag", "rag")):
        metrics = base.get(row) or {}
        rows.setdefault(label, {})
        opened = metrics.get("mode") == "open"
        for key, _ in COLUMNS:
            if key == "open_acc" or key in SHORT or (opened and key in ("acc_qa", "acc_document_only")):
                continue  # the fact-group columns are closed-book; short answers come from their own cells
            add(label, "open_acc" if opened and key == "acc" else key, metrics.get(key))
        if label != "options-only":
            for key in SHORT:
                add(label, key, short(row).get(key))
    for seed in seeds:
        for recipe in recipes:
            train = cells.get(f"train:{recipe}:s{seed}") or {}
            for key in ("tokens", "minutes"):
                add(recipe, key, train.get(key))
            metrics = ((cells.get(f"exam:{recipe}:s{seed}") or {}).get("rows") or {}).get(recipe) or {}
            for key, _ in COLUMNS:
                add(recipe, key, metrics.get(key))
            for key in SHORT:
                add(recipe, key, short(f"{recipe}-s{seed}").get(key))
            forget = cells.get(f"forgetting:{recipe}:s{seed}") or {}
            add(recipe, "belebele_delta", forget.get("belebele_delta"))
            add(recipe, "xquad_bpb_change", forget.get("xquad_bpb_change"))
        best = base.get(f"best-s{seed}+rag") or {}
        add("best+rag", "open_acc", best.get("acc"))
        for key in ("abstain_unanswerable", "abstain_answerable"):
            add("best+rag", key, best.get(key))
        for key in SHORT:
            add("best+rag", key, short(f"best-s{seed}+rag").get(key))
        for recipe in open_recipes:
            metrics = ((cells.get(f"exam:open:{recipe}:s{seed}") or {}).get("rows") or {}).get(f"{recipe}+rag") or {}
            add(f"{recipe}+rag", "open_acc", metrics.get("acc"))
            for key in ("abstain_unanswerable", "abstain_answerable"):
                add(f"{recipe}+rag", key, metrics.get(key))
    return rows


def summarise(values: list[float]) -> dict[str, float]:
    """Mean and spread (half the range) over seeds."""
    return {"mean": statistics.fmean(values), "spread": (max(values) - min(values)) / 2, "n": len(values)}


def fmt(key: str, values: list[float] | None) -> str:
    if not values:
        return "–"
    s = summarise(values)
    if key in ("tokens",):
        text = f"{s['mean']:.0f}"
    elif key == "minutes":
        text = f"{s['mean']:.1f}"
    else:
        text = f"{100 * s['mean']:+.1f}" if key in ("belebele_delta", "xquad_bpb_change") else f"{100 * s['mean']:.1f}"
    return text + (f" ±{100 * s['spread'] if key not in ('tokens', 'minutes') else s['spread']:.1f}"
                   if s["n"] > 1 else "")


def print_table(data: dict[str, Any], seeds: list[int], recipes: list[str],
                open_recipes: list[str] = ()) -> dict[str, Any]:
    rows = table_rows(data, seeds, recipes, open_recipes)
    order = ["options-only", "base", *recipes, "rag", "best+rag", *[f"{r}+rag" for r in open_recipes]]
    header = ["row"] + [title for _, title in COLUMNS]
    lines = [header] + [[name] + [fmt(key, rows.get(name, {}).get(key)) for key, _ in COLUMNS] for name in order]
    widths = [max(len(line[i]) for line in lines) for i in range(len(header))]
    for line in lines:
        print("  ".join(text.ljust(width) for text, width in zip(line, widths, strict=True)))
    bests = [best_recipe(data["cells"], seed, recipes) for seed in seeds]
    print(f"best recipe by dev MC accuracy, per seed: {bests}; % except tokens and minutes; ± = half the range "
          f"over {len(seeds)} seeds")
    return {name: {key: summarise(v) for key, v in rows.get(name, {}).items()} for name in order}


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    if args.curve:
        data = measure_curve(args)
        rows = print_curve(data, args.curve, args.seeds[0])
        print(json.dumps({"benchmark": "knowledge-curve", "recipe": args.curve, "settings": data["settings"],
                          "seed": args.seeds[0], "dev": rows}, ensure_ascii=False))
        return
    data = measure(args)
    table = print_table(data, args.seeds, args.recipes, args.open_recipes)
    print(json.dumps({"benchmark": "knowledge", "settings": data["settings"], "seeds": args.seeds,
                      "table": table}, ensure_ascii=False))


if __name__ == "__main__":
    try:
        main()
    except AmautaError as error:
        print(f"error: {error}", file=sys.stderr)
        sys.exit(2)
