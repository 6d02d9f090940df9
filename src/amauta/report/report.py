"""`amauta report RUN_DIRS... --out report/`: one Markdown and one self-contained HTML report.

Each folder given is rendered by what it is:

- an eval folder (its `summary.json` has a `task`): the comparison table (the thesis's Table 5 for
  Belebele: accuracy, 95% interval, flips vs base), per-category table when the items have categories,
  a bar chart with the intervals, the settings that produced it (formulation, prompt, decoding), the
  data files with their hashes, and the per-item file each number comes from (`items.jsonl`, the
  model's cache key);
- a training run (`log.jsonl`): the loss curves (drawn by the train room's `plot_loss`) and its summary;
- any other task (e.g. `judge`, `chat.demo`): the `ReportSection` its room registered in `amauta.core.summaries`
  for that `task` renders the section (`markdown(summary, heading_level=3)`) and names the charts to
  draw (`charts(summary)`).

Figures go to `out/figures/` for the Markdown and are inlined as base64 in the HTML, so the HTML file
can be mailed on its own.
"""

from __future__ import annotations

import base64
import html
import io
import json
import re
import time
from pathlib import Path
from typing import Any

from pydantic import Field

from amauta.chat import demo as _chat_demo  # noqa: F401  (registers the chat demo's section)
from amauta.core.config import StageConfig
from amauta.core.errors import AmautaError
from amauta.core.files import atomic_write_bytes, atomic_write_text, read_jsonl
from amauta.core.manifest import write_manifest
from amauta.core.summaries import section_for
from amauta.evaluate import exam as _exam  # noqa: F401  (registers the exam's section)
from amauta.evaluate import harness_tables as _harness  # noqa: F401  (registers `eval harness`'s section)
from amauta.evaluate.compare import COLUMNS, _fmt_ci, markdown_table, table_rows
from amauta.evaluate.stats import has_interval
from amauta.judge import tables as _judge_tables  # noqa: F401  (registers the judge's section)

TASK_TITLES = {"belebele": "Belebele reading comprehension", "perplexity": "Perplexity on held-out Spanish text",
               "xquad": "XQuAD-es (extractive QA)", "mgsm": "MGSM-es (maths word problems)"}


class ReportConfig(StageConfig):
    """`amauta report`: render eval folders and training runs into report.md and report.html."""

    run_dirs: list[str] = Field(..., min_length=1, description="Eval folders (summary.json) and training runs (log.jsonl).")
    out: str = Field("report", description="Folder for report.md, report.html and figures/.")
    title: str = Field("Amauta evaluation report", description="The report's title.")


class _Doc:
    """Markdown blocks plus the figures they reference."""

    def __init__(self) -> None:
        self.blocks: list[str] = []
        self.figures: dict[str, bytes] = {}

    def add(self, text: str) -> None:
        self.blocks.append(text.strip())

    def figure(self, name: str, png: bytes, caption: str) -> None:
        name = re.sub(r"[^A-Za-z0-9_.-]+", "-", name)
        while name in self.figures:
            name = "x" + name
        self.figures[name] = png
        self.add(f"![{caption}](figures/{name})\n\n*{caption}*")

    def markdown(self) -> str:
        return "\n\n".join(self.blocks) + "\n"


