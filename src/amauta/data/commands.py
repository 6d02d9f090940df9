"""`amauta data ...`: prepare datasets, look inside one (and, from the Q&A room, build-qa and review)."""

from __future__ import annotations

from pathlib import Path

import typer

from amauta.core.cli_options import ConfigArgs, Flag, FlagSpec, config_options
from amauta.data.augment import AugmentConfig
from amauta.data.preferences import PreferencesConfig
from amauta.data.prepare import PrepareConfig

data_app = typer.Typer(help="Instruction datasets: prepare (read, clean, mix, split), show, augment; build-qa, review.",
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
@config_options(PrepareConfig, {"out": "-o", "system_prompt": "--system"}, config=typer.Argument(
    ..., help="Prepare config YAML (sources, model, clean, split); see examples/prepare.yaml."))
def prepare_command(
    config: ConfigArgs,
    overwrite: bool = typer.Option(False, "--overwrite",
                                   help="Replace a dataset folder prepared from other inputs (never any other folder)."),
) -> None:
    """Read the config's sources, clean them, mix and split, and write a dataset folder."""
    import json

    from amauta.core.console import make_console
    from amauta.data.prepare import run

    folder = run(config.load(), overwrite=overwrite)
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


# `--llm-model`, `--base-url`, `--api-key`, `--workers`, `--cache` reach the `llm:` section (the old spellings);
# its other keys take `--set llm.KEY=VALUE`. The recipe is checked by the config, whose error names the choices.
AUGMENT_FLAGS: dict[str, FlagSpec] = {
    "docs": Flag(argument=True), "recipe": Flag(names=("-r",), type=str), "out": "-o",
    "from_files": Flag(names=("--from",), repeat=True), "restatements": "-k", "system_prompt": "--system",
    "llm.model": (), "llm.base_url": "--base-url", "llm.api_key": "--api-key", "llm.workers": "--workers",
    "llm.cache": "--cache",
}


@data_app.command("augment")
@config_options(AugmentConfig, AUGMENT_FLAGS)
def augment_command(
    config: ConfigArgs,
    overwrite: bool = typer.Option(False, "--overwrite",
                                   help="Replace a dataset folder made from other inputs (never any other folder)."),
) -> None:
    """Training data for a knowledge recipe (qa, paraphrase, cpt, raft) from DOCS, as a dataset folder."""
    from amauta.data.augment import run

    run(config.load(missing={"docs": "augment: give at least one document or folder (e.g. examples/docs) "
                                     "or --config"}), overwrite=overwrite)


@data_app.command("preferences")
@config_options(PreferencesConfig, {"files": Flag(argument=True), "out": "-o"})
def preferences_command(
    config: ConfigArgs,
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace a preference folder made from other inputs."),
) -> None:
    """Write a preference dataset folder (train.jsonl, val.jsonl) for `amauta train --method dpo|orpo|kto`."""
    import json

    from amauta.core.console import make_console
    from amauta.data.preferences import run

    notes: list[str] = []
    folder = run(config.load(missing={"out": "data preferences: give --out DIR, the preference folder to write"}),
                 overwrite=overwrite, notes=notes)
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
