"""The tables of an `amauta eval harness` folder: one per lm-eval task, in the terminal and in the report.

Each table has a row per model and, per metric, lm-eval's value ± its standard error; with several models,
each one's paired difference to the first on the same items (95% bootstrap interval, and for 0/1 metrics
the items lost and gained with McNemar's p). Registered as the report section of the `harness` task.
"""

from __future__ import annotations

from typing import Any

from amauta.core.summaries import Chart, ReportSection, register_section
from amauta.evaluate.compare import markdown_table
from amauta.evaluate.stats import has_interval, interval_note


def _value(metric: dict[str, Any] | None) -> str:
    if not metric or not isinstance(metric.get("value"), (int, float)):
        return "–"
    stderr = metric.get("stderr")
    return f"{metric['value']:.4f}" + (f" ± {stderr:.4f}" if isinstance(stderr, (int, float)) else "")


def _delta(comparison: dict[str, Any] | None) -> str:
    if comparison is None:
        return ""
    n = comparison.get("n")
    ci = comparison.get("delta_ci") or []
    interval = (interval_note(n) if not has_interval(n) or any(v is None or v != v for v in ci)
                else f"[{ci[0]:+.4f}, {ci[1]:+.4f}]")
    text = f"{comparison['delta']:+.4f} {interval}"
    if "lost" in comparison:
        text += f" (−{comparison['lost']}/+{comparison['gained']}, p={comparison['p_mcnemar']:.3f})"
    return text


def task_tables(summary: dict[str, Any]) -> list[tuple[str, list[str], list[list[str]]]]:
    """(title, headers, rows) per lm-eval task or group of the summary, in the order they were run."""
    labels = [m["label"] for m in summary.get("models", [])]
    by_key = {(c["task"], c["metric"], c["other"]): c for c in summary.get("comparisons", [])}
    tables = []
    for name, entry in (summary.get("tasks") or {}).items():
        metrics = list(dict.fromkeys(m for model in entry["models"].values() for m in model["metrics"]))
        compared = [m for m in metrics if any((name, m, label) in by_key for label in labels[1:])]
        headers = ["Model", *metrics, *[f"Δ {m} vs {labels[0]}" for m in compared]]
        rows = []
        for label in labels:
            model = entry["models"].get(label)
            if model is None:
                continue
            row = [label, *[_value(model["metrics"].get(m)) for m in metrics]]
            row += [_delta(by_key.get((name, m, label))) or ("(reference)" if label == labels[0] else "–")
                    for m in compared]
            rows.append(row)
        samples = entry.get("n_samples") or {}
        facts = [f"version {entry.get('version')}", f"{entry.get('n_shot')}-shot"]
        if samples:
            facts.append(f"{samples.get('effective')} of {samples.get('original')} items")
        if entry.get("subtasks"):
            facts.append(f"group of {len(entry['subtasks'])}")
        tables.append((f"{name} ({', '.join(facts)})", headers, rows))
    return tables


def report_markdown(summary: dict[str, Any], heading_level: int = 3) -> str:
    """The report's section body: a table per task, then how the numbers were made and where they are."""
    hashes = "#" * heading_level
    blocks = [f"lm-evaluation-harness {summary.get('lm_eval_version', '?')}, its own task definitions and "
              "metrics (± is lm-eval's standard error). Δ is each model's score minus the reference's on the "
              "same items, with a paired bootstrap 95% CI; for 0/1 metrics −lost/+gained items and McNemar's p."]
    for title, headers, rows in task_tables(summary):
        blocks.append(f"{hashes} {title}\n\n{markdown_table(headers, rows)}")
    config = summary.get("task_config") or {}
    settings = ", ".join(f"`{k}={v}`" for k, v in config.items() if v not in (None, [], False))
    lines = [f"- Settings: {settings}"] if settings else []
    for model in summary.get("models", []):
        where = f"`{model['model']}`" + (f" + adapter `{model['adapter']}`" if model.get("adapter") else "")
        lines.append(f"- `{model['label']}`: {where}, numerics {model.get('numerics')}")
    lines.append("- Files: `samples/LABEL.TASK.KEY.jsonl` (lm-eval's log_samples, a row per item), "
                 "`results/LABEL.TASK.KEY.json` (lm-eval's output), KEY as in `keys` of summary.json")
    blocks.append("\n".join(lines))
    return "\n\n".join(blocks)


def charts(summary: dict[str, Any]) -> list[Chart]:
    """Each task's first metric per model, as grouped bars (tasks as groups)."""
    labels = [m["label"] for m in summary.get("models", [])]
    groups, series = [], {label: [] for label in labels}
    for name, entry in (summary.get("tasks") or {}).items():
        first = next((m for model in entry["models"].values() for m in model["metrics"]), None)
        if first is None:
            continue
        groups.append(f"{name} {first}")
        for label in labels:
            metric = (entry["models"].get(label) or {}).get("metrics", {}).get(first) or {}
            value = metric.get("value")
            series[label].append(float(value) if isinstance(value, (int, float)) else float("nan"))
    if not groups:
        return []
    return [Chart(name="tasks", groups=groups, series=series, title="lm-eval tasks", ylabel="score",
                  caption="Each task's first metric per model")]


register_section("harness", ReportSection(title="lm-evaluation-harness tasks", markdown=report_markdown, charts=charts))
