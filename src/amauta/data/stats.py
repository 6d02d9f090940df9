"""Statistics of a prepared dataset: counts per source and rule, token-length percentiles, a histogram."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

PERCENTILES = (50, 90, 95, 99)


def length_summary(lengths: Sequence[int]) -> dict[str, float | int]:
    """count, mean, min, p50/p90/p95/p99 and max of token lengths (empty → zeros)."""
    import numpy as np  # here, not at the top: the CLI imports this module for a config and needs no numpy

    if not lengths:
        return {"count": 0, "mean": 0.0, "min": 0, **{f"p{p}": 0 for p in PERCENTILES}, "max": 0}
    arr = np.asarray(lengths)
    return {"count": int(arr.size), "mean": round(float(arr.mean()), 1), "min": int(arr.min()),
            **{f"p{p}": int(np.percentile(arr, p)) for p in PERCENTILES}, "max": int(arr.max())}


def plot_lengths(lengths_by_template: dict[str, Sequence[int]], path: str | Path, *, max_tokens: int | None = None,
                 title: str = "Token length per conversation") -> Path:
    """Overlaid histograms of token lengths, one per template, with the `max_tokens` cut as a line."""
    import matplotlib
    import numpy as np

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4), dpi=110)
    top = max((max(v) for v in lengths_by_template.values() if len(v)), default=1)
    bins = np.linspace(0, max(top, 1), 50)
    for name, lengths in lengths_by_template.items():
        if len(lengths):
            ax.hist(lengths, bins=bins, histtype="step", linewidth=1.6, label=f"{name} (p95 {int(np.percentile(lengths, 95))})")
    if max_tokens is not None and max_tokens <= top * 1.1:
        ax.axvline(max_tokens, color="black", linestyle="--", linewidth=1, label=f"max_tokens {max_tokens}")
    ax.set_xlabel("tokens (whole conversation, template applied)")
    ax.set_ylabel("conversations")
    ax.set_title(title)
    if lengths_by_template:
        ax.legend(fontsize=8)
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path)
    plt.close(fig)
    return path
