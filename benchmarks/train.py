"""LoRA fine-tuning on a CPU: Amauta's recipe vs TRL's `SFTTrainer` with its default settings.

Same model (the embedded SmolLM2-135M-Instruct, converted folder), same prepared dataset, same LoRA
(r, alpha, dropout, targets), same learning rate, batch size and number of optimizer steps. Each side
runs in its own subprocess, one after the other (so they never share the cores), started by this
script; it prints a table, the tokens/s ratio and one JSON line.

What differs is what each does by default: TRL pads every batch to its longest example, keeps the
weights in fp32 with bf16 autocast, and recomputes activations (gradient checkpointing). Amauta packs a
batch into one padding-free row with restarting positions (attention per example, no row-wide mask),
computes the output layer only where an answer token is predicted, stores the frozen base in bf16 and
keeps activations on a CPU. Both compute the loss on the answer only (TRL's default for prompt/completion
data; Amauta's always), so the final losses are comparable (different data order: within noise).

    .venv/bin/python benchmarks/train.py                          # prepares examples/prepare.yaml if needed
    .venv/bin/python benchmarks/train.py --steps 6 --dataset runs/data/demo --threads 2

tokens/s counts real (non-pad) tokens per second of the training loop; peak RSS is each subprocess's
maximum resident memory. Timings on a shared machine are noisy; compare the rows of one run.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
from pathlib import Path

from trl_timing import timed_train

REPO = Path(__file__).resolve().parents[1]
MODEL = "smollm2-135m-instruct"
LORA = {"r": 8, "alpha": 16, "dropout": 0.05}


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux reports KiB


def run_amauta(args) -> dict:
    """Amauta's recipe: padding-free bf16 LoRA (cpu-quick's settings, the run's size from the arguments)."""
    import shutil

    from amauta.train.config import build_config
    from amauta.train.recipe import run

    out = Path(args.work) / "amauta"
    shutil.rmtree(out, ignore_errors=True)
    config = build_config(None, {
        "model": MODEL, "dataset": args.dataset, "output_dir": str(out), "dtype": "bfloat16",
        "lora": {**LORA, "targets": "all-linear"}, "optimizer.name": "adamw", "optimizer.lr": args.lr,
        "max_steps": args.steps, "batch_size": args.batch, "max_length": 1024, "eval_every": 10_000,
        "eval_max_examples": 1, "checkpoint_every": 10_000, "warmup_ratio": 0.0, "scheduler": "linear", "seed": 0})
    run(config, progress=False)
    summary = json.loads((out / "summary.json").read_text())
    losses = [json.loads(line)["loss"] for line in (out / "log.jsonl").read_text().splitlines() if '"loss"' in line]
    return {"tokens": summary["tokens_total"], "seconds": summary["train_seconds"], "losses": losses}


def run_trl(args) -> dict:
    """TRL SFTTrainer, defaults except what must match (steps, batch, lr, LoRA, no saving/reporting)."""
    from datasets import Dataset
    from peft import LoraConfig
    from trl import SFTConfig, SFTTrainer

    from amauta.data.dataset import read_dataset_dir
    from amauta.models import embedded
    from amauta.models.registry import get_profile

    profile = get_profile(MODEL)
    folder = embedded.ensure_converted(MODEL, profile.source)
    records = read_dataset_dir(args.dataset).train
    # Conversational prompt/completion: TRL then trains on the completion only (its default).
    rows = [{"prompt": r.messages[:-1], "completion": r.messages[-1:]} for r in records]
    targets = profile.lora_targets["all-linear"]
    config = SFTConfig(output_dir=str(Path(args.work) / "trl"), max_steps=args.steps,
                       per_device_train_batch_size=args.batch, learning_rate=args.lr, lr_scheduler_type="linear",
                       logging_steps=1, save_strategy="no", report_to=[], seed=0, use_cpu=True,
                       dataloader_num_workers=0, disable_tqdm=True)
    trainer = SFTTrainer(model=str(folder), args=config, train_dataset=Dataset.from_list(rows),
                         peft_config=LoraConfig(r=LORA["r"], lora_alpha=LORA["alpha"], lora_dropout=LORA["dropout"],
                                                target_modules=targets, task_type="CAUSAL_LM"))
    counts, seconds = timed_train(trainer)
    losses = [h["loss"] for h in trainer.state.log_history if "loss" in h]
    # One batch per step (no accumulation); the dataloader may prefetch one more, which is not counted.
    return {"tokens": sum(counts[:args.steps]), "seconds": seconds, "losses": losses,
            "dtype": str(trainer.model.dtype), "gradient_checkpointing": config.gradient_checkpointing, "bf16": config.bf16}


