"""LoRA fine-tuning on a CPU: Amauta's recipe vs TRL's `SFTTrainer`, at its defaults and as a careful user sets it.

Same model (the embedded SmolLM2-135M-Instruct, converted folder), same prepared dataset, same LoRA
(r, alpha, dropout, targets), same learning rate, batch size and number of optimizer steps. Each side
runs in its own subprocess, one after the other (so they never share the cores), started by this
script; it prints a table, the tokens/s ratios and one JSON line.

The TRL rows (`--sides`):
  trl       TRL's defaults: every batch padded to its longest example, fp32 weights with bf16 autocast,
            gradient checkpointing on.
  trl-bf16  what a careful TRL user runs: bf16 model weights (`model_init_kwargs={"dtype": "bfloat16"}`,
            TRL's bf16 autocast left on), gradient checkpointing off, `padding_free=True` (a batch's
            examples flattened into one row with restarting `position_ids`; TRL 1.16 documents it for
            flash-attention, and with SDPA transformers builds the per-example block mask from those
            positions, so it is correct here too; `max_length=None`, which TRL requires without packing).
  trl-fp32  the same careful settings with fp32 weights and no autocast: the fair row on a CPU without
            native bf16 (AVX512-BF16/AMX), where bf16 is emulated and slow, and where Amauta's `dtype: auto`
            is float32 as well.
TRL's `packing=True` is left out on purpose: it fills each row with `max_length` tokens of several
examples, so a step would no longer train the same 8 examples as the other rows.

Amauta packs a batch into one padding-free row with restarting positions (attention per example, no
row-wide mask), computes the output layer only where an answer token is predicted, stores the frozen
base in `--dtype` (`auto`: bf16 on CPUs with native bf16, else float32, as the `cpu-quick` preset) and
keeps activations on a CPU. All rows compute the loss on the answer only (TRL's default for
prompt/completion data; Amauta's always), so the final losses are comparable (different data order:
within noise).

    .venv/bin/python benchmarks/train.py                          # prepares examples/prepare.yaml if needed
    .venv/bin/python benchmarks/train.py --steps 6 --dataset runs/data/demo --threads 2
    .venv/bin/python benchmarks/train.py --sides trl-fp32,amauta  # only the fair careful row and Amauta

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

from trl_timing import parse_sides, timed_amauta_run, timed_train

REPO = Path(__file__).resolve().parents[1]
MODEL = "smollm2-135m-instruct"
LORA = {"r": 8, "alpha": 16, "dropout": 0.05}
# TRL rows: their table label and the SFTConfig settings that differ from TRL's defaults.
CAREFUL = {"gradient_checkpointing": False, "padding_free": True, "max_length": None}
TRL_ROWS = {
    "trl": ("TRL SFTTrainer (defaults)", {}),
    "trl-bf16": ("TRL careful, bf16 weights", {**CAREFUL, "model_init_kwargs": {"dtype": "bfloat16"}}),
    "trl-fp32": ("TRL careful, fp32 weights", {**CAREFUL, "model_init_kwargs": {"dtype": "float32"}, "bf16": False}),
}
SIDES = [*TRL_ROWS, "amauta"]


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux reports KiB


def run_amauta(args) -> dict:
    """Amauta's recipe: padding-free LoRA (cpu-quick's settings, the run's size and dtype from the arguments)."""
    import shutil

    from amauta.train.config import build_config

    out = Path(args.work) / "amauta"
    shutil.rmtree(out, ignore_errors=True)
    config = build_config(None, {
        "model": MODEL, "dataset": args.dataset, "output_dir": str(out), "dtype": args.dtype,
        "lora": {**LORA, "targets": "all-linear"}, "optimizer.name": "adamw", "optimizer.lr": args.lr,
        "max_steps": args.steps, "batch_size": args.batch, "max_length": 1024, "eval_every": 10_000,
        "eval_max_examples": 1, "checkpoint_every": 10_000, "warmup_ratio": 0.0, "scheduler": "linear", "seed": 0})
    cpu_seconds = timed_amauta_run(config)
    summary = json.loads((out / "summary.json").read_text())
    losses = [json.loads(line)["loss"] for line in (out / "log.jsonl").read_text().splitlines() if '"loss"' in line]
    return {"tokens": summary["tokens_total"], "seconds": summary["train_seconds"], "cpu_seconds": cpu_seconds, "losses": losses,
            "dtype": resolved_dtype(args.dtype)}


def resolved_dtype(dtype: str) -> str:
    """What Amauta's `dtype: auto` becomes on this machine (bf16 only with native bf16 on a CPU)."""
    from amauta.models.load import resolve_dtype

    return resolve_dtype(dtype, "cpu")


