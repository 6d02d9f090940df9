"""Evaluation in float32 vs bfloat16: speed, and how much a score depends on its batch-mates.

    .venv/bin/python benchmarks/eval_dtype.py [--model smollm2-135m-instruct] [--limit 16] [--batch-sizes 8,3]

Scores the same Belebele items (cloze, zero-shot, Amauta's packed scorer) in each dtype with each batch
size, and prints per dtype: items/s at each batch size, the largest difference of an option's
log-probability between two batch sizes (what a resumed run, which regroups the items left, would see),
and how many predictions flip; then the largest bf16-vs-fp32 difference. Timings on a shared CPU are
noisy; compare within one run.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared" / "data" / "belebele-es" / "dev.jsonl"
SAMPLE = REPO / "examples" / "data" / "belebele_sample.jsonl"


def score_all(loaded, items: list[dict], batch_size: int) -> tuple[dict[str, dict], float]:
    """Per-item rows by id, and the seconds it took."""
    from amauta.evaluate.belebele import score

    started = time.perf_counter()
    result = score(loaded, items, formulation="cloze", batch_size=batch_size)
    return {row["item_id"]: row for row in result["items"]}, time.perf_counter() - started


def largest_gap(a: dict[str, dict], b: dict[str, dict]) -> tuple[float, int]:
    """(max |Δ log-prob| over every option of every item, number of items whose prediction differs)."""
    gap = max(abs(x - y) for i in a for x, y in zip(a[i]["logprobs"], b[i]["logprobs"], strict=True))
    return gap, sum(a[i]["pred"] != b[i]["pred"] for i in a)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="smollm2-135m-instruct", help="Registry name or folder.")
    parser.add_argument("--data", default=str(SHARED if SHARED.is_file() else SAMPLE), help="Belebele items.")
    parser.add_argument("--limit", type=int, default=16, help="Items to score.")
    parser.add_argument("--batch-sizes", default="8,3", help="Two or more batch sizes, comma separated.")
    parser.add_argument("--dtypes", default="float32,bfloat16", help="Comma list of dtypes.")
    args = parser.parse_args()
    import torch

    from amauta.evaluate.belebele import load_items
    from amauta.models.load import load_model

    items = load_items(args.data)[: args.limit]
    sizes = [int(s) for s in args.batch_sizes.split(",")]
    record: dict = {"bench": "eval_dtype", "model": args.model, "items": len(items), "threads": torch.get_num_threads(),
                    "data": Path(args.data).name}
    by_dtype = {}
    print("dtype | " + " | ".join(f"items/s b{s}" for s in sizes) + " | max |Δ logp| across batchings | flips")
    for dtype in args.dtypes.split(","):
        loaded = load_model(args.model, dtype=dtype, device="cpu")
        score_all(loaded, items[:2], 2)  # warm-up: first-call allocations and kernel selection
        runs = {size: score_all(loaded, items, size) for size in sizes}
        gap, flips = max(largest_gap(runs[sizes[0]][0], runs[s][0]) for s in sizes[1:])
        rates = {size: len(items) / seconds for size, (_, seconds) in runs.items()}
        by_dtype[dtype] = runs[sizes[0]][0]
        record[dtype] = {"items_per_s": rates, "max_abs_logp_diff_across_batch_sizes": gap, "pred_flips": flips}
        print(f"{dtype} | " + " | ".join(f"{rates[s]:.2f}" for s in sizes) + f" | {gap:.2g} | {flips}/{len(items)}")
        del loaded
    if {"float32", "bfloat16"} <= set(by_dtype):
        gap, flips = largest_gap(by_dtype["float32"], by_dtype["bfloat16"])
        record["bf16_vs_fp32"] = {"max_abs_logp_diff": gap, "pred_flips": flips}
        print(f"bf16 vs fp32 (batch {sizes[0]}): max |Δ logp| {gap:.2g}, {flips}/{len(items)} predictions differ")
    print(json.dumps(record))
    return 0


if __name__ == "__main__":
    sys.exit(main())
