"""`amauta data ...`: prepare datasets (and, from the Q&A room, build-qa and review)."""

from __future__ import annotations

from pathlib import Path

import typer

data_app = typer.Typer(help="Prepare instruction datasets: read, clean, mix, split.", no_args_is_help=True)


@data_app.command("prepare")
def prepare_command(
    config: Path = typer.Argument(..., help="Prepare config YAML (sources, model, clean, split); see examples/prepare.yaml."),
    out: Path = typer.Option(None, "--out", "-o", help="Output dataset folder (overrides 'out:' in the config)."),
    skip_invalid: bool = typer.Option(None, "--skip-invalid/--no-skip-invalid",
                                      help="Skip and count malformed rows instead of stopping at the first."),
    model: str = typer.Option(None, "--model", help="Target model whose tokenizer and template measure lengths."),
) -> None:
    """Read the config's sources, clean them, mix and split, and write a dataset folder."""
    from rich.console import Console
    from rich.table import Table

    from amauta.core.config import load_config
    from amauta.data.prepare import PrepareConfig, run
    from amauta.data.stats import PERCENTILES

    cfg = load_config(PrepareConfig, config, {"model": model})
    folder = run(cfg, out=out, skip_invalid=skip_invalid)

    import json

    stats = json.loads((folder / "stats.json").read_text(encoding="utf-8"))
    # One column per source (few) and one row per count (many rules): fits a narrow terminal.
    sources = stats["sources"]
    table = Table(title=f"Dataset {folder}", title_justify="left")
    table.add_column("")
    for name in sources:
        table.add_column(name, justify="right", overflow="fold")
    table.add_column("total", justify="right")
    t = stats["totals"]
    table.add_row("read", *(str(s["read"]) for s in sources.values()), str(t["read"]))
    table.add_row("invalid (skipped)", *(str(s["invalid"]) for s in sources.values()), str(t["invalid"]))
    for rule, total in stats["removed"].items():
        table.add_row(f"- {rule.replace('_', ' ')}", *(str(s["removed"][rule]) for s in sources.values()), str(total))
    table.add_row("kept", *(str(s["kept"]) for s in sources.values()), str(t["kept"]))
    table.add_row("train", *(str(s["train"]) for s in sources.values()), str(t["train"]))
    table.add_row("val", *(str(s["val"]) for s in sources.values()), str(t["val"]))
    out_console = Console()
    out_console.print(table)
    for template, s in stats["token_lengths"].items():
        pct = ", ".join(f"p{p} {s[f'p{p}']}" for p in PERCENTILES)
        out_console.print(f"tokens ({template}): mean {s['mean']}, {pct}, max {s['max']}", highlight=False)
    out_console.print(f"{t['read']} records in {stats['seconds']['total']:.1f} s; wrote {folder}/"
                      "{train,val}.jsonl, stats.json, lengths.png, manifest.json", highlight=False)


def register(app: typer.Typer) -> None:
    """Add the `data` command group to the `amauta` app."""
    import importlib

    try:
        qa_commands = importlib.import_module("amauta.data.qa_commands")
    except ModuleNotFoundError as exc:
        if exc.name != "amauta.data.qa_commands":
            raise
    else:
        qa_commands.register(data_app)
    app.add_typer(data_app, name="data")
