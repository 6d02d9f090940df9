"""How far to trust the judge: agreement between the LLM judge's 1–5 scores and people's.

Two numbers, as in the rubric-grading literature: Cohen's kappa with quadratic weights (a 4 against a 5
costs little, a 1 against a 5 costs a lot; chance agreement removed) and Spearman's rank correlation
(does the judge order answers the way people do, even if it is harsher or kinder overall).
"""

from __future__ import annotations

import warnings
from collections.abc import Iterable, Sequence

import numpy as np

SCALE = (1, 2, 3, 4, 5)


def weighted_kappa(a: Sequence[int], b: Sequence[int], *, categories: Sequence[int] = SCALE,
                   weights: str = "quadratic") -> float:
    """Cohen's weighted kappa between two raters' scores on the same items.

    a, b: the two raters' scores, item by item. categories: the scale's values, in order.
    weights: "quadratic" (disagreement cost grows with the squared distance), "linear", or "none".
    Returns nan when there are no items or chance agreement is already perfect (both raters constant).
    """
    if len(a) != len(b):
        raise ValueError("weighted_kappa needs two score lists of the same length")
    if not len(a):
        return float("nan")
    index = {c: i for i, c in enumerate(categories)}
    k = len(categories)
    observed = np.zeros((k, k))
    for x, y in zip(a, b, strict=True):
        observed[index[int(x)], index[int(y)]] += 1
    observed /= observed.sum()
    expected = np.outer(observed.sum(axis=1), observed.sum(axis=0))
    i, j = np.meshgrid(np.arange(k), np.arange(k), indexing="ij")
    if weights == "quadratic":
        w = (i - j) ** 2 / (k - 1) ** 2
    elif weights == "linear":
        w = np.abs(i - j) / (k - 1)
    elif weights == "none":
        w = (i != j).astype(float)
    else:
        raise ValueError(f"unknown kappa weights {weights!r}; use quadratic, linear or none")
    denominator = (w * expected).sum()
    if denominator == 0:
        return float("nan")
    return float(1 - (w * observed).sum() / denominator)


def spearman(a: Sequence[float], b: Sequence[float]) -> tuple[float, float]:
    """Spearman's rho and its two-sided p-value (nan when either side is constant or n < 3)."""
    if len(a) < 3 or len(set(a)) < 2 or len(set(b)) < 2:
        return (float("nan"), float("nan"))
    from scipy.stats import spearmanr

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        result = spearmanr(a, b)
    return (float(result.statistic), float(result.pvalue))


def agreement(pairs: Iterable[tuple[int, int]]) -> dict[str, float]:
    """Kappa (quadratic), Spearman and exact/within-one agreement over (rater A, rater B) score pairs."""
    pairs = list(pairs)
    a = [int(p[0]) for p in pairs]
    b = [int(p[1]) for p in pairs]
    rho, p = spearman(a, b)
    n = len(pairs)
    return {
        "n": n,
        "kappa": weighted_kappa(a, b) if n else float("nan"),
        "spearman": rho,
        "p": p,
        "exact": sum(x == y for x, y in pairs) / n if n else float("nan"),
        "within_one": sum(abs(x - y) <= 1 for x, y in pairs) / n if n else float("nan"),
        "mean_a": float(np.mean(a)) if n else float("nan"),
        "mean_b": float(np.mean(b)) if n else float("nan"),
    }


def judge_vs_people(judge: dict[tuple, dict[str, int]], people: list[tuple[tuple, dict[str, int]]],
                    criteria: Sequence[str]) -> dict[str, dict[str, float]]:
    """Agreement per criterion (and over all criteria pooled) between the judge and every human grade.

    judge: answer key → the judge's scores. people: (answer key, a person's scores), one per grade, so an
    answer graded by two people counts twice. criteria: the rubric's criteria.
    """
    table: dict[str, dict[str, float]] = {}
    pooled: list[tuple[int, int]] = []
    for criterion in criteria:
        pairs = [(judge[key][criterion], scores[criterion]) for key, scores in people
                 if key in judge and criterion in scores and criterion in judge[key]]
        table[criterion] = agreement(pairs)
        pooled += pairs
    table["all"] = agreement(pooled)
    return table


def between_people(grades: dict[str, dict[tuple, dict[str, int]]], criteria: Sequence[str]) -> dict[str, float] | None:
    """Agreement between every pair of graders on the answers both graded (all criteria pooled), or None."""
    names = sorted(grades)
    pairs: list[tuple[int, int]] = []
    for x in range(len(names)):
        for y in range(x + 1, len(names)):
            a, b = grades[names[x]], grades[names[y]]
            for key in a.keys() & b.keys():
                pairs += [(a[key][c], b[key][c]) for c in criteria if c in a[key] and c in b[key]]
    return agreement(pairs) if pairs else None