def worker(args) -> None:
    import torch

    torch.set_num_threads(args.threads)
    result = run_amauta(args) if args.worker == "amauta" else run_trl(args)
    result["peak_rss_mb"] = round(peak_rss_mb(), 1)
    print("RESULT " + json.dumps(result))


def ensure_dataset(path: str | None) -> str:
    if path:
        return path
    default = REPO / "runs" / "bench-train-data"
    if not (default / "manifest.json").is_file():
        subprocess.run([sys.executable, "-m", "amauta.cli", "data", "prepare", "examples/prepare.yaml", "--out", str(default)],
                       cwd=REPO, check=True)
    return str(default)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=8, help="Optimizer steps for each side.")
    parser.add_argument("--batch", type=int, default=8, help="Examples per optimizer step.")
    parser.add_argument("--lr", type=float, default=1e-3, help="Learning rate (both sides).")
    parser.add_argument("--dataset", default=None, help="Prepared dataset folder (default: prepare examples/prepare.yaml).")
    parser.add_argument("--threads", type=int, default=2, help="torch threads per side.")
    parser.add_argument("--work", default=str(REPO / "runs" / "bench-train"), help="Scratch folder.")
    parser.add_argument("--worker", choices=["amauta", "trl"], help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        return worker(args)

    args.dataset = ensure_dataset(args.dataset)
    results = {}
    for side in ("trl", "amauta"):
        cmd = [sys.executable, __file__, "--worker", side, "--steps", str(args.steps), "--batch", str(args.batch),
               "--lr", str(args.lr), "--dataset", args.dataset, "--threads", str(args.threads), "--work", args.work]
        env = {**os.environ, "OMP_NUM_THREADS": str(args.threads), "TOKENIZERS_PARALLELISM": "false"}
        proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True)
        line = next((x for x in proc.stdout.splitlines() if x.startswith("RESULT ")), None)
        if proc.returncode != 0 or line is None:
            sys.exit(f"{side} failed:\n{proc.stderr[-3000:]}")
        results[side] = json.loads(line[len("RESULT "):])
        results[side]["tokens_per_s"] = round(results[side]["tokens"] / results[side]["seconds"], 1)
        tail = results[side]["losses"][-3:]
        results[side]["final_loss"] = round(sum(tail) / len(tail), 4)

    print(f"\nLoRA on {MODEL}, {args.steps} steps × {args.batch} examples, {args.threads} threads per side")
    print(f"{'':<26}{'tokens':>8}{'seconds':>10}{'tokens/s':>10}{'peak RSS MB':>13}{'final loss':>12}")
    for side, name in (("trl", "TRL SFTTrainer (default)"), ("amauta", "Amauta recipe")):
        r = results[side]
        print(f"{name:<26}{r['tokens']:>8}{r['seconds']:>10.1f}{r['tokens_per_s']:>10.1f}{r['peak_rss_mb']:>13.0f}"
              f"{r['final_loss']:>12.4f}")
    ratio = results["amauta"]["tokens_per_s"] / results["trl"]["tokens_per_s"]
    print(f"speed-up (tokens/s): {ratio:.2f}×   target ≥ 2×")
    print(json.dumps({"benchmark": "train", "model": MODEL, "steps": args.steps, "batch": args.batch,
                      "threads": args.threads, "speedup": round(ratio, 2),
                      **{side: {k: v for k, v in r.items() if k != "losses"} for side, r in results.items()}}))


if __name__ == "__main__":
    main()
