"""Train a TRL trainer and measure what the benchmarks compare: tokens in each batch and the training time
(shared by benchmarks/train.py and benchmarks/dpo.py)."""

from __future__ import annotations

import time
from typing import Any


def timed_train(trainer: Any) -> tuple[list[int], float]:
    """Run `trainer.train()`; the non-padding tokens of every batch its collator made, and the seconds
    between the start and the end of training (model loading and set-up left out)."""
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
            self.started = time.perf_counter()

        def on_train_end(self, *a, **k):
            self.seconds = time.perf_counter() - self.started

    timer = Timer()
    trainer.add_callback(timer)
    trainer.train()
    return counts, timer.seconds
