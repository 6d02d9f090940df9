"""Benchmark `amauta data prepare` on the Spanish SQuAD dev file (6.5k questions), with the stage breakdown.

    .venv/bin/python benchmarks/data.py [--model smollm2-135m-instruct] [--pairwise 1500]

Prints a table and one JSON line. Besides the whole run it compares two stages with a baseline in the
same process: near-duplicate search with MinHash LSH against exact pairwise Jaccard on a sample (time
and agreement), and the language filter scoring each distinct paragraph once against scoring each
record's whole text. Skips cleanly when ../shared/data is absent. Timings on a shared CPU are noisy.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

SQUAD = Path(__file__).resolve().parents[2] / "shared" / "data" / "squad-es" / "dev-v1.1-es_small.json"


def pairwise_near_duplicates(records, threshold: float) -> set[int]:
    """Baseline: exact Jaccard of word 3-grams between every pair (prompt and reply both over threshold)."""
    from amauta.data.clean import _shingles

    prompts = [_shingles(r.user_text()) for r in records]
    replies = [_shingles(r.assistant_text()) for r in records]

    def jac(a, b):
        return len(a & b) / len(a | b) if a or b else 1.0

    dropped: set[int] = set()
    kept: list[int] = []
    for i in range(len(records)):
        if any(jac(prompts[i], prompts[k]) >= threshold and jac(replies[i], replies[k]) >= threshold for k in kept):
            dropped.add(i)
        else:
            kept.append(i)
    return dropped


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--file", type=Path, default=SQUAD, help="SQuAD JSON file to prepare")
    parser.add_argument("--model", default="smollm2-135m-instruct", help="target model (tokenizer and template)")
    parser.add_argument("--pairwise", type=int, default=1500, help="records in the near-duplicate baseline sample")
    args = parser.parse_args()
    if not args.file.is_file():
        print(f"skipped: {args.file} not found (the benchmark needs ../shared/data beside the checkout)")
        return 0

    from amauta.core.config import validate_config
    from amauta.data.clean import CleanConfig, Cleaner, normalize_record
    from amauta.data.prepare import PrepareConfig, run
    from amauta.data.readers import SourceConfig, read_source

    # 1. The whole command, as a user runs it.
    config = validate_config(PrepareConfig, {"sources": [{"path": str(args.file), "name": "squad_es"}],
                                             "model": args.model, "clean": {"max_tokens": 1024}})
    with tempfile.TemporaryDirectory() as tmp:
        out = run(config, out=Path(tmp) / "ds")
        stats = json.loads((out / "stats.json").read_text(encoding="utf-8"))
    sec = stats["seconds"]
    n = stats["totals"]["read"]
    stages = [("read", sec["read"]), ("load tokenizer", sec["load_tokenizer"]),
              ("clean: normalize", sec["normalize"]),
              ("clean: empty + too short", sec["empty"] + sec["too_short"]),
              ("dedup: exact", sec.get("exact_duplicate", 0.0)),
              ("tokenize (too_long)", sec.get("too_long", 0.0)),
              ("language", sec.get("language", 0.0)),
              ("dedup: near (MinHash LSH)", sec.get("near_duplicate", 0.0)),
              ("mix + split", sec["mix_split"]), ("lengths (other templates)", sec["lengths"]),
              ("write", sec["write"])]

    # 2. Baselines on the same records.
    records = [normalize_record(r) for r in read_source(SourceConfig(path=str(args.file), name="squad_es")).records]
    lsh_cleaner = Cleaner(CleanConfig(language=None, max_tokens=None))
    sample = lsh_cleaner._exact(records)[: args.pairwise]  # as in prepare: exact duplicates are gone first
    threshold = CleanConfig().near_dedup_threshold
    t = time.perf_counter()
    lsh_kept = {id(r) for r in lsh_cleaner._near(sample)}
    lsh_s = time.perf_counter() - t
    lsh_set = {i for i, r in enumerate(sample) if id(r) not in lsh_kept}
    t = time.perf_counter()
    exact_dropped = pairwise_near_duplicates(sample, threshold)
    pair_s = time.perf_counter() - t
    lsh_dropped = len(lsh_set)
    agree = len(lsh_set & exact_dropped)

    lang_cleaner = Cleaner(CleanConfig(max_tokens=None))
    lang_cleaner._language(records[:50])  # load lingua's models before timing either variant
    t = time.perf_counter()
    para_kept = lang_cleaner._language(records)
    para_s = time.perf_counter() - t
    from lingua import Language

    from amauta.data.clean import _language_detector

    detector = _language_detector(CleanConfig())
    t = time.perf_counter()
    texts = [r.user_text()[:1000] for r in records] + [r.assistant_text()[:1000] for r in records]
    scores = detector.compute_language_confidence_in_parallel([x for x in texts if len(x) >= 50], Language.SPANISH)
    whole_s = time.perf_counter() - t

    print(f"amauta data prepare on {args.file.name}: {n} records, model {args.model} "
          f"(shared 2-core CPU: timings are noisy)\n")
    print(f"{'stage':<30}{'seconds':>10}{'share':>8}")
    for name, s in stages:
        print(f"{name:<30}{s:>10.2f}{100 * s / sec['total']:>7.0f}%")
    print(f"{'total':<30}{sec['total']:>10.2f}   {stats['records_per_second']:.0f} records/s")
    print(f"\nremoved per rule: {stats['removed']}; train {stats['totals']['train']}, val {stats['totals']['val']}")
    print(f"\n{'comparison (same run)':<52}{'seconds':>9}{'removed':>9}")
    print(f"{f'near-dup, MinHash LSH ({len(sample)} records)':<52}{lsh_s:>9.2f}{lsh_dropped:>9}")
    print(f"{f'near-dup, exact pairwise Jaccard ({len(sample)})':<52}{pair_s:>9.2f}{len(exact_dropped):>9}"
          f"   (both removed: {agree})")
    print(f"{f'language, each distinct paragraph ({len(records)})':<52}{para_s:>9.2f}{len(records) - len(para_kept):>9}")
    print(f"{f'language, each record whole text ({len(records)})':<52}{whole_s:>9.2f}{'-':>9}")
    result = {"benchmark": "data.prepare", "file": args.file.name, "model": args.model, "records": n,
              "seconds": sec["total"], "records_per_second": stats["records_per_second"],
              "stages": {k: round(v, 3) for k, v in stages}, "removed": stats["removed"],
              "near_dup": {"sample": len(sample), "lsh_s": round(lsh_s, 3), "lsh_removed": lsh_dropped,
                           "pairwise_s": round(pair_s, 3), "pairwise_removed": len(exact_dropped), "both_removed": agree},
              "language": {"paragraph_s": round(para_s, 3), "whole_text_s": round(whole_s, 3), "scored_texts": len(scores)}}
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
