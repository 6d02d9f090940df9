"""`amauta data ...`: prepare datasets, look inside one (and, from the Q&A room, build-qa and review)."""

from __future__ import annotations

from pathlib import Path

import typer

data_app = typer.Typer(help="Instruction datasets: prepare (read, clean, mix, split), show; build-qa, review.",
                       no_args_is_help=True)


def _print_stats(folder: Path) -> None:
    """The per-source/per-rule table and the token-length percentiles of a dataset folder."""
    import json

    from rich.markup import escape
    from rich.table import Table

    from amauta.core.console import make_console
    from amauta.data.stats import PERCENTILES

    stats = json.loads((folder / "stats.json").read_text(encoding="utf-8"))
    # One column per source (few) and one row per count (many rules): fits a narrow terminal.
    sources = stats["sources"]
    table = Table(title=escape(f"Dataset {folder}"), title_justify="left")
    table.add_column("")
    for name in sources:
        table.add_column(escape(name), justify="right", overflow="fold")
    table.add_column("total", justify="right")
    t = stats["totals"]
    table.add_row("read", *(str(s["read"]) for s in sources.values()), str(t["read"]))
    table.add_row("invalid (skipped)", *(str(s["invalid"]) for s in sources.values()), str(t["invalid"]))
    for rule, total in stats["removed"].items():
        table.add_row(f"- {rule.replace('_', ' ')}", *(str(s["removed"][rule]) for s in sources.values()), str(total))
    for row in ("kept", "train", "val"):
        table.add_row(row, *(str(s[row]) for s in sources.values()), str(t[row]))
    console = make_console()
    console.print(table)
    for template, s in stats["token_lengths"].items():
        pct = ", ".join(f"p{p} {s[f'p{p}']}" for p in PERCENTILES)
        console.print(f"tokens ({template}): mean {s['mean']}, {pct}, max {s['max']}", highlight=False)


@data_app.command("prepare")
def prepare_command(
    config: Path = typer.Argument(..., help="Prepare config YAML (sources, model, clean, split); see examples/prepare.yaml."),
    out: Path = typer.Option(None, "--out", "-o", help="Output dataset folder (overrides 'out:' in the config)."),
    skip_invalid: bool = typer.Option(None, "--skip-invalid/--no-skip-invalid",
                                      help="Skip and count malformed rows instead of stopping at the first."),
    model: str = typer.Option(None, "--model", help="Target model whose tokenizer and template measure lengths."),
    overwrite: bool = typer.Option(False, "--overwrite",
                                   help="Replace a dataset folder prepared from other inputs (never any other folder)."),
) -> None:
    """Read the config's sources, clean them, mix and split, and write a dataset folder."""
    import json

    from amauta.core.config import load_config
    from amauta.core.console import make_console
    from amauta.data.prepare import PrepareConfig, run

    cfg = load_config(PrepareConfig, config, {"model": model})
    folder = run(cfg, out=out, skip_invalid=skip_invalid, overwrite=overwrite)
    _print_stats(folder)
    stats = json.loads((folder / "stats.json").read_text(encoding="utf-8"))
    make_console().print(f"{stats['totals']['read']} records in {stats['seconds']['total']:.1f} s; wrote {folder}/"
                    "{train,val}.jsonl, stats.json, lengths.png, manifest.json", highlight=False, markup=False)


@data_app.command("show")
def show_command(
    folder: Path = typer.Argument(..., help="A dataset folder written by `amauta data prepare`."),
    n: int = typer.Option(3, "-n", help="How many training records to print."),
    mask: bool = typer.Option(False, "--mask", help="Show the first record's tokens and which ones are trained on."),
    model: str = typer.Option(None, "--model", help="Model whose tokenizer and template to use (default: the dataset's)."),
    system: str = typer.Option(None, "--system", help="System prompt for --mask (default: the dataset's; '' = none)."),
) -> None:
    """Print a dataset's stats, a few records and (with --mask) the training mask token by token."""
    from rich.markup import escape

    from amauta.core.console import make_console
    from amauta.data.dataset import read_dataset_dir

    ds = read_dataset_dir(folder)
    _print_stats(folder)
    console = make_console()
    for record in ds.train[:n]:
        console.rule(escape(f"{record.id}  {record.source}  {record.category}"))
        for m in record.messages:
            console.print(f"[bold]{m['role']}:[/] {escape(m['content'])}")
    if mask and ds.train:
        from amauta.data.tokenize import IGNORE, tokenize_messages
        from amauta.models.load import load_tokenizer

        # The system prompt the dataset was prepared with (what training renders), unless --system says otherwise.
        prompt = system if system is not None else ds.manifest.get("system_prompt")
        tokenizer, profile = load_tokenizer(model or ds.manifest.get("model") or "smollm2-135m-instruct",
                                            system_prompt=prompt)
        out = tokenize_messages(tokenizer, profile, ds.train[0].messages)
        console.rule(f"mask with {profile.name} ({profile.template}): [green]trained[/] / [dim]masked (-100)[/]")
        console.print(escape(f"system prompt of records without one: {profile.system_prompt or '(none)'}"), highlight=False)
        pieces = [f"[green]{escape(repr(tokenizer.decode([t]))[1:-1])}[/]" if label != IGNORE
                  else f"[dim]{escape(repr(tokenizer.decode([t]))[1:-1])}[/]"
                  for t, label in zip(out["input_ids"], out["labels"], strict=True)]
        console.print("|".join(pieces))
        trained = sum(label != IGNORE for label in out["labels"])
        console.print(f"{len(out['input_ids'])} tokens, {trained} trained on", highlight=False)


@data_app.command("preferences")
def preferences_command(
    files: list[Path] = typer.Argument(None, help="Preference files: {prompt, chosen, rejected}, scored lists "
                                                  "(UltraFeedback) or KTO's {prompt, completion, label}; JSONL or JSON."),
    from_judge: Path = typer.Option(None, "--from-judge", help="A judge run folder: best against worst answer per prompt."),
    out: Path = typer.Option(..., "--out", "-o", help="Preference dataset folder to write."),
    min_gap: float = typer.Option(1.0, "--min-gap", help="Least score difference between best and worst to make a pair."),
    val_fraction: float = typer.Option(0.1, "--val-fraction", help="Share of examples held out for validation (by hashed id)."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace a preference folder made from other inputs."),
) -> None:
    """Write a preference dataset folder (train.jsonl, val.jsonl) for `amauta train --method dpo|orpo|kto`."""
    import json

    from amauta.core.config import validate_config
    from amauta.core.console import make_console
    from amauta.data.preferences import PreferencesConfig, run

    config = validate_config(PreferencesConfig, {"files": [str(p) for p in files or []], "out": str(out),
                                                 "from_judge": str(from_judge) if from_judge else None,
                                                 "min_gap": min_gap, "val_fraction": val_fraction}, source="command line")
    notes: list[str] = []
    folder = run(config, overwrite=overwrite, notes=notes)
    console = make_console()
    for note in notes:
        console.print(note, highlight=False, markup=False)
    manifest = json.loads((folder / "manifest.json").read_text(encoding="utf-8"))
    console.print(f"{manifest['counts']['train']} train and {manifest['counts']['val']} validation examples; wrote "
                  f"{folder}/{{train,val}}.jsonl, manifest.json", highlight=False, markup=False)


def register(app: typer.Typer) -> None:
    """Add the `data` command group (prepare, show, build-qa, review) to the `amauta` app."""
    from amauta.data import qa_commands

    qa_commands.register(data_app)
    app.add_typer(data_app, name="data")
