"""DPO with LoRA on a CPU: Amauta's loop (TRL's loss, `amauta train --method dpo`) vs TRL's `DPOTrainer`.

Same model (the embedded SmolLM2-135M-Instruct), same pairs (examples/data/preferences_es.jsonl), same
LoRA, learning rate, batch size and number of optimizer steps; both compute TRL's sigmoid DPO loss with
the base (adapter off) as the reference. Each side runs in its own subprocess, one after the other; the
script prints a table, the tokens/s ratios and one JSON line.

The TRL rows (`--sides`): `trl` is DPOTrainer at its defaults (fp32 weights with bf16 autocast, gradient
checkpointing on); `trl-fp32` is a careful user's (fp32 weights, no autocast, gradient checkpointing off),
the fair row on a CPU without native bf16, where bf16 is emulated and Amauta's `dtype: auto` is float32.
(DPOConfig's `padding_free` is disabled in TRL 1.16: it warns and pads.) Amauta runs at `dtype: auto`.
`--precompute-ref` turns on Amauta's `preference.precompute_ref` (reference log-probs once per pair, before
training) and TRL's `precompute_ref_log_probs` for the TRL rows.

    .venv/bin/python benchmarks/dpo.py --steps 4 --batch 4 --threads 1
    .venv/bin/python benchmarks/dpo.py --sides trl-fp32,amauta --steps 12 --batch 4 --precompute-ref   # 2 epochs

tokens counts prompt + chosen and prompt + rejected tokens (no padding) per step; peak RSS is each
subprocess's maximum resident memory. Timings on a shared machine are noisy; compare rows of one run.
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
PAIRS = REPO / "examples" / "data" / "preferences_es.jsonl"
LORA = {"r": 8, "alpha": 16, "dropout": 0.05}
# TRL rows: their table label and the DPOConfig settings that differ from TRL's defaults.
TRL_ROWS = {
    "trl": ("TRL DPOTrainer (defaults)", {}),
    "trl-fp32": ("TRL careful, fp32 weights", {"gradient_checkpointing": False, "bf16": False,
                                               "model_init_kwargs": {"dtype": "float32"}}),
}
SIDES = [*TRL_ROWS, "amauta"]


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux reports KiB


def preference_folder(work: Path) -> Path:
    from amauta.data.preferences import read_preference_file, write_preference_dir

    folder = work / "prefs"
    examples, _ = read_preference_file(PAIRS)
    write_preference_dir(folder, examples, config={"bench": "dpo"}, inputs=[PAIRS], val_fraction=0)
    return folder


def run_amauta(args) -> dict:
    """`amauta train --method dpo` with cpu-quick-like settings (dtype auto, all-linear LoRA)."""
    import shutil

    from amauta.train.config import build_config

    work = Path(args.work)
    out = work / "amauta"
    shutil.rmtree(out, ignore_errors=True)
    config = build_config(None, {
        "model": MODEL, "dataset": str(preference_folder(work)), "output_dir": str(out), "method": "dpo",
        "lora": {**LORA, "targets": "all-linear"}, "optimizer.name": "adamw", "optimizer.lr": args.lr,
        "max_steps": args.steps, "batch_size": args.batch, "max_length": 1024, "eval_every": 10_000,
        "checkpoint_every": 10_000, "warmup_ratio": 0.0, "scheduler": "linear", "seed": 0,
        "preference.precompute_ref": args.precompute_ref})
    cpu_seconds = timed_amauta_run(config)
    summary = json.loads((out / "summary.json").read_text())
    rows = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines() if '"loss"' in line]
    from amauta.models.load import resolve_dtype

    return {"tokens": summary["tokens_total"], "seconds": summary["train_seconds"], "cpu_seconds": cpu_seconds, "dtype": resolve_dtype("auto", "cpu"),
            "losses": [r["loss"] for r in rows], "margins": [r["reward_margin"] for r in rows]}


def run_trl(args) -> dict:
    """TRL DPOTrainer: defaults except what must match (steps, batch, lr, LoRA, no saving/reporting), plus the
    row's careful settings (`TRL_ROWS`)."""
    from datasets import Dataset
    from peft import LoraConfig
    from trl import DPOConfig, DPOTrainer

    from amauta.data.preferences import read_preference_file
    from amauta.models import embedded
    from amauta.models.registry import get_profile

    profile = get_profile(MODEL)
    folder = embedded.ensure_converted(MODEL, profile.source)
    examples, _ = read_preference_file(PAIRS)
    rows = [{"prompt": e.prompt, "chosen": [{"role": "assistant", "content": e.chosen}],
             "rejected": [{"role": "assistant", "content": e.rejected}]} for e in examples]
    config = DPOConfig(output_dir=str(Path(args.work) / "trl"), max_steps=args.steps,
                       per_device_train_batch_size=args.batch, learning_rate=args.lr, lr_scheduler_type="linear",
                       logging_steps=1, save_strategy="no", report_to=[], seed=0, use_cpu=True,
                       dataloader_num_workers=0, disable_tqdm=True, precompute_ref_log_probs=args.precompute_ref,
                       **TRL_ROWS[args.worker][1])
    trainer = DPOTrainer(model=str(folder), args=config, train_dataset=Dataset.from_list(rows),
                         peft_config=LoraConfig(r=LORA["r"], lora_alpha=LORA["alpha"], lora_dropout=LORA["dropout"],
                                                target_modules=profile.lora_targets["all-linear"], task_type="CAUSAL_LM"))
    counts, seconds, cpu_seconds = timed_train(trainer)
    logs = [h for h in trainer.state.log_history if "loss" in h]
    return {"tokens": sum(counts[:args.steps]), "seconds": seconds, "cpu_seconds": cpu_seconds, "losses": [h["loss"] for h in logs],
            "margins": [h.get("rewards/margins") for h in logs], "dtype": str(trainer.model.dtype),
            "gradient_checkpointing": config.gradient_checkpointing, "bf16": config.bf16}


