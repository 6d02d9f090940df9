"""Belebele: Amauta's scorer against lm-evaluation-harness on the same items, model and prompt.

    .venv/bin/python benchmarks/belebele.py [--model smollm2-135m-instruct] [--limit 40] [--formulations letter,cloze]
    .venv/bin/python benchmarks/belebele.py --shots 5 --limit 24 --no-plain     # few-shot (the paper's setting)

lm-eval's stock `belebele_spa_Latn` task reads from the Hub, so this writes a local task YAML with the
stock template (`P: … Q: … A: … Answer:`, choices A–D; and a cloze variant whose choices are the
options' own text) over the same items written in the official layout. For each formulation it runs:

- lm-eval (`simple_evaluate` over the same in-memory model, `HFLM`),
- Amauta's packed scorer (the default), and Amauta scoring each option as its own sequence (the
  baseline the packing replaces; `--no-plain` skips it, it is slow with shots),

With `--shots K`, both take the same K solved examples (the K items after the scored ones, lm-eval's
`first_n` sampler over a separate `train` split) before every item.

and prints accuracies, whether every per-item prediction (acc and acc_norm) matches lm-eval's, and
items/s. Needs `lm-eval` installed (`pip install lm-eval`). Timings on a shared CPU are noisy.
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
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared" / "data" / "belebele-es" / "dev.jsonl"
SAMPLE = REPO / "examples" / "data" / "belebele_sample.jsonl"

TEXT = {
    "letter": "P: {{flores_passage}}\nQ: {{question.strip()}}\nA: {{mc_answer1}}\nB: {{mc_answer2}}\n"
              "C: {{mc_answer3}}\nD: {{mc_answer4}}\nAnswer:",
    "cloze": "P: {{flores_passage}}\nQ: {{question.strip()}}\nAnswer:",
}
CHOICES = {"letter": ["A", "B", "C", "D"], "cloze": "{{[mc_answer1, mc_answer2, mc_answer3, mc_answer4]}}"}


def write_official(path: Path, items: list[dict]) -> None:
    """Items in the official Belebele layout (what lm-eval's task reads)."""
    with open(path, "w", encoding="utf-8") as handle:
        for item in items:
            a, b, c, d = item["options"]
            handle.write(json.dumps({"flores_passage": item["passage"].strip(), "question": item["question"],
                                     "mc_answer1": a, "mc_answer2": b, "mc_answer3": c, "mc_answer4": d,
                                     "correct_answer_num": str("ABCD".index(item["gold"]) + 1)},
                                    ensure_ascii=False) + "\n")


def write_task(folder: Path, items: list[dict], formulation: str, shots: list[dict]) -> str:
    """The items (and the shots as a `train` split) and an lm-eval task YAML over them; returns the task name."""
    files = {"test": folder / "belebele.jsonl"}
    write_official(files["test"], items)
    fewshot = {}
    if shots:
        files["train"] = folder / "shots.jsonl"
        write_official(files["train"], shots)
        fewshot = {"fewshot_split": "train", "fewshot_config": {"sampler": "first_n"}}
    name = f"amauta_belebele_{formulation}"
    task = {
        "task": name, "dataset_path": "json",
        "dataset_kwargs": {"data_files": {split: str(path) for split, path in files.items()}},
        "test_split": "test", **fewshot, "output_type": "multiple_choice", "doc_to_text": TEXT[formulation],
        "doc_to_choice": CHOICES[formulation], "doc_to_target": "{{['1', '2', '3', '4'].index(correct_answer_num)}}",
        "metric_list": [{"metric": "acc", "aggregation": "mean", "higher_is_better": True},
                        {"metric": "acc_norm", "aggregation": "mean", "higher_is_better": True}],
    }
    import yaml

    (folder / f"{name}.yaml").write_text(yaml.safe_dump(task, allow_unicode=True, sort_keys=False), encoding="utf-8")
    return name


def run_lm_eval(loaded, items, formulation: str, batch_size: int, shots: list[dict]) -> tuple[list, list, list, float]:
    """lm-eval's per-item predictions (acc, acc_norm), option log-likelihoods, and seconds."""
    from lm_eval import simple_evaluate
    from lm_eval.models.huggingface import HFLM
    from lm_eval.tasks import TaskManager

    with tempfile.TemporaryDirectory() as tmp:
        name = write_task(Path(tmp), items, formulation, shots)
        lm = HFLM(pretrained=loaded.model, tokenizer=loaded.tokenizer, batch_size=batch_size)
        # Time only lm-eval's scoring of the requests, not its task and dataset setup.
        spent, inner = [0.0], lm.loglikelihood

        def timed(requests, *args, **kwargs):
            started = time.perf_counter()
            try:
                return inner(requests, *args, **kwargs)
            finally:
                spent[0] += time.perf_counter() - started

        lm.loglikelihood = timed
        result = simple_evaluate(model=lm, tasks=[name], task_manager=TaskManager(include_path=tmp),
                                 log_samples=True, bootstrap_iters=0, num_fewshot=len(shots))
        seconds = spent[0]
    samples = sorted(result["samples"][name], key=lambda s: s["doc_id"])
    preds, preds_norm, logliks = [], [], []
    for sample, item in zip(samples, items, strict=True):
        ll = [float(resp[0]) for resp in sample["filtered_resps"]]
        logliks.append(ll)
        lengths = [len(o) for o in (["A", "B", "C", "D"] if formulation == "letter" else item["options"])]
        preds.append("ABCD"[max(range(4), key=lambda k: ll[k])])
        preds_norm.append("ABCD"[max(range(4), key=lambda k: ll[k] / lengths[k])])
    return preds, preds_norm, logliks, seconds


def run_amauta(loaded, items, formulation: str, batch_size: int, reuse_cache: bool,
               shots: list[dict]) -> tuple[list, list, list, float]:
    from amauta.evaluate.belebele import score

    started = time.perf_counter()
    summary = score(loaded, items, formulation, len(shots), prompt="lm-eval", shot_items=shots or None,
                    batch_size=batch_size, reuse_cache=reuse_cache)
    seconds = time.perf_counter() - started
    rows = summary["items"]
    return [r["pred"] for r in rows], [r["pred_norm"] for r in rows], [r["logprobs"] for r in rows], seconds


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="smollm2-135m-instruct", help="Registry name or folder.")
    parser.add_argument("--data", default=str(SHARED if SHARED.is_file() else SAMPLE), help="Belebele items.")
    parser.add_argument("--limit", type=int, default=40, help="Items to score.")
    parser.add_argument("--formulations", default="letter,cloze", help="Comma list: letter, cloze.")
    parser.add_argument("--batch-size", type=int, default=8, help="Batch size for both.")
    parser.add_argument("--shots", type=int, default=0, help="Solved examples before each item (0 = zero-shot).")
    parser.add_argument("--no-plain", action="store_true", help="Skip Amauta's one-sequence-per-option baseline.")
    args = parser.parse_args()
    try:
        import lm_eval  # noqa: F401
    except ImportError:
        print("lm-eval is not installed: pip install lm-eval", file=sys.stderr)
        return 2
    import torch

    from amauta.evaluate.belebele import load_items
    from amauta.models.load import load_model

    loaded = load_model(args.model, dtype="float32", device="cpu")
    pool = load_items(args.data)
    items, shots = pool[: args.limit], pool[args.limit: args.limit + args.shots]
    gold = [i["gold"] for i in items]
    rows, record = [], {"bench": "belebele", "model": args.model, "items": len(items),
                        "threads": torch.get_num_threads(), "data": Path(args.data).name, "shots": args.shots}
    for formulation in args.formulations.split(","):
        ref, ref_norm, ref_ll, t_ref = run_lm_eval(loaded, items, formulation, args.batch_size, shots)
        ours, ours_norm, ours_ll, t_ours = run_amauta(loaded, items, formulation, args.batch_size, True, shots)
        plain, t_plain = None, None
        if not args.no_plain:
            plain, _, _, t_plain = run_amauta(loaded, items, formulation, args.batch_size, False, shots)
        # Same prompt, same tokens, same model: the option log-likelihoods agree up to float rounding.
        gap = max(abs(a - b) for x, y in zip(ours_ll, ref_ll, strict=True) for a, b in zip(x, y, strict=True))

        def acc(preds):
            return sum(p == g for p, g in zip(preds, gold, strict=True)) / len(gold)

        same = sum(a == b for a, b in zip(ours, ref, strict=True))
        same_norm = sum(a == b for a, b in zip(ours_norm, ref_norm, strict=True))
        same_plain = sum(a == b for a, b in zip(ours, plain, strict=True)) if plain else None
        n = len(items)
        plain_rate = n / t_plain if t_plain else None
        rows.append((formulation, acc(ref), acc(ours), acc(ref_norm), acc(ours_norm), f"{same}/{n}", f"{same_norm}/{n}",
                     f"{gap:.1e}", n / t_ref, n / t_ours, plain_rate if plain_rate else "-", t_ref / t_ours))
        record[formulation] = {"lm_eval_acc": acc(ref), "amauta_acc": acc(ours), "lm_eval_acc_norm": acc(ref_norm),
                               "amauta_acc_norm": acc(ours_norm), "same_pred": same, "same_pred_norm": same_norm,
                               "max_abs_loglik_diff": gap,
                               "same_pred_cache_vs_plain": same_plain, "lm_eval_items_s": n / t_ref,
                               "amauta_items_s": n / t_ours, "amauta_plain_items_s": plain_rate,
                               "speedup_vs_lm_eval": t_ref / t_ours, "speedup_cache_vs_plain": t_plain / t_ours if t_plain else None}
    header = ("formulation", "acc lm-eval", "acc amauta", "acc_norm lm-eval", "acc_norm amauta", "same pred",
              "same pred (norm)", "max |Δ loglik|", "items/s lm-eval", "items/s amauta", "items/s amauta plain", "× vs lm-eval")
    print(" | ".join(header))
    for row in rows:
        print(" | ".join(f"{v:.3f}" if isinstance(v, float) else str(v) for v in row))
    print(json.dumps(record))
    return 0


if __name__ == "__main__":
    sys.exit(main())
