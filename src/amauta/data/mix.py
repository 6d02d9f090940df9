"""Mixing sources and splitting train/validation, deterministically by hashed id.

Every decision hashes the record's id with the seed, never a random generator's state: the same
records give the same split and the same sample on any machine, and a record keeps its side of the
split when other records are added or removed. Mixing general Spanish data into a domain set is the
known remedy for catastrophic forgetting; `cap` and `weight` per source set the proportions.
"""

from __future__ import annotations

import hashlib
import math
from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import replace

from pydantic import Field

from amauta.core.config import StageConfig
from amauta.data.records import Record


class SplitConfig(StageConfig):
    """How validation records are chosen."""

    val_fraction: float = Field(
        0.05, ge=0, lt=1, description="Share of each source's records that go to validation (by hashed id).")
    val_max: int | None = Field(
        None, gt=0, description="At most this many validation records in all (the rest of those chosen go "
                                "back to train).")
    seed: int = Field(0, description="Changes every hash-based choice (split, sampling, train order).")


def unit_hash(key: str, seed: int, salt: str) -> float:
    """A number in [0, 1) fixed by (salt, seed, key)."""
    digest = hashlib.sha256(f"{salt}:{seed}:{key}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def select(records: Sequence[Record], *, weight: float, cap: int | None, seed: int) -> list[Record]:
    """Down-sample one source: keep `min(cap, round(n * weight))` records (weight ≤ 1), chosen by hash."""
    n = len(records)
    keep = n if weight >= 1 else round(n * weight)
    if cap is not None:
        keep = min(keep, cap)
    if keep >= n:
        return list(records)
    chosen = set(sorted(range(n), key=lambda i: unit_hash(records[i].id, seed, "sample"))[:keep])
    return [r for i, r in enumerate(records) if i in chosen]


def repeat(records: Sequence[Record], weight: float, seed: int) -> list[Record]:
    """Up-sample a source in train by `weight` > 1: whole copies, plus a hashed share for the fraction.

    Copies get ids `<id>~2`, `<id>~3`... so ids stay unique in the output.
    """
    whole, frac = int(math.floor(weight)), weight - math.floor(weight)
    out = []
    for r in records:
        copies = whole + (1 if unit_hash(r.id, seed, "repeat") < frac else 0)
        out.append(r)
        out += [replace(r, id=f"{r.id}~{k}") for k in range(2, copies + 1)]
    return out


def split(records: Sequence[Record], config: SplitConfig) -> tuple[list[Record], list[Record]]:
    """Train and validation lists; validation is each record whose hash falls under `val_fraction`."""
    train, val = [], []
    for r in records:
        (val if unit_hash(r.id, config.seed, "split") < config.val_fraction else train).append(r)
    if config.val_max is not None and len(val) > config.val_max:
        val.sort(key=lambda r: unit_hash(r.id, config.seed, "val"))
        train += val[config.val_max:]
        val = val[: config.val_max]
    return train, val


def mix(by_source: dict[str, list[Record]], weights: dict[str, float], caps: dict[str, int | None],
        config: SplitConfig) -> tuple[list[Record], list[Record], dict[str, Counter]]:
    """Sample each source, split it, up-sample train where weight > 1, and shuffle train by hash.

    Returns (train, val, counts) with counts[source] = Counter(selected=..., train=..., val=...).
    """
    train: list[Record] = []
    val: list[Record] = []
    counts: dict[str, Counter] = defaultdict(Counter)
    for source, records in by_source.items():
        weight = weights.get(source, 1.0)
        chosen = select(records, weight=weight, cap=caps.get(source), seed=config.seed)
        s_train, s_val = split(chosen, SplitConfig(val_fraction=config.val_fraction, seed=config.seed))
        if weight > 1:
            s_train = repeat(s_train, weight, config.seed)
        counts[source].update(selected=len(chosen), train=len(s_train), val=len(s_val))
        train += s_train
        val += s_val
    if config.val_max is not None and len(val) > config.val_max:
        val.sort(key=lambda r: unit_hash(r.id, config.seed, "val"))
        for r in val[config.val_max:]:
            counts[r.source]["val"] -= 1
            counts[r.source]["train"] += 1
        train += val[config.val_max:]
        val = val[: config.val_max]
    # Interleave sources in train so a sequential reader sees a mixture, not one source after another.
    train.sort(key=lambda r: unit_hash(r.id, config.seed, "order"))
    val.sort(key=lambda r: unit_hash(r.id, config.seed, "order"))
    return train, val, dict(counts)
