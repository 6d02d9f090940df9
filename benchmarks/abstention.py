"""Saying the documents don't say: how often RAG abstains on unanswerable and on answerable questions.

Two sets, each holding questions the documents answer and questions on the same topics that they do not:

- the repository's exam, `examples/exams/leyes.jsonl` over `examples/docs` (its `answerable` field): the
  `dev` split calibrated the grounding check, the `test` split reports it;
- SQuAD-es v2 (`../shared/data/squad-es/dev-v2.0-es_small.json`, machine-translated, unanswerable
  questions written against the same paragraphs): two samples of 300 questions (half unanswerable) from
  disjoint articles, `calibration` and `report`, each over an index of the paragraphs of its articles.

For each, the share of answerable and of unanswerable questions that each stage abstains on:

    threshold  retrieval's cosine threshold only (what `amauta rag ask` did before the grounding check)
    +topic     ... and the best passage holds `min_overlap` of the question's content words
    +type      ... and a passage states a value of the kind the question asks for
    +type      is the whole pre-model gate as shipped; +subject (an opt-in rule, off by default) adds:
               one of those passages holds `min_value_overlap` of the question's words that the documents
               use (the value is about what is asked), at the level calibrated on dev data
    model      the embedded SmolLM2 answers without the check (abstaining when it says it cannot)
    model+all  the whole path: the gate, the model, and values no cited passage gives turned into "the
               documents do not say" (for the exam's answerable items also: correct, wrong)

The model stages run on the reporting splits only (exam `test`, `--exam-model-limit` questions of each
kind; SQuAD `report`, `--squad-model-limit`), spread evenly: they generate once per question (greedy, at
most 64 new tokens; the prompt is the same with or without the check, so is the answer) and derive both
rows from it. `--sweep` prints the gate at several `min_overlap` and `min_value_overlap` values on the
calibration splits (how the defaults were chosen; without it the SQuAD calibration sample is skipped). Prints progress on stderr, a
table and one JSON line; `--out FILE` also writes the JSON atomically.

    .venv/bin/python benchmarks/abstention.py                      # exam dev+test, SQuAD samples, SmolLM2
    .venv/bin/python benchmarks/abstention.py --model none         # the pre-model gate only (minutes)
    .venv/bin/python benchmarks/abstention.py --sweep --model none
    .venv/bin/python benchmarks/abstention.py --squad-model-limit 100 --threads 1   # busy cores: 1 thread decodes faster
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from amauta.core.files import atomic_write_json
from amauta.data.answer_match import is_abstention, score_answer
from amauta.data.exam_items import read_exam
from amauta.rag.answer import RagAnswerer
from amauta.rag.grounding import CALIBRATED_MIN_VALUE_OVERLAP, DEFAULT_MIN_OVERLAP, Grounding
from amauta.rag.index import IndexConfig, build, open_index

ROOT = Path(__file__).resolve().parents[1]
EXAM = ROOT / "examples" / "exams" / "leyes.jsonl"
DOCS = ROOT / "examples" / "docs"
SQUAD = ROOT.parent / "shared" / "data" / "squad-es" / "dev-v2.0-es_small.json"
MAX_NEW_TOKENS = 64  # answers here are a value or a sentence; SmolLM2 repeats itself past that
SWEEP = (0.0, 0.1, 0.15, 0.2, 0.25, 0.3, 0.35, 0.4)  # min_overlap
VALUE_SWEEP = (0.0, 0.4, 0.5, 0.55, 0.6, 0.65, 0.7, 0.8)  # min_value_overlap, at the default min_overlap


@dataclass
class Question:
    """One question of a set: its text, whether the documents answer it, and what scores an answer."""

    text: str
    answerable: bool
    key_facts: list[str] = field(default_factory=list)
    distractor_facts: list[str] = field(default_factory=list)


@dataclass
class Outcome:
    """What each stage did with one question."""

    answerable: bool
    stages: dict[str, bool] = field(default_factory=dict)  # stage -> abstained
    signals: dict[str, float] = field(default_factory=dict)  # candidate signals of "about the question"
    correct: bool | None = None  # the whole path's answer, for exam items with key facts


def exam_questions(split: str) -> list[Question]:
    return [Question(i.question, i.answerable, list(i.key_facts), list(i.distractor_facts))
            for i in read_exam(EXAM, split)]


def _check_out(out: Path | None) -> None:
    """Refuse, before any work, to replace a file this benchmark did not write."""
    if out is None or not out.exists():
        return
    try:
        ours = json.loads(out.read_text(encoding="utf-8")).get("benchmark") == "abstention"
    except (OSError, ValueError, AttributeError):
        ours = False
    if not ours:
        sys.exit(f"error: {out} exists and is not an abstention benchmark result; choose another --out")


def squad_samples(path: Path, per_sample: int, articles: int, seed: int) -> dict[str, tuple[list[str], list[Question]]]:
    """Two samples from disjoint articles: {name: (paragraphs of its articles, questions)}."""
    data = json.loads(path.read_text(encoding="utf-8"))["data"]
    order = random.Random(seed).sample(range(len(data)), len(data))
    out = {}
    for name, chosen in (("calibration", order[:articles]), ("report", order[articles:2 * articles])):
        paragraphs, pools = [], {True: [], False: []}
        for a in chosen:
            for p in data[a]["paragraphs"]:
                paragraphs.append(p["context"])
                for qa in p["qas"]:
                    pools[not qa.get("is_impossible", False)].append(qa["question"])
        rng = random.Random(seed + 1)
        half = per_sample // 2
        if min(len(pools[True]), len(pools[False])) < half:
            sys.exit(f"error: {articles} articles hold too few questions for {per_sample}; raise --squad-articles")
        questions = [Question(q, ok) for ok in (True, False) for q in rng.sample(pools[ok], half)]
        out[name] = (paragraphs, questions)
    return out


def build_index(folder: Path, docs: list[str] | None = None, paragraphs: list[str] | None = None) -> Path:
    """An index as `amauta rag index` builds it, of `docs`, or of `paragraphs` written one per text file."""
    if paragraphs is not None:
        source = folder / "paragraphs"
        source.mkdir(parents=True)
        for n, text in enumerate(paragraphs):
            (source / f"{n:04d}.txt").write_text(text + "\n", encoding="utf-8")
        docs = [str(source)]
    index = folder / "index"
    build(IndexConfig(docs=docs, index=str(index)), progress=False)
    return index


def run_set(label: str, index: Path, questions: list[Question], min_overlaps: tuple[float, ...],
            value_overlaps: tuple[float, ...], llm, model_limit: int | None) -> list[Outcome]:
    """Every stage on every question (the model on `model_limit` of each kind, spread evenly); progress on stderr.

    +topic and +type at each of `min_overlaps`; +subject (the whole gate) at each of `value_overlaps`, with
    the default `min_overlap`.
    """
    opened = open_index(str(index))
    plain = RagAnswerer(opened, grounding=Grounding.off())
    checked = RagAnswerer(opened)  # the defaults the user gets
    gates = {f"+topic@{t:g}": Grounding(min_overlap=t, answer_type=False, min_value_overlap=0) for t in min_overlaps}
    gates |= {f"+type@{t:g}": Grounding(min_overlap=t, min_value_overlap=0) for t in min_overlaps}
    gates |= {f"+subject@{v:g}": Grounding(min_value_overlap=v) for v in value_overlaps}
    with_model = _spread(questions, model_limit) if llm is not None else set()
    outcomes = []
    start = time.perf_counter()
    for n, q in enumerate(questions):
        if n % (5 if with_model else 25) == 0:  # the model takes seconds a question; the gate alone, milliseconds
            print(f"  {label}: {n}/{len(questions)} questions, {sum(i < n for i in with_model)}/{len(with_model)} "
                  f"with the model ({time.perf_counter() - start:.0f} s)", file=sys.stderr, flush=True)
        hits = plain.retrieve(q.text)
        out = Outcome(q.answerable)
        out.stages["threshold"] = not hits
        out.signals = _signals(q.text, plain)
        for name, gate in gates.items():
            out.stages[name] = not hits or gate.check_question(q.text, hits, plain.index.bm25) is not None
        if n in with_model:
            _model_stages(q, hits, plain, checked, llm, out)
        outcomes.append(out)
    return outcomes


def _signals(question: str, rag: RagAnswerer) -> dict[str, float]:
    """Continuous signals that a question is about the retrieved passages (higher: more about them).

    cosine: the best passage's cosine; margin: best minus second cosine; bm25: the best BM25 score over its
    ceiling (sum of the query words' IDF x (k1 + 1)); overlap: the best IDF-weighted share of the question's
    content words a passage holds (what `min_overlap` thresholds). Passages as retrieved, before the
    threshold (so questions the threshold refuses still have a value).
    """
    hits = rag.retriever.search(question, rag.top_k, min_score=None)
    if not hits:
        return {"cosine": 0.0, "margin": 0.0, "bm25": 0.0, "overlap": 0.0}
    cosines = sorted((h.dense_score for h in hits), reverse=True) + [0.0]
    bm25 = rag.index.bm25
    tokens = set(bm25._tokenize([question], return_ids=False)[0]) - {""}
    ceiling = sum(bm25._weights_and_holders(tokens)[0].values()) * (bm25.retriever.k1 + 1) if tokens else 1.0
    return {"cosine": cosines[0], "margin": cosines[0] - cosines[1],
            "bm25": max(h.bm25_score for h in hits) / ceiling if ceiling else 0.0,
            "overlap": max(bm25.coverage(question, [h.id for h in hits]).values())}


def auroc(outcomes: list[Outcome], signal: str) -> float:
    """How well `signal` ranks answerable above unanswerable questions (0.5: not at all; 1: perfectly)."""
    pos = [o.signals[signal] for o in outcomes if o.answerable]
    neg = [o.signals[signal] for o in outcomes if not o.answerable]
    if not pos or not neg:
        return float("nan")
    wins = sum((p > n) + 0.5 * (p == n) for p in pos for n in neg)
    return wins / (len(pos) * len(neg))


def _spread(questions: list[Question], limit: int | None) -> set[int]:
    """Indices of up to `limit` answerable and `limit` unanswerable questions, evenly spread."""
    chosen: set[int] = set()
    for kind in (True, False):
        idx = [i for i, q in enumerate(questions) if q.answerable == kind]
        step = max(1, len(idx) / limit) if limit else 1
        chosen |= {idx[int(k * step)] for k in range(min(len(idx), limit or len(idx)))}
    return chosen


def _model_stages(q: Question, hits, plain: RagAnswerer, checked: RagAnswerer, llm, out: Outcome) -> None:
    if not hits:
        out.stages["model"] = out.stages["model+all"] = True
        return
    loaded = getattr(llm, "loaded", None)
    messages, given = plain.build_messages(q.text, loaded=loaded, max_new_tokens=MAX_NEW_TOKENS, hits=hits)
    text = llm.complete(messages, max_tokens=MAX_NEW_TOKENS, temperature=0.0).strip()
    out.stages["model"] = is_abstention(text)
    if checked.check_question(q.text, hits) is not None:
        final = None
    else:
        reply = checked.check_answer(q.text, text, given)
        final = reply.text if reply.found else None
    out.stages["model+all"] = final is None or is_abstention(final)
    if q.key_facts and final is not None and not out.stages["model+all"]:
        out.correct = score_answer(final, q.key_facts, q.distractor_facts, question=q.text).correct
    elif q.key_facts:
        out.correct = False


def summarize(set_name: str, outcomes: list[Outcome]) -> list[dict]:
    rows = [{"set": set_name, "stage": "signals", "auroc": {s: auroc(outcomes, s) for s in outcomes[0].signals}}]
    stages = list(dict.fromkeys(s for o in outcomes for s in o.stages))
    for stage in stages:
        row = {"set": set_name, "stage": stage}
        for kind, key in ((True, "answerable"), (False, "unanswerable")):
            seen = [o for o in outcomes if o.answerable == kind and stage in o.stages]
            row[f"{key}_n"] = len(seen)
            row[f"{key}_abstained"] = sum(o.stages[stage] for o in seen) / len(seen) if seen else None
        if stage == "model+all":
            graded = [o for o in outcomes if o.answerable and o.correct is not None and stage in o.stages]
            if graded:
                row["answerable_correct"] = sum(o.correct for o in graded) / len(graded)
                row["answerable_wrong"] = sum(not o.correct and not o.stages[stage] for o in graded) / len(graded)
        rows.append(row)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="smollm2-135m-instruct", help="local model for the whole path, or 'none'")
    parser.add_argument("--squad-per-sample", type=int, default=300, help="questions per SQuAD sample (half unanswerable)")
    parser.add_argument("--squad-articles", type=int, default=4, help="articles per SQuAD sample")
    parser.add_argument("--threads", type=int, default=None, help="torch threads for the model (default: torch's)")
    parser.add_argument("--squad-model-limit", type=int, default=50,
                        help="questions of each kind per SQuAD sample given to the model (0: all)")
    parser.add_argument("--exam-model-limit", type=int, default=0,
                        help="exam test questions of each kind given to the model (0: all)")
    parser.add_argument("--sets", default="exam,squad", help="comma list of: exam, squad")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--sweep", action="store_true", help="the gate at several min_overlap values (calibration)")
    parser.add_argument("--squad", type=Path, default=SQUAD, help="SQuAD-es v2 JSON (default ../shared/data/squad-es)")
    parser.add_argument("--out", type=Path, default=None,
                        help="also write the JSON result to this file (atomically; refuses one it did not write)")
    args = parser.parse_args()
    _check_out(args.out)

    llm = None
    if args.model != "none":
        import torch

        from amauta.llm import LocalLLM
        from amauta.models.load import load_model

        if args.threads:
            torch.set_num_threads(args.threads)
        llm = LocalLLM(load_model(args.model, dtype="float32"))
    default, value_default = (DEFAULT_MIN_OVERLAP,), (CALIBRATED_MIN_VALUE_OVERLAP,)
    rows: list[dict] = []
    start = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        if "exam" in args.sets.split(","):
            index = build_index(Path(tmp) / "exam", docs=[str(DOCS)])
            for split in ("dev", "test"):
                calibrating = args.sweep and split == "dev"
                sweeps = (SWEEP, VALUE_SWEEP) if calibrating else (default, value_default)
                model = llm if split == "test" else None
                rows += summarize(f"exam-{split}", run_set(f"exam {split}", index, exam_questions(split), *sweeps,
                                                           model, args.exam_model_limit or None))
                print(f"exam {split} done ({time.perf_counter() - start:.0f} s)", file=sys.stderr)
        if "squad" in args.sets.split(","):
            if not args.squad.is_file():
                sys.exit(f"error: {args.squad} is missing (SQuAD-es v2 dev JSON; see ../shared/data/squad-es/SOURCE.txt)")
            samples = squad_samples(args.squad, args.squad_per_sample, args.squad_articles, args.seed)
            for name, (paragraphs, questions) in samples.items():
                if name == "calibration" and not args.sweep:
                    continue  # only the sweep reads it (an index of its paragraphs takes minutes)
                index = build_index(Path(tmp) / f"squad-{name}", paragraphs=paragraphs)
                calibrating = args.sweep and name == "calibration"
                sweeps = (SWEEP, VALUE_SWEEP) if calibrating else (default, value_default)
                rows += summarize(f"squad-{name} ({len(paragraphs)} paragraphs)",
                                  run_set(f"squad {name}", index, questions, *sweeps,
                                          llm if name == "report" else None, args.squad_model_limit or None))
                print(f"squad {name} done ({time.perf_counter() - start:.0f} s)", file=sys.stderr)

    print(f"\n{'set':<34} {'stage':<12} {'n ans':>5} {'abst ans':>9} {'n unans':>7} {'abst unans':>10} "
          f"{'correct':>8} {'wrong':>6}")
    def pct(row: dict, key: str) -> str:
        return f"{row[key]:.1%}" if row.get(key) is not None else "-"

    for r in rows:
        if r["stage"] == "signals":
            print(f"{r['set']:<34} {'AUROC':<12} " + "  ".join(f"{k} {v:.3f}" for k, v in r["auroc"].items()))
            continue
        print(f"{r['set']:<34} {r['stage']:<12} {r['answerable_n']:>5} {pct(r, 'answerable_abstained'):>9} "
              f"{r['unanswerable_n']:>7} {pct(r, 'unanswerable_abstained'):>10} {pct(r, 'answerable_correct'):>8} "
              f"{pct(r, 'answerable_wrong'):>6}")
    targets = {}
    for r in rows:
        if r["set"] == "exam-test" and r.get("stage") in (f"+type@{DEFAULT_MIN_OVERLAP:g}",
                                                          f"+subject@{CALIBRATED_MIN_VALUE_OVERLAP:g}", "model+all"):
            targets[f"exam-test:{r['stage']}:unanswerable_abstained>=0.8"] = r["unanswerable_abstained"] >= 0.8
            targets[f"exam-test:{r['stage']}:answerable_abstained<=0.1"] = r["answerable_abstained"] <= 0.1
    result = {"benchmark": "abstention", "model": args.model, "min_overlap": DEFAULT_MIN_OVERLAP,
              "calibrated_min_value_overlap": CALIBRATED_MIN_VALUE_OVERLAP,
              "argv": sys.argv[1:], "seconds": round(time.perf_counter() - start), "rows": rows, "targets": targets}
    print(json.dumps(result))
    if args.out:
        atomic_write_json(args.out, result)
        print(f"written: {args.out}", file=sys.stderr)


if __name__ == "__main__":
    main()