def _png(fig) -> bytes:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", bbox_inches="tight")
    import matplotlib.pyplot as plt

    plt.close(fig)
    return buffer.getvalue()


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def bar_chart(labels: list[str], values: list[float], errors: list[tuple[float, float]] | None, title: str,
              ylabel: str, chance: float | None = None) -> bytes:
    """Bars with 95% interval whiskers (and a chance line for multiple choice)."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(max(4.0, 1.2 * len(labels) + 2), 3.6), dpi=110)
    yerr = None
    if errors:
        yerr = [[max(v - lo, 0) for v, (lo, _) in zip(values, errors, strict=True)], [max(hi - v, 0) for v, (_, hi) in zip(values, errors, strict=True)]]
    ax.bar(labels, values, yerr=yerr, capsize=4, color=[f"C{i}" for i in range(len(labels))])
    if chance is not None:
        ax.axhline(chance, color="grey", linestyle="--", linewidth=1, label="chance")
        ax.legend(loc="upper right")
    ax.set_title(title)
    ax.set_ylabel(ylabel)
    ax.tick_params(axis="x", labelrotation=15)
    return _png(fig)


def grouped_bars(groups: list[str], series: dict[str, list[float]], title: str, ylabel: str,
                 errors: dict[str, list[tuple[float, float] | None]] | None = None) -> bytes:
    """One group of bars per category, one bar per model; `errors` adds 95% interval whiskers per series
    ((low, high) per bar, None for a bar without an interval). NaN values draw no bar."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(max(5.0, 0.9 * len(groups) * max(len(series), 1) + 2), 3.8), dpi=110)
    width = 0.8 / max(len(series), 1)
    for k, (name, values) in enumerate(series.items()):
        yerr = _yerr(values, (errors or {}).get(name))
        ax.bar([g + k * width for g in range(len(groups))], values, width=width, label=name, color=f"C{k}",
               yerr=yerr, capsize=3 if yerr is not None else 0)
    ax.set_xticks([g + width * (len(series) - 1) / 2 for g in range(len(groups))], groups, rotation=15)
    ax.set_title(title)
    ax.set_ylabel(ylabel)
    ax.legend()
    return _png(fig)


def _yerr(values: list[float], intervals: list[tuple[float, float] | None] | None) -> list[list[float]] | None:
    """matplotlib's asymmetric yerr for bars with (low, high) intervals; no whisker where there is none."""
    if not intervals or not any(intervals):
        return None
    below = [max(v - ci[0], 0.0) if ci and v == v else 0.0 for v, ci in zip(values, intervals, strict=True)]
    above = [max(ci[1] - v, 0.0) if ci and v == v else 0.0 for v, ci in zip(values, intervals, strict=True)]
    return [below, above]


# --------------------------------------------------------------------------- sections

def _manifest(folder: Path) -> dict[str, Any]:
    path = folder / "manifest.json"
    try:
        return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}
    except json.JSONDecodeError:
        return {}


def _settings_lines(summary: dict[str, Any], manifest: dict[str, Any]) -> list[str]:
    config = summary.get("task_config", {})
    lines = []
    shown = {k: v for k, v in config.items() if k not in ("prompt",) or summary.get("task") == "belebele"}
    if shown:
        lines.append("Settings: " + ", ".join(f"`{k}={v if not isinstance(v, list) else len(v)}`" for k, v in shown.items()
                                              if k != "data"))
    if summary.get("task") in ("xquad", "mgsm") or config.get("formulation") == "generate":
        lines.append(f"Decoding: greedy, at most {config.get('max_new_tokens')} new tokens, the model's chat template "
                     "and stop strings.")
    inputs = manifest.get("inputs") or {}
    for path, digest in inputs.items():
        lines.append(f"Data: `{path}` (sha256 `{digest[:12]}…`)")
    versions = manifest.get("versions") or {}
    if versions:
        lines.append("Versions: " + ", ".join(f"{k} {v}" for k, v in versions.items() if k in
                                              ("amauta", "torch", "transformers", "peft")))
    load = manifest.get("load") or {}
    if load:
        lines.append("Loading: " + ", ".join(f"{k}={v}" for k, v in load.items()))
    return lines


