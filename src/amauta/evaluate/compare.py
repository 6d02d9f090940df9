"""The comparison table (the thesis's Table 5, with intervals and flips), printed and in Markdown.

Every eval folder's `summary.json` lists its models (base, adapters) with their metrics and, when
there are several, the per-item flips of each against the first. This module turns that into one
table, the same in the terminal (rich) and in the report (Markdown), by the summary's `task` field.
"""

from __future__ import annotations

from typing import Any

from amauta.evaluate.stats import has_interval, interval_note

# Per task: the metric columns (key in `metrics`, header, whether it is a proportion shown as %).
COLUMNS: dict[str, list[tuple[str, str, bool]]] = {
    "belebele": [("acc", "Accuracy", True), ("acc_norm", "Acc. (norm)", True)],
    "perplexity": [("ppl", "Perplexity", False), ("bits_per_byte", "Bits/byte", False)],
    "xquad": [("em", "EM", True), ("f1", "F1", True)],
    "mgsm": [("acc", "Accuracy", True)],
}


def _fmt(value: Any, percent: bool) -> str:
    if value is None:
        return "–"
    return f"{100 * value:.1f}" if percent else f"{value:.3f}"


def _fmt_ci(ci: Any, percent: bool, n: Any = None) -> str:
    """"[low, high]"; over fewer than MIN_CI_N units "(n=2, sin intervalo)", whatever the summary holds."""
    if isinstance(n, int) and not has_interval(n):
        return interval_note(n)
    if not ci or any(v is None or v != v for v in ci):
        return "–"
    return f"[{_fmt(ci[0], percent)}, {_fmt(ci[1], percent)}]"


def table_rows(summary: dict[str, Any]) -> tuple[list[str], list[list[str]]]:
    """Headers and rows for a summary: one row per model, metrics with 95% CIs, flips vs the first model."""
    task = summary.get("task", "")
    columns = COLUMNS.get(task) or _guess_columns(summary)
    headers = ["Model", "Adapter", "n"]
    for key, title, _ in columns:
        headers += [title, "95% CI"] if any(f"{key}_ci" in m["metrics"] for m in summary["models"]) else [title]
    flips = {c["other"]: c for c in summary.get("comparisons", [])}
    if flips:
        headers += ["Δ vs base", "lost", "gained", "p (McNemar)"]
    rows = []
    for model in summary["models"]:
        metrics = model["metrics"]
        n = model.get("n", metrics.get("n"))
        row = [model["label"], _short(model.get("adapter")) or "—", str(n if n is not None else "")]
        for key, _, percent in columns:
            row.append(_fmt(metrics.get(key), percent))
            if any(f"{key}_ci" in m["metrics"] for m in summary["models"]):
                row.append(_fmt_ci(metrics.get(f"{key}_ci"), percent, n))
        if flips:
            c = flips.get(model["label"])
            row += ([f"{100 * c['delta']:+.1f} {_fmt_ci(c['delta_ci'], True, c.get('n'))}", str(c["lost"]), str(c["gained"]),
                     f"{c['p_mcnemar']:.3f}"] if c else ["(reference)", "", "", ""])
        rows.append(row)
    return headers, rows


def _guess_columns(summary: dict[str, Any]) -> list[tuple[str, str, bool]]:
    """For a task this module does not know: every scalar metric that has an interval."""
    metrics = summary["models"][0]["metrics"] if summary.get("models") else {}
    return [(k, k, 0 <= float(v) <= 1) for k, v in metrics.items()
            if isinstance(v, (int, float)) and f"{k}_ci" in metrics]


def _short(path: str | None) -> str:
    if not path:
        return ""
    parts = str(path).rstrip("/").split("/")
    return "/".join(parts[-2:])


def markdown_table(headers: list[str], rows: list[list[str]]) -> str:
    """A GitHub-flavoured Markdown table."""
    esc = [[cell.replace("|", "\\|") for cell in row] for row in [headers, *rows]]
    lines = ["| " + " | ".join(esc[0]) + " |", "|" + "|".join("---" for _ in headers) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in esc[1:]]
    return "\n".join(lines)


def print_summary(summary: dict[str, Any], out_dir: str = "", console: Any = None) -> None:
    """Print the comparison table (rich) and where the per-item results are."""
    from rich.table import Table

    from amauta.core.console import make_console

    console = console or make_console()
    headers, rows = table_rows(summary)
    config = summary.get("task_config", {})
    detail = ", ".join(f"{k}={v}" for k, v in config.items()
                       if k in ("formulation", "prompt", "max_new_tokens") and len(str(v)) < 40)
    table = Table(title=f"{summary['task']} · {summary['n_items']} items" + (f" · {detail}" if detail else ""))
    for header in headers:
        table.add_column(header, justify="left" if header in ("Model", "Adapter") else "right")
    for row in rows:
        table.add_row(*row)
    console.print(table)
    for model in summary["models"]:
        preds = model["metrics"].get("predictions")
        if preds:
            console.print(f"  {model['label']}: predicted letters {preds}")
    if out_dir:
        console.print(f"per-item results: {out_dir}/{summary.get('items_file', 'items.jsonl')}")
