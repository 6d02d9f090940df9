"""The demo step (`uses: chat.demo` in a pipeline file): answer a few Spanish prompts with every strategy.

For each prompt and each decoding strategy it streams nothing and records everything: the answer, tokens,
seconds and tokens/s go to `generations.jsonl` (appended as they finish, so a killed demo resumes), a rich
table shows them side by side, and `summary.json` (task `chat.demo`) holds tokens/s per strategy,
contrastive search's time per token relative to greedy's, and the answers. `amauta report` renders such a
folder with the section this module registers: one table of answers per strategy, with its tokens/s.
"""

from __future__ import annotations

import html
import time
from pathlib import Path
from typing import Any

from pydantic import Field

from amauta.chat.decoding import STRATEGIES, GenerationSettings, Strategy
from amauta.core.config import StageConfig
from amauta.core.files import append_jsonl, atomic_write_json, atomic_write_jsonl, read_jsonl
from amauta.core.manifest import write_manifest
from amauta.core.summaries import ReportSection, register_section
from amauta.models.types import DType

TASK = "chat.demo"  # the `task` of its summary.json, under which the report finds its section

DEFAULT_PROMPTS = [
    "¿Qué es el Servicio de Rentas Internas del Ecuador?",
    "Escribe un poema corto sobre la montaña y el mar.",
    "Explica en dos oraciones qué es el impuesto al valor agregado.",
    "Dame tres consejos para aprender un idioma nuevo.",
]


class DemoConfig(StageConfig):
    """What the demo answers, and how."""

    model: str = Field("smollm2-135m-instruct", description="Registry name, hub id, folder or .gguf file.")
    adapter: str | None = Field(None, description="Optional LoRA adapter (or training run folder) to load on the model.")
    prompts: list[str] = Field(default_factory=lambda: list(DEFAULT_PROMPTS), min_length=1,
                               description="User messages, each answered once per strategy.")
    system: str | None = Field(None, description="System prompt: None = the model profile's, '' = none.")
    strategies: list[Strategy] = Field(default_factory=lambda: list(STRATEGIES), min_length=1,
                                       description="Decoding strategies to compare.")
    max_new_tokens: int = Field(48, ge=1, description="Most tokens per answer.")
    dtype: DType = Field("auto", description="auto, float32, bfloat16 or float16.")
    seed: int = Field(0, description="Seed for the sampling strategy.")
    out: str = Field("runs/demo/chat", description="Output folder: generations.jsonl, summary.json, manifest.json.")


def _summary(rows: list[dict], strategies: list[str]) -> dict:
    per = {}
    for strategy in strategies:
        mine = [r for r in rows if r["strategy"] == strategy]
        tokens, seconds = sum(r["tokens"] for r in mine), sum(r["seconds"] for r in mine)
        per[strategy] = {"answers": len(mine), "tokens": tokens, "seconds": round(seconds, 3),
                         "tokens_per_second": round(tokens / seconds, 2) if seconds else 0.0,
                         "ms_per_token": round(1000 * seconds / tokens, 2) if tokens else None}
    ratio = None
    if per.get("greedy", {}).get("ms_per_token") and per.get("contrastive", {}).get("ms_per_token"):
        ratio = round(per["contrastive"]["ms_per_token"] / per["greedy"]["ms_per_token"], 3)
    answers = [{k: r[k] for k in ("prompt", "strategy", "text", "tokens", "seconds", "tokens_per_second")} for r in rows]
    return {"task": TASK, "strategies": per, "contrastive_vs_greedy_time_per_token": ratio, "answers": answers,
            "items_file": "generations.jsonl"}


def run(config: DemoConfig) -> Path:
    """Answer every prompt with every strategy; write the folder `config.out`; return it.

    The folder must be new, empty, or a chat demo folder (core/outdir.py); a rerun reuses its answers.
    """
    from amauta.core.outdir import claim

    with claim(config.out, "chat.demo") as folder:
        folder.start(config)
        return _run(config)