def eval_section(doc: _Doc, folder: Path, summary: dict[str, Any], index: int) -> None:
    """A built-in task (belebele, perplexity, xquad, mgsm): table, chart, settings and traceability."""
    task = summary["task"]
    config = summary.get("task_config", {})
    subtitle = ", ".join(f"{k} {config[k]}" for k in ("formulation", "prompt") if k in config)
    doc.add(f"## {TASK_TITLES.get(task, task)}{f' ({subtitle})' if subtitle else ''}\n\n"
            f"Folder `{folder}` · {summary.get('n_items')} items · {summary.get('created', '')}")
    headers, rows = table_rows(summary)
    doc.add(markdown_table(headers, rows))
    if summary.get("comparisons"):
        doc.add("Δ is each model's score minus the reference's on the same items, with a paired bootstrap 95% CI; "
                "*lost* = items the reference answered right and this model wrong, *gained* the reverse; "
                "p is McNemar's exact test on those flips.")
    key, title, percent = (COLUMNS.get(task) or [("acc", "Accuracy", True)])[0]
    models = summary["models"]
    values = [m["metrics"].get(key) for m in models]
    if all(isinstance(v, (int, float)) for v in values):
        scale = 100 if percent else 1
        errors = _whiskers(models, key, scale)
        png = bar_chart([m["label"] for m in models], [v * scale for v in values], errors,
                        f"{TASK_TITLES.get(task, task)}: {title}", title + (" (%)" if percent else ""),
                        chance=25.0 if task == "belebele" and key == "acc" else None)
        doc.figure(f"{index:02d}-{task}.png", png, f"{title} per model with 95% bootstrap intervals ({folder.name})")
    categories = sorted({c for m in models for c in (m["metrics"].get("by_category") or {})})
    if categories:
        cat_rows = [[m["label"], c, f"{100 * m['metrics']['by_category'][c]['acc']:.1f}",
                     _fmt_ci(m["metrics"]["by_category"][c]["acc_ci"], True, m["metrics"]["by_category"][c]["n"]),
                     str(m["metrics"]["by_category"][c]["n"])]
                    for m in models for c in categories if c in m["metrics"]["by_category"]]
        doc.add("**By category**\n\n" + markdown_table(["Model", "Category", "Accuracy", "95% CI", "n"], cat_rows))
        series = {m["label"]: [100 * m["metrics"]["by_category"].get(c, {}).get("acc", 0) for c in categories] for m in models}
        doc.figure(f"{index:02d}-{task}-categories.png", grouped_bars(categories, series, "Accuracy by category", "%"),
                   f"Accuracy by category ({folder.name})")
    for model in models:
        preds = model["metrics"].get("predictions")
        if preds:
            doc.add(f"Predicted letters, {model['label']}: " + ", ".join(f"{k} {v}" for k, v in preds.items()))
    manifest = _manifest(folder)
    lines = _settings_lines(summary, manifest)
    items_file = folder / summary.get("items_file", "items.jsonl")
    trace = [f"`{m['label']}`: model `{m['model']}`" + (f" + adapter `{m['adapter']}`" if m.get("adapter") else "")
             + f", rows with `\"key\": \"{m['key']}\"`" for m in models if "key" in m]
    lines.append(f"Per-item results: `{items_file}` — " + "; ".join(trace))
    doc.add("\n".join(f"- {line}" for line in lines))


def _whiskers(models: list[dict[str, Any]], key: str, scale: float) -> list[tuple[float, float]] | None:
    """Each model's 95% interval of `key`, scaled for the chart; None when a model has none recorded.

    A model scored on fewer than MIN_CI_N items gets no whisker (low = high = its value): it has no
    interval, which is not the same as a certain one.
    """
    cis = [m["metrics"].get(f"{key}_ci") for m in models]
    if not all(cis):
        return None
    errors = []
    for model, ci in zip(models, cis, strict=True):
        value = model["metrics"][key] * scale
        usable = has_interval(model.get("n", model["metrics"].get("n"))) and all(x == x for x in ci)
        errors.append((ci[0] * scale, ci[1] * scale) if usable else (value, value))
    return errors