def run_trl(args) -> dict:
    """TRL SFTTrainer: defaults except what must match (steps, batch, lr, LoRA, no saving/reporting), plus the
    row's careful settings (`TRL_ROWS`)."""
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
                       dataloader_num_workers=0, disable_tqdm=True, **TRL_ROWS[args.worker][1])
    trainer = SFTTrainer(model=str(folder), args=config, train_dataset=Dataset.from_list(rows),
                         peft_config=LoraConfig(r=LORA["r"], lora_alpha=LORA["alpha"], lora_dropout=LORA["dropout"],
                                                target_modules=targets, task_type="CAUSAL_LM"))
    counts, seconds, cpu_seconds = timed_train(trainer)
    losses = [h["loss"] for h in trainer.state.log_history if "loss" in h]
    # One batch per step (no accumulation); the dataloader may prefetch one more, which is not counted.
    return {"tokens": sum(counts[:args.steps]), "seconds": seconds, "cpu_seconds": cpu_seconds, "losses": losses,
            "dtype": str(trainer.model.dtype), "gradient_checkpointing": config.gradient_checkpointing, "bf16": config.bf16,
            "padding_free": config.padding_free}


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
    parser.add_argument("--dtype", default="auto", choices=["auto", "bfloat16", "float32"],
                        help="Amauta's base weights (auto: bf16 only on CPUs with native bf16).")
    parser.add_argument("--sides", default=",".join(SIDES), help=f"Rows to run, comma-separated ({', '.join(SIDES)}).")
    parser.add_argument("--worker", choices=SIDES, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        return worker(args)

    sides = parse_sides(args.sides, SIDES)
    args.dataset = ensure_dataset(args.dataset)
    results = {}
    for side in sides:
        cmd = [sys.executable, __file__, "--worker", side, "--steps", str(args.steps), "--batch", str(args.batch),
               "--lr", str(args.lr), "--dataset", args.dataset, "--threads", str(args.threads), "--work", args.work,
               "--dtype", args.dtype]
        env = {**os.environ, "OMP_NUM_THREADS": str(args.threads), "TOKENIZERS_PARALLELISM": "false"}
        proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True)
        line = next((x for x in proc.stdout.splitlines() if x.startswith("RESULT ")), None)
        if proc.returncode != 0 or line is None:
            sys.exit(f"{side} failed:\n{proc.stderr[-3000:]}")
        results[side] = json.loads(line[len("RESULT "):])
        results[side]["tokens_per_s"] = round(results[side]["tokens"] / results[side]["seconds"], 1)
        results[side]["tokens_per_cpu_s"] = round(results[side]["tokens"] / results[side]["cpu_seconds"], 1)
        tail = results[side]["losses"][-3:]
        results[side]["final_loss"] = round(sum(tail) / len(tail), 4)

    print(f"\nLoRA on {MODEL}, {args.steps} steps × {args.batch} examples, {args.threads} threads per side")
    print(f"{'':<28}{'weights':>10}{'tokens':>8}{'seconds':>9}{'tokens/s':>10}{'CPU s':>8}{'tok/CPU s':>11}"
          f"{'peak RSS MB':>13}{'final loss':>12}")
    labels = {**{side: label for side, (label, _) in TRL_ROWS.items()}, "amauta": "Amauta recipe"}
    for side, r in results.items():
        weights = r["dtype"].removeprefix("torch.")
        print(f"{labels[side]:<28}{weights:>10}{r['tokens']:>8}{r['seconds']:>9.1f}{r['tokens_per_s']:>10.1f}"
              f"{r['cpu_seconds']:>8.1f}{r['tokens_per_cpu_s']:>11.1f}{r['peak_rss_mb']:>13.0f}{r['final_loss']:>12.4f}")
    speedups = {}
    if "amauta" in results:
        fair = "trl-bf16" if results["amauta"]["dtype"] == "bfloat16" else "trl-fp32"
        mine = results["amauta"]
        for side in (s for s in results if s != "amauta"):
            speedups[side] = {"wall": round(mine["tokens_per_s"] / results[side]["tokens_per_s"], 2),
                              "cpu": round(mine["tokens_per_cpu_s"] / results[side]["tokens_per_cpu_s"], 2)}
            note = "   (careful row with Amauta's weight dtype: the fair one)" if side == fair else ""
            print(f"speed-up vs {labels[side]}: {speedups[side]['wall']:.2f}× tokens/s, "
                  f"{speedups[side]['cpu']:.2f}× tokens per CPU second{note}")
    print(json.dumps({"benchmark": "train", "model": MODEL, "steps": args.steps, "batch": args.batch,
                      "threads": args.threads, "speedups": speedups,
                      **{side: {k: v for k, v in r.items() if k != "losses"} for side, r in results.items()}}))

if __name__ == "__main__":
    main()
