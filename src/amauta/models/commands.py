"""`amauta models`: list the registry, show one profile, convert an embedded GGUF once."""

from __future__ import annotations

import typer

models_app = typer.Typer(help="The model registry: list profiles, show one, convert embedded GGUFs.",
                         invoke_without_command=True)


@models_app.callback(invoke_without_command=True)
def list_command(
    ctx: typer.Context,
    as_json: bool = typer.Option(False, "--json", help="Print the profiles as JSON instead of a table."),
    show_all: bool = typer.Option(False, "--all", help="Include the tiny random test models."),
) -> None:
    """List the registry's models: name, source, architecture, template, LoRA targets, learning rate."""
    if ctx.invoked_subcommand is not None:
        return
    import json

    from rich.table import Table

    from amauta.core.console import make_console
    from amauta.models.embedded import converted_dir, is_converted
    from amauta.models.registry import list_profiles

    profiles = list_profiles(include_tiny=show_all)
    if as_json:
        typer.echo(json.dumps([p.model_dump(mode="json") for p in profiles], ensure_ascii=False, indent=2))
        return
    table = Table(title="Amauta models (amauta models show NAME for details)", title_justify="left")
    for column in ("name", "source", "architecture", "template", "targets (attention)", "lr", "params", "context"):
        table.add_column(column, justify="right" if column in ("lr", "params", "context") else "left", overflow="fold")
    for p in profiles:
        source = p.source
        if p.kind == "embedded":
            source += " [green](converted)[/]" if is_converted(converted_dir(p.name)) else " [yellow](converts on first use)[/]"
        params = f"{p.params_billion:g}B" if p.params_billion >= 0.01 else "tiny"
        table.add_row(p.name, source, p.architecture, p.template, ",".join(p.lora_targets["attention"]),
                      f"{p.learning_rate:g}", params, f"{p.context_length:,}")
    make_console().print(table)


@models_app.command("show")
def show_command(name: str = typer.Argument(..., help="Registry name, e.g. falcon-7b-instruct.")) -> None:
    """Print one profile in full (template, stops, eos tokens, LoRA presets, generation defaults) as JSON."""
    import json

    from amauta.models.registry import get_profile

    typer.echo(json.dumps(get_profile(name).model_dump(mode="json"), ensure_ascii=False, indent=2))


@models_app.command("convert")
def convert_command(
    name: str = typer.Argument(..., help="An embedded model (smollm2-135m-instruct, gemma-3-270m) or a .gguf file."),
    force: bool = typer.Option(False, "--force", help="Convert again even if the cached folder exists."),
) -> None:
    """Convert a GGUF once into a cached safetensors folder, so later loads take about a second."""
    import time
    from pathlib import Path

    from amauta.core.console import make_console
    from amauta.core.errors import AmautaError
    from amauta.models import embedded
    from amauta.models.registry import get_profile, list_profiles

    console = make_console()
    started = time.perf_counter()
    if name.lower().endswith(".gguf"):
        path = Path(name).expanduser()
        if not path.is_file():
            raise AmautaError(f"{path}: file not found")
        folder = embedded.convert_gguf(path, embedded.gguf_cache_name(path), force=force)
    else:
        profile = get_profile(name)
        if profile.kind != "embedded":
            embedded_names = ", ".join(p.name for p in list_profiles() if p.kind == "embedded")
            raise AmautaError(f"{profile.name} is not an embedded model (its source is {profile.source}); "
                              f"convert one of {embedded_names}, or pass a .gguf file")
        already = embedded.is_converted(embedded.converted_dir(profile.name)) and not force
        folder = embedded.ensure_converted(profile.name, profile.source, force=force)
        if already:
            console.print(f"{profile.name} is already converted (use --force to redo it)", highlight=False)
    console.print(f"{folder}  ({time.perf_counter() - started:.1f} s)", highlight=False)


def register(app: typer.Typer) -> None:
    """Add the `models` command group to the `amauta` app."""
    app.add_typer(models_app, name="models")
