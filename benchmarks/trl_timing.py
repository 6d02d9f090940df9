"""Train a TRL trainer and measure what the benchmarks compare: tokens in each batch and the training time,
wall-clock and CPU (shared by benchmarks/train.py and benchmarks/dpo.py).

The CPU time (`time.process_time`, all threads of the process) is what a run on a machine shared with other
work can still compare: wall-clock seconds there measure the scheduler's share as much as the trainer.
`run_amauta` measures the same around Amauta's loop.
"""

from __future__ import annotations

import sys
import time
from typing import Any


def timed_train(trainer: Any) -> tuple[list[int], float, float]:
    """Run `trainer.train()`; the non-padding tokens of every batch its collator made, and the wall-clock and
    CPU seconds between the start and the end of training (model loading and set-up left out)."""
    from transformers import TrainerCallback

    counts: list[int] = []
    collate = trainer.data_collator

    def counting_collator(features):
        batch = collate(features)
        counts.append(int(batch["attention_mask"].sum()) if "attention_mask" in batch else int(batch["input_ids"].numel()))
        return batch

    trainer.data_collator = counting_collator

    class Timer(TrainerCallback):
        def on_train_begin(self, *a, **k):
            self.started, self.cpu_started = time.perf_counter(), time.process_time()

        def on_train_end(self, *a, **k):
            self.seconds = time.perf_counter() - self.started
            self.cpu_seconds = time.process_time() - self.cpu_started

    timer = Timer()
    trainer.add_callback(timer)
    trainer.train()
    return counts, timer.seconds, timer.cpu_seconds


def timed_amauta_run(config: Any) -> float:
    """Amauta's `recipe.run` with the CPU seconds of its training loop (`fit`, as `train_seconds` in
    summary.json times it) returned."""
    from amauta.train.recipe import recipe_class

    recipe = recipe_class(config.method)(config, progress=False)
    try:
        recipe.setup()
        started = time.process_time()
        recipe.fit()
        cpu_seconds = time.process_time() - started
        recipe.save()
    finally:
        recipe.release()
    return cpu_seconds


def parse_sides(text: str, known: tuple[str, ...]) -> list[str]:
    """The rows asked for with --sides (comma-separated), or exit naming the unknown ones."""
    sides = [side.strip() for side in text.split(",") if side.strip()]
    unknown = [side for side in sides if side not in known]
    if unknown:
        sys.exit(f"--sides: unknown {', '.join(unknown)}; choose from {', '.join(known)}")
    return sides