def _run(config: DemoConfig) -> Path:
    from rich.progress import Progress
    from rich.table import Table

    from amauta.chat.generate import generate
    from amauta.core.console import make_console
    from amauta.models.load import load_model

    console = make_console()
    out = Path(config.out)
    out.mkdir(parents=True, exist_ok=True)
    cache = out / "generations.jsonl"
    started = time.perf_counter()
    with console.status(f"loading {config.model}…"):
        loaded = load_model(config.model, adapter=config.adapter, dtype=config.dtype, system_prompt=config.system)
    # Resume: keep rows of an earlier run with the same settings (the system prompt the model got among them).
    key = {"model": config.model, "adapter": config.adapter, "system": loaded.profile.system_prompt,
           "max_new_tokens": config.max_new_tokens, "dtype": config.dtype, "seed": config.seed}
    done = {(r["prompt"], r["strategy"]): r for r in (read_jsonl(cache, tolerate_torn_tail=True) if cache.exists() else [])
            if r.get("key") == key}
    rows = []
    with Progress(console=console, transient=True) as progress:
        task = progress.add_task("answering", total=len(config.prompts) * len(config.strategies))
        for prompt in config.prompts:
            messages = [{"role": "user", "content": prompt}]  # the system prompt comes from the profile
            for strategy in config.strategies:
                if (prompt, strategy) in done:
                    rows.append(done[(prompt, strategy)])
                    progress.advance(task)
                    continue
                settings = GenerationSettings.from_profile(loaded.profile, strategy=strategy,
                                                           max_new_tokens=config.max_new_tokens, seed=config.seed)
                result = generate(loaded, messages, settings)
                row = {"key": key, "prompt": prompt, "strategy": strategy, "text": result.text,
                       "tokens": result.new_tokens, "prompt_tokens": result.prompt_tokens,
                       "seconds": round(result.seconds, 4), "tokens_per_second": round(result.tokens_per_second, 2),
                       "finish_reason": result.finish_reason}
                append_jsonl(cache, row)
                rows.append(row)
                progress.advance(task)

    table = Table(title=f"{loaded.profile.name}: {len(config.prompts)} prompts × {len(config.strategies)} strategies")
    for column in ("prompt", "strategy", "answer", "tokens", "tok/s"):
        table.add_column(column, overflow="fold")
    for row in rows:
        answer = " ".join(row["text"].split())
        table.add_row(row["prompt"][:40], row["strategy"], answer[:120] + ("…" if len(answer) > 120 else ""),
                      str(row["tokens"]), f"{row['tokens_per_second']:.1f}")
    console.print(table)
    summary = _summary(rows, list(config.strategies))
    summary.update(model=loaded.profile.name, adapter=config.adapter, source=str(loaded.source), dtype=loaded.extra.get("dtype"),
                   seconds=round(time.perf_counter() - started, 2))
    atomic_write_json(out / "summary.json", summary)
    # The rows of this run only, in order (an earlier run with other settings may have left other rows).
    atomic_write_jsonl(cache, rows)
    write_manifest(out, "chat.demo", config, model_source=str(loaded.source), load=loaded.extra)
    ratio = summary["contrastive_vs_greedy_time_per_token"]
    console.print("tokens/s: " + ", ".join(f"{s} {v['tokens_per_second']}" for s, v in summary["strategies"].items())
                  + (f"; contrastive/greedy time per token {ratio}×" if ratio else ""))
    return out


# --------------------------------------------------------------------------- the report's section

def _cell(text: Any) -> str:
    """One Markdown table cell: on one line, pipes escaped, no raw HTML (the report's HTML keeps HTML)."""
    return html.escape(" ".join(str(text).split()), quote=False).replace("|", "\\|")


def report_markdown(summary: dict[str, Any], heading_level: int = 3) -> str:
    """The demo's answers as Markdown: per strategy its speed, then a table of prompt, answer, tokens, tokens/s."""
    h = "#" * heading_level
    ratio = summary.get("contrastive_vs_greedy_time_per_token")
    adapter = f" + adapter `{summary['adapter']}`" if summary.get("adapter") else ""
    parts = [f"Model `{summary.get('model', '?')}`{adapter} ({summary.get('dtype') or 'default dtype'}), every prompt answered "
             "with each decoding strategy" + (f"; contrastive search took {ratio}× greedy's time per token." if ratio
                                              else ".")]
    answers = summary.get("answers") or []
    for strategy, speed in (summary.get("strategies") or {}).items():
        rows = [a for a in answers if a.get("strategy") == strategy]
        table = ["| Prompt | Answer | Tokens | Tokens/s |", "|---|---|---:|---:|"]
        table += [f"| {_cell(a['prompt'])} | {_cell(a['text']) or '–'} | {a['tokens']} | {a['tokens_per_second']:.1f} |"
                  for a in rows]
        parts.append(f"{h} {strategy} · {speed.get('tokens_per_second', 0):.1f} tokens/s "
                     f"({speed.get('tokens', 0)} tokens in {speed.get('seconds', 0):.1f} s)\n\n" + "\n".join(table))
    return "\n\n".join(parts) + "\n"


register_section(TASK, ReportSection(title="Decoding strategies (chat demo)", markdown=report_markdown))