def hooked_section(doc: _Doc, folder: Path, summary: dict[str, Any], index: int) -> None:
    """A task another room renders (e.g. `judge`): its registered section's Markdown and charts."""
    task = str(summary.get("task"))
    section = section_for(task)
    doc.add(f"## {section.title if section else TASK_TITLES.get(task, task)}\n\n"
            f"Folder `{folder}` · {summary.get('created', '')}")
    if section is None:
        doc.add("No renderer for this task; its summary:\n\n```json\n"
                + json.dumps({k: v for k, v in summary.items() if k != "items"}, ensure_ascii=False, indent=1)[:4000]
                + "\n```")
        return
    doc.add(section.markdown(summary, heading_level=3))
    for chart in section.charts(summary):
        doc.figure(f"{index:02d}-{task}-{chart.name}.png",
                   grouped_bars(chart.groups, chart.series, chart.title, chart.ylabel, chart.errors),
                   f"{chart.caption} ({folder.name})")
    doc.add(f"- Per-item results: `{folder / summary.get('items_file', 'items.jsonl')}`")


def training_section(doc: _Doc, folder: Path, index: int) -> None:
    """A training run: loss curves from log.jsonl, its summary and config."""
    from amauta.train.plots import plot_loss

    log = folder / "log.jsonl"
    rows = list(read_jsonl(log, tolerate_torn_tail=True))
    doc.add(f"## Training run `{folder.name}`\n\nFolder `{folder}` · {sum(1 for r in rows if 'loss' in r)} logged steps")
    tmp = folder / f".report-loss-{index}.png"
    try:
        plot_loss(log, tmp, title=f"Loss: {folder.name}")
        doc.figure(f"{index:02d}-loss-{folder.name}.png", tmp.read_bytes(), f"Training and validation loss ({folder.name})")
    except AmautaError as exc:
        doc.add(f"(no loss curve: {exc})")
    finally:
        tmp.unlink(missing_ok=True)
    summary_path = folder / "summary.json"
    if summary_path.is_file():
        summary = json.loads(summary_path.read_text(encoding="utf-8"))
        keys = [k for k, v in summary.items() if isinstance(v, (int, float, str)) and not isinstance(v, bool)][:14]
        doc.add(markdown_table(["Field", "Value"], [[k, f"{summary[k]:.4g}" if isinstance(summary[k], float) else str(summary[k])]
                                                     for k in keys]))
    config = folder / "config.yaml"
    if config.is_file():
        text = config.read_text(encoding="utf-8").splitlines()
        doc.add("<details><summary>config.yaml</summary>\n\n```yaml\n" + "\n".join(text[:80])
                + ("\n# …" if len(text) > 80 else "") + "\n```\n\n</details>")
    doc.add(f"- Every point of the curve: `{log}`")


# --------------------------------------------------------------------------- rendering

_CSS = """body{font-family:system-ui,-apple-system,Segoe UI,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;
color:#222;line-height:1.45}table{border-collapse:collapse;margin:1em 0;font-size:.92em}th,td{border:1px solid #ccc;
padding:.3em .6em;text-align:right}th{background:#f3f3f3}td:first-child,td:nth-child(2){text-align:left}
img{max-width:100%}code{background:#f5f5f5;padding:0 .2em}pre{background:#f5f5f5;padding:.6em;overflow:auto}
h2{border-bottom:1px solid #ddd;padding-bottom:.2em;margin-top:2em}"""


def to_html(markdown: str, figures: dict[str, bytes], title: str) -> str:
    """Self-contained HTML: Markdown rendered by markdown-it, figures inlined as base64 data URIs."""
    from markdown_it import MarkdownIt

    body = MarkdownIt("commonmark", {"html": True}).enable("table").render(markdown)
    for name, png in figures.items():
        body = body.replace(f'src="figures/{name}"', f'src="data:image/png;base64,{base64.b64encode(png).decode()}"')
    return (f"<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>{html.escape(title)}</title>"
            f"<style>{_CSS}</style></head><body>\n{body}</body></html>\n")


