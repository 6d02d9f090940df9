"""`loss.png`: training and validation loss against optimizer steps (the thesis's Figures 4–6).

The thesis plotted these by hand after each run; here every run writes one, and `amauta train plot`
redraws it (or overlays several runs) from the runs' `log.jsonl`.
"""

from __future__ import annotations

from pathlib import Path

from amauta.core.errors import AmautaError
from amauta.core.files import atomic_write_bytes, read_jsonl


def _smooth(values: list[float], weight: float = 0.8) -> list[float]:
    """Exponential moving average (TensorBoard's smoothing), so the trend shows through step noise."""
    out, last = [], None
    for v in values:
        last = v if last is None else weight * last + (1 - weight) * v
        out.append(last)
    return out


def _plot_rewards(ax, rows: list[dict], color: str, name: str) -> None:
    """Preference runs: the reward margin (chosen minus rejected) and how often chosen wins, per step."""
    margin = [(r["step"], r["reward_margin"]) for r in rows if "reward_margin" in r]
    accuracy = [(r["step"], r["reward_accuracy"]) for r in rows if "reward_accuracy" in r]
    if margin:
        ax.plot(*zip(*margin, strict=True), color=color, linewidth=1.5, label=f"{name}reward margin")
    if accuracy:
        ax.plot(*zip(*accuracy, strict=True), color=color, linestyle=":", linewidth=1.5, label=f"{name}reward accuracy")
    ax.set_ylabel("reward margin / accuracy")
    ax.grid(alpha=0.3)
    ax.legend(loc="upper left")


def plot_loss(logs: Path | list[Path], out_png: Path, title: str | None = None, labels: list[str] | None = None) -> Path:
    """Draw train (raw and smoothed) and validation loss per step for one or more runs' log.jsonl.

    logs: one log.jsonl path, or several to overlay runs.
    out_png: where to write the PNG (atomically).
    title: the figure title.
    labels: a legend name per log (default: the run folder names).
    """
    import io

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    paths = [Path(logs)] if isinstance(logs, (str, Path)) else [Path(p) for p in logs]
    labels = labels or [p.parent.name for p in paths]
    all_rows = [list(read_jsonl(path, tolerate_torn_tail=True)) for path in paths]
    rewards = any("reward_margin" in r for rows in all_rows for r in rows)  # preference runs (DPO, ORPO, KTO)
    if rewards:
        fig, (ax, reward_ax) = plt.subplots(2, 1, figsize=(8, 7), dpi=110, sharex=True, height_ratios=(3, 2))
    else:
        fig, ax = plt.subplots(figsize=(8, 4.5), dpi=110)
    guard_ax = None
    for index, (path, label, rows) in enumerate(zip(paths, labels, all_rows, strict=True)):
        train = [(r["step"], r["loss"]) for r in rows if "loss" in r]
        val = [(r["step"], r["val_loss"]) for r in rows if "val_loss" in r]
        guard = [(r["step"], r["guard_accuracy"]) for r in rows if "guard_accuracy" in r]
        if not train:
            raise AmautaError(f"{path}: no training steps logged yet; nothing to plot")
        color = f"C{index}"
        name = f"{label} " if len(paths) > 1 else ""
        steps, losses = zip(*train, strict=True)
        ax.plot(steps, losses, color=color, alpha=0.25, linewidth=1)
        ax.plot(steps, _smooth(list(losses)), color=color, linewidth=2, label=f"{name}train (smoothed)")
        if val:
            ax.plot(*zip(*val, strict=True), color=color, linestyle="--", marker="o", markersize=4, label=f"{name}validation")
        if rewards:
            _plot_rewards(reward_ax, rows, color, name)
        if guard:
            guard_ax = guard_ax or ax.twinx()
            guard_ax.plot(*zip(*guard, strict=True), color=color, linestyle=":", marker="s", markersize=3,
                          label=f"{name}Belebele accuracy")
            guard_ax.set_ylabel("Belebele accuracy (forgetting guard)")
    (reward_ax if rewards else ax).set_xlabel("optimizer step")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_ylabel("loss (answer tokens)")
    ax.set_title(title or "training loss")
    ax.grid(alpha=0.3)
    handles, names = ax.get_legend_handles_labels()
    if guard_ax is not None:
        more = guard_ax.get_legend_handles_labels()
        handles, names = handles + more[0], names + more[1]
    ax.legend(handles, names, loc="upper right")
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    plt.close(fig)
    return atomic_write_bytes(out_png, buffer.getvalue())
