"""Honest numbers: bootstrap intervals, paired flips between two models, and an exact McNemar test.

A 244-item benchmark moves by several points from noise alone, so every accuracy Amauta prints carries
a 95% interval, and a base-vs-adapter comparison names the items that flipped in each direction.

Below `MIN_CI_N` bootstrap units (items, or prompts for the judge) there is no interval: resampling one
or two values gives `3.67 [3.67–3.67]`, which reads as certainty, and a delta whose "interval" excludes
zero, which reads as significant. Such intervals are NaN in summaries and print as
`3.67 (n=2, sin intervalo)` (`interval_note`).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # numpy loads on use: the CLI imports this module for its config's options
    import numpy as np

MIN_CI_N = 5
"""The fewest bootstrap units (items, prompts) for which an interval is computed and printed."""


def has_interval(n: int | None) -> bool:
    """Whether `n` units are enough for an interval (`MIN_CI_N`); unknown n counts as enough."""
    return n is None or n >= MIN_CI_N


def interval_note(n: int | None) -> str:
    """What a table prints instead of an interval over too few units: "(n=2, sin intervalo)"."""
    return f"(n={n}, sin intervalo)" if n is not None else "(sin intervalo)"



def bootstrap_ci(values: Sequence[float], *, resamples: int = 2000, level: float = 0.95, seed: int = 0,
                 statistic: Callable[[np.ndarray], float] | None = None,
                 min_n: int = MIN_CI_N) -> tuple[float, float]:
    """Percentile bootstrap interval of the mean of `values` (or of `statistic` over resampled rows).

    values: per-item scores (0/1 for accuracy, F1 in [0, 1], or rows for a custom statistic).
    resamples: how many bootstrap samples to draw; 2000 keeps the interval's edges stable to ~0.5 point.
    level: the coverage of the interval.
    seed: fixed so that the same items always print the same interval.
    statistic: a function of a resampled array; the mean when None.
    min_n: fewer values than this give (nan, nan): no interval rather than a false one.
    """
    import numpy as np

    data = np.asarray(values, dtype=float)
    if len(data) == 0 or len(data) < min_n:
        return (float("nan"), float("nan"))
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, len(data), size=(resamples, len(data)))
    if statistic is None:
        stats = data[idx].mean(axis=1)
    else:
        stats = np.array([statistic(data[row]) for row in idx])
    alpha = (1 - level) / 2
    low, high = np.quantile(stats, [alpha, 1 - alpha])
    return (float(low), float(high))


def perplexity_ci(nll: Sequence[float], tokens: Sequence[int], **kwargs) -> tuple[float, float]:
    """Bootstrap interval of corpus perplexity exp(sum nll / sum tokens), resampling whole texts."""
    import numpy as np

    rows = np.stack([np.asarray(nll, dtype=float), np.asarray(tokens, dtype=float)], axis=1)
    return bootstrap_ci(rows, statistic=lambda r: math.exp(r[:, 0].sum() / max(r[:, 1].sum(), 1.0)), **kwargs)


def mcnemar_exact(b: int, c: int) -> float:
    """Two-sided exact McNemar p-value for `b` items lost and `c` items gained (binomial, p = 0.5)."""
    n = b + c
    if n == 0:
        return 1.0
    k = min(b, c)
    tail = sum(math.comb(n, i) for i in range(k + 1)) / 2**n
    return min(1.0, 2 * tail)


def paired_flips(base: dict[str, bool], other: dict[str, bool]) -> dict:
    """Compare per-item correctness of two models on the items both answered.

    base, other: item id → correct. Returns counts, the flipped item ids in both directions, the
    accuracy difference with a paired bootstrap interval, and McNemar's exact p-value.
    """
    import numpy as np

    shared = [i for i in base if i in other]
    lost = [i for i in shared if base[i] and not other[i]]
    gained = [i for i in shared if not base[i] and other[i]]
    diffs = [float(other[i]) - float(base[i]) for i in shared]
    low, high = bootstrap_ci(diffs)
    return {
        "n": len(shared),
        "both_correct": sum(1 for i in shared if base[i] and other[i]),
        "both_wrong": sum(1 for i in shared if not base[i] and not other[i]),
        "lost": len(lost),
        "gained": len(gained),
        "lost_ids": lost,
        "gained_ids": gained,
        "delta": float(np.mean(diffs)) if diffs else float("nan"),
        "delta_ci": [low, high],
        "p_mcnemar": mcnemar_exact(len(lost), len(gained)),
    }


def clustered_bootstrap_ci(values: Sequence[float], clusters: Sequence[str], *, resamples: int = 2000,
                           level: float = 0.95, seed: int = 0, min_clusters: int = MIN_CI_N) -> tuple[float, float]:
    """Percentile bootstrap interval of the mean of `values`, resampling whole clusters, not items.

    Items of one cluster are not independent (an exam asks each fact in several words, and a model that
    knows the fact answers them all): resampling items would make the interval too narrow. Each
    resample draws as many clusters as there are, with replacement, and takes the mean over all their
    items. With equal cluster sizes and the same seed it equals `bootstrap_ci` over the cluster means.

    values: per-item scores. clusters: each item's cluster (its fact id), in the same order.
    min_clusters: below this many clusters (the bootstrap's units here) the interval is (NaN, NaN).
    """
    import numpy as np

    data = np.asarray(values, dtype=float)
    if len(data) != len(clusters):
        raise ValueError(f"{len(data)} values but {len(clusters)} cluster labels")
    names, which = np.unique(np.asarray(list(clusters), dtype=str), return_inverse=True)
    if len(data) == 0 or len(names) < max(1, min_clusters):
        return (float("nan"), float("nan"))
    sums = np.bincount(which, weights=data, minlength=len(names))
    counts = np.bincount(which, minlength=len(names)).astype(float)
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, len(names), size=(resamples, len(names)))
    means = sums[idx].sum(axis=1) / counts[idx].sum(axis=1)
    alpha = (1 - level) / 2
    low, high = np.quantile(means, [alpha, 1 - alpha])
    return (float(low), float(high))