def build(config: ReportConfig) -> tuple[str, dict[str, bytes]]:
    """The report's Markdown and figures for the folders in `config`."""
    doc = _Doc()
    folders = [Path(p) for p in config.run_dirs]
    doc.add(f"# {config.title}\n\nGenerated {time.strftime('%Y-%m-%d %H:%M %Z')} from: "
            + ", ".join(f"`{f}`" for f in folders))
    overview: dict[str, dict[str, str]] = {}
    doc.add("")  # placeholder for the overview table, filled once every folder is read
    slot = len(doc.blocks) - 1
    for index, folder in enumerate(folders, start=1):
        if not folder.is_dir():
            raise AmautaError(f"{folder}: folder not found; pass eval folders (amauta eval ... --out) or training runs")
        summary = None
        if (folder / "summary.json").is_file():
            try:
                summary = json.loads((folder / "summary.json").read_text(encoding="utf-8"))
            except json.JSONDecodeError as exc:
                raise AmautaError(f"{folder / 'summary.json'}:{exc.lineno}: invalid JSON ({exc.msg})") from None
        if summary and summary.get("task") in COLUMNS:
            eval_section(doc, folder, summary, index)
            _collect_overview(overview, summary)
        elif summary and summary.get("task"):
            hooked_section(doc, folder, summary, index)
        elif (folder / "log.jsonl").is_file():
            training_section(doc, folder, index)
        else:
            raise AmautaError(f"{folder}: neither an eval folder (summary.json with a task) nor a training run "
                              "(log.jsonl); finished runs have one of them")
    columns = list(dict.fromkeys(c for row in overview.values() for c in row))
    if len(overview) and len(columns) > 1:
        rows = [[label, *[row.get(c, "–") for c in columns]] for label, row in overview.items()]
        doc.blocks[slot] = "## Overview\n\nEach model's main score in every eval folder below (95% CI in the sections).\n\n" \
            + markdown_table(["Model", *columns], rows)
    else:
        doc.blocks.pop(slot)
    return doc.markdown(), doc.figures


def _collect_overview(overview: dict[str, dict[str, str]], summary: dict[str, Any]) -> None:
    """Each model's first metric for this task, for the table that puts all tasks side by side."""
    task = summary["task"]
    key, title, percent = COLUMNS[task][0]
    config = summary.get("task_config", {})
    name = f"{task} {title}" + (f" ({config['formulation']})" if "formulation" in config else "")
    for model in summary["models"]:
        value = model["metrics"].get(key)
        label = model["label"] + (f" ({model['model']})" if model["label"] == "base" else "")
        if isinstance(value, (int, float)):
            overview.setdefault(label, {})[name] = f"{100 * value:.1f}" if percent else f"{value:.3f}"


def run(config: ReportConfig, *, overwrite: bool = False) -> Path:
    """Pipeline entry point: write `out/report.md`, `out/figures/*.png`, `out/report.html`, `out/manifest.json`; return `out`.

    The folder is built aside and renamed into place. An existing report folder made from the same runs is
    left as it is; one made from other runs or other results is replaced only with `overwrite`, and a folder
    `amauta report` did not make never (core/outdir.py).
    """
    from amauta.core.outdir import claim

    out = Path(config.out)
    inputs = [Path(d) / f for d in config.run_dirs for f in ("summary.json", "log.jsonl") if (Path(d) / f).is_file()]
    with claim(out, "evaluate.report", overwrite=overwrite) as folder:
        if folder.up_to_date(config, inputs):
            return out
        folder.check_replace(config, [*inputs, *config.run_dirs])
        markdown, figures = build(config)
        with folder.replace() as tmp:
            for name, png in figures.items():
                atomic_write_bytes(tmp / "figures" / name, png)
            atomic_write_text(tmp / "report.md", markdown)
            atomic_write_text(tmp / "report.html", to_html(markdown, figures, config.title))
            write_manifest(tmp, stage="evaluate.report", config=config, inputs=inputs)
    return out