def worker(args) -> None:
    import torch

    torch.set_num_threads(args.threads)
    result = run_amauta(args) if args.worker == "amauta" else run_trl(args)
    result["peak_rss_mb"] = round(peak_rss_mb(), 1)
    print("RESULT " + json.dumps(result))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=4, help="Optimizer steps for each side.")
    parser.add_argument("--batch", type=int, default=4, help="Pairs per optimizer step.")
    parser.add_argument("--lr", type=float, default=5e-4, help="Learning rate (both sides).")
    parser.add_argument("--threads", type=int, default=1, help="torch threads per side.")
    parser.add_argument("--work", default=str(REPO / "runs" / "bench-dpo"), help="Scratch folder.")
    parser.add_argument("--precompute-ref", action="store_true",
                        help="Reference log-probs computed once per pair before training (both sides).")
    parser.add_argument("--sides", default=",".join(SIDES), help=f"Rows to run, comma-separated ({', '.join(SIDES)}).")
    parser.add_argument("--worker", choices=SIDES, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        return worker(args)

    sides = parse_sides(args.sides, SIDES)
    results = {}
    for side in sides:
        cmd = [sys.executable, __file__, "--worker", side, "--steps", str(args.steps), "--batch", str(args.batch),
               "--lr", str(args.lr), "--threads", str(args.threads), "--work", args.work,
               *(["--precompute-ref"] if args.precompute_ref else [])]
        env = {**os.environ, "OMP_NUM_THREADS": str(args.threads), "TOKENIZERS_PARALLELISM": "false"}
        proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True)
        line = next((x for x in proc.stdout.splitlines() if x.startswith("RESULT ")), None)
        if proc.returncode != 0 or line is None:
            sys.exit(f"{side} failed:\n{proc.stderr[-3000:]}")
        results[side] = json.loads(line[len("RESULT "):])
        results[side]["tokens_per_s"] = round(results[side]["tokens"] / results[side]["seconds"], 1)
        results[side]["tokens_per_cpu_s"] = round(results[side]["tokens"] / results[side]["cpu_seconds"], 1)

    print(f"\nDPO + LoRA on {MODEL}, {args.steps} steps × {args.batch} pairs, {args.threads} threads per side"
          f"{', reference log-probs precomputed' if args.precompute_ref else ''}")
    print(f"{'':<28}{'weights':>10}{'tokens':>8}{'seconds':>9}{'tokens/s':>10}{'CPU s':>8}{'tok/CPU s':>11}"
          f"{'peak RSS MB':>13}{'last loss':>11}")
    labels = {**{side: label for side, (label, _) in TRL_ROWS.items()}, "amauta": "Amauta --method dpo"}
    for side, r in results.items():
        print(f"{labels[side]:<28}{r['dtype'].removeprefix('torch.'):>10}{r['tokens']:>8}{r['seconds']:>9.1f}"
              f"{r['tokens_per_s']:>10.1f}{r['cpu_seconds']:>8.1f}{r['tokens_per_cpu_s']:>11.1f}"
              f"{r['peak_rss_mb']:>13.0f}{r['losses'][-1]:>11.4f}")
    ratios = {}
    if "amauta" in results:
        mine = results["amauta"]
        for side in (s for s in results if s != "amauta"):
            ratios[side] = {"wall": round(mine["tokens_per_s"] / results[side]["tokens_per_s"], 2),
                            "cpu": round(mine["tokens_per_cpu_s"] / results[side]["tokens_per_cpu_s"], 2)}
            print(f"ratio (Amauta / {labels[side]}): {ratios[side]['wall']:.2f}× tokens/s, "
                  f"{ratios[side]['cpu']:.2f}× tokens per CPU second")
    print(json.dumps({"benchmark": "dpo", "model": MODEL, "steps": args.steps, "batch": args.batch,
                      "threads": args.threads, "precompute_ref": args.precompute_ref, "ratios": ratios, **results}))

if __name__ == "__main__":
    main()
