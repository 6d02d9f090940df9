"""`amauta data ...`: prepare datasets, look inside one (and, from the Q&A room, build-qa and review)."""

from __future__ import annotations

from pathlib import Path

import typer

from amauta.core.cli_options import ConfigArgs, Flag, config_options
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


@data_app.command("augment")
def augment_command(
    docs: list[Path] = typer.Argument(None, help="Document files or folders (PDF, HTML, Markdown, text)."),
    recipe: str = typer.Option(None, "--recipe", "-r", help="qa, paraphrase, cpt or raft (docs/data.md)."),
    out: Path = typer.Option(None, "--out", "-o", help="Output dataset folder (what `amauta train --dataset` reads)."),
    config: Path = typer.Option(None, "--config", "-c", help="An AugmentConfig YAML; flags override it."),
    from_files: list[Path] = typer.Option(None, "--from", help="Hand-written augmentation JSONL used instead of "
                                          "asking an LLM (repeatable; e.g. examples/augment/leyes-*.jsonl)."),
    exam: Path = typer.Option(None, "--exam", help="Exam JSONL: its dev/test questions stay out of the data and only "
                              "its qa-group facts' train phrasings become Q&A."),
    model: str = typer.Option(None, "--model", help="The model to be trained (tokenizer and template; default: "
                              "smollm2-135m-instruct)."),
    llm_model: str = typer.Option(None, "--llm-model", help="The LLM that writes: endpoint model name, or a local "
                                  "profile/folder/GGUF (default: smollm2-135m-instruct)."),
    base_url: str = typer.Option(None, "--base-url", help="OpenAI-compatible endpoint, e.g. http://127.0.0.1:8000/v1."),
    api_key: str = typer.Option(None, "--api-key", help="Endpoint API key (never written to disk)."),
    restatements: int = typer.Option(None, "--restatements", "-k", help="paraphrase: rewordings per article (default 5)."),
    phrasings: int = typer.Option(None, "--phrasings", help="paraphrase: wordings per question (default 3)."),
    mix: str = typer.Option(None, "--mix", help="Instruction data to mix in: a dataset folder or a source file."),
    mix_ratio: float = typer.Option(None, "--mix-ratio", help="Instruction records per recipe record (default 1)."),
    raft_p: float = typer.Option(None, "--raft-p", help="raft: share of examples keeping their gold chunk (default 0.8)."),
    raft_distractors: int = typer.Option(None, "--raft-distractors", help="raft: distractor chunks (default 3)."),
    raft_missing: str = typer.Option(None, "--raft-missing", help="raft without the gold chunk: memory or abstain "
                                     "(default abstain)."),
    seed: int = typer.Option(None, "--seed", help="Seed of every hashed choice (default 0)."),
    workers: int = typer.Option(None, "--workers", help="Parallel requests to an endpoint (default 1)."),
    cache: Path = typer.Option(None, "--cache", help="LLM answer cache (default: $AMAUTA_HOME/augment/cache.jsonl)."),
    overwrite: bool = typer.Option(False, "--overwrite",
                                   help="Replace a dataset folder made from other inputs (never any other folder)."),
) -> None:
    """Training data for a knowledge recipe (qa, paraphrase, cpt, raft) from DOCS, as a dataset folder."""
    from amauta.core.config import load_config, validate_config
    from amauta.data.augment import AugmentConfig, run

    overrides = {"docs": [str(d) for d in docs] if docs else None, "recipe": recipe, "out": str(out) if out else None,
                 "from_files": [str(f) for f in from_files] if from_files else None,
                 "exam": str(exam) if exam else None, "model": model, "llm.model": llm_model,
                 "llm.base_url": base_url, "llm.api_key": api_key, "restatements": restatements,
                 "phrasings": phrasings, "mix": mix, "mix_ratio": mix_ratio, "raft_p": raft_p,
                 "raft_distractors": raft_distractors, "raft_missing": raft_missing, "seed": seed,
                 "llm.workers": workers, "llm.cache": str(cache) if cache else None}
    if config:
        cfg = load_config(AugmentConfig, config, overrides)
    else:
        data: dict = {}
        for dotted, value in overrides.items():
            if value is not None:
                head, _, tail = dotted.partition(".")
                if tail:
                    data.setdefault(head, {})[tail] = value
                else:
                    data[head] = value
        cfg = validate_config(AugmentConfig, data, source="augment")
    run(cfg, overwrite=overwrite)


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
