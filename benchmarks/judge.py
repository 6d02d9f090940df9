"""Judging throughput: concurrent requests to an endpoint judge against one request at a time.

    .venv/bin/python benchmarks/judge.py [--answers 60] [--latency 0.25] [--workers 1,4,8]

A GPT-4-class judge behind an API answers in seconds, and a full thesis-style run asks it about
(50 + 30 prompts' turns) × 3 attempts × every candidate — hundreds of verdicts. This starts Amauta's fake
OpenAI-compatible server with a fixed per-request latency (standing in for the API's), judges the same
answers with `judge_answers` at each worker count into a fresh cache, and prints verdicts/s and the
speed-up over the sequential baseline, plus whether every verdict matches the baseline's. The answers are
the `law-ec` questions with their own reference answers. Prints a table and one JSON line.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import tempfile
import time
from pathlib import Path


def verdict(messages) -> str:
    """A deterministic verdict derived from the answer, so runs can be compared verdict by verdict."""
    answer = messages[-1]["content"].split("calificar")[-1]
    score = 1 + len(re.findall(r"\d", answer)) % 5
    return json.dumps({"exactitud": score, "relevancia": 5, "coherencia": 4, "contexto": 4,
                       "justificacion": "Evaluación simulada."})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--answers", type=int, default=60, help="answers to judge per configuration")
    parser.add_argument("--latency", type=float, default=0.25, help="seconds the fake endpoint takes per verdict")
    parser.add_argument("--workers", default="1,4,8", help="worker counts to compare (the first is the baseline)")
    args = parser.parse_args()

    from rich.console import Console
    from rich.table import Table

    from amauta.judge.candidates import Answer, load_prompt_set
    from amauta.judge.judge import judge_answers
    from amauta.llm.client import OpenAICompatibleLLM
    from amauta.llm.fake_server import FakeOpenAIServer

    pset = load_prompt_set("law-ec")
    answers = []
    for i in range(args.answers):
        item = pset.items[i % len(pset.items)]
        answers.append(Answer("base", item.id, 0, i // len(pset.items), item.category, item.turns[0],
                              f"{item.references[0]} (variante {i})", reference=item.references[0]))
    rows, baseline = [], None
    with FakeOpenAIServer(verdict, delay=args.latency) as url:
        for workers in (int(w) for w in args.workers.split(",")):
            with tempfile.TemporaryDirectory() as tmp:
                llm = OpenAICompatibleLLM(url, "juez", max_retries=0)
                started = time.perf_counter()
                verdicts = judge_answers(llm, answers, Path(tmp) / "judgments.jsonl", workers=workers,
                                         show_progress=False)
                seconds = time.perf_counter() - started
            scores = {k: v["scores"] for k, v in verdicts.items()}
            if baseline is None:
                baseline = (seconds, scores)
            rows.append({"workers": workers, "answers": len(verdicts), "seconds": round(seconds, 2),
                         "verdicts_per_s": round(len(verdicts) / seconds, 2),
                         "speedup": round(baseline[0] / seconds, 2), "same_verdicts": scores == baseline[1]})
    table = Table(title=f"Judging {args.answers} answers, endpoint latency {args.latency:.2f} s/verdict "
                        "(baseline: 1 worker)")
    for column in ("workers", "seconds", "verdicts/s", "speed-up", "same verdicts"):
        table.add_column(column, justify="right")
    for row in rows:
        table.add_row(str(row["workers"]), f"{row['seconds']:.2f}", f"{row['verdicts_per_s']:.1f}",
                      f"{row['speedup']:.2f}×", "yes" if row["same_verdicts"] else "NO")
    Console().print(table)
    print(json.dumps({"benchmark": "judge", "latency_s": args.latency, "answers": args.answers, "runs": rows}))
    sys.exit(0 if all(r["same_verdicts"] for r in rows) else 1)


if __name__ == "__main__":
    main()
