"""The `amauta` command: thin on purpose.

Each stage owns its commands in `amauta/<stage>/commands.py` (a `register(app)` function that adds
typer commands and imports heavy libraries only inside them, so `amauta --help` stays fast). This file
only assembles them and turns `AmautaError` into one clear line with exit code 2.
"""

from __future__ import annotations

import importlib
import logging
import os
import sys

import typer
from rich.console import Console

from amauta.core.errors import AmautaError
from amauta.core.threads import apply_threads

app = typer.Typer(
    name="amauta",
    help="Amauta: adapt small open language models to Spanish and to a domain, on one GPU or a CPU.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
err_console = Console(stderr=True)

# bitsandbytes warns on import, on CPUs with AVX512-BF16, that it could not fetch an optional kernel from
# the Hugging Face hub; Amauta never needs it (its CPU path works without it), so keep the line off screen.
logging.getLogger("bitsandbytes.backends.cpu.ops").setLevel(logging.ERROR)

# The stages that contribute commands, in the order `amauta --help` lists them.
STAGES = ("models", "chat", "data", "train", "evaluate", "rag", "serve", "pipeline")


@app.callback()
def _root(debug: bool = typer.Option(False, "--debug", help="Show full tracebacks instead of one-line errors."),
          threads: int | None = typer.Option(None, "--threads", help="CPU threads for every model this command "
                                             "runs (as each command's --threads; env AMAUTA_THREADS).")) -> None:
    if debug:
        os.environ["AMAUTA_DEBUG"] = "1"
    if threads is not None:  # commands without a model of their own still get it (and torch loads only now)
        apply_threads(threads)


def _register_stages() -> None:
    for stage in STAGES:
        module_name = "amauta.pipeline" if stage == "pipeline" else f"amauta.{stage}.commands"
        importlib.import_module(module_name).register(app)


_register_stages()


def main() -> None:
    """Entry point of the `amauta` console script."""
    debug = "--debug" in sys.argv or os.environ.get("AMAUTA_DEBUG") == "1"
    try:
        app(standalone_mode=False)
    except AmautaError as exc:
        if debug:
            raise
        err_console.print(f"[bold red]error:[/] {exc}", highlight=False, soft_wrap=True)
        sys.exit(2)
    except KeyboardInterrupt:
        err_console.print("[yellow]interrupted[/]")
        sys.exit(130)
    except SystemExit:
        raise
    except Exception as exc:  # click's usage errors and anything unexpected
        import click

        if isinstance(exc, click.exceptions.Exit):
            sys.exit(exc.exit_code)
        if isinstance(exc, click.ClickException):
            exc.show()
            sys.exit(2)
        if isinstance(exc, click.exceptions.Abort):
            sys.exit(130)
        if debug:
            raise
        err_console.print(f"[bold red]error:[/] {type(exc).__name__}: {exc} (rerun with --debug for the traceback)",
                          highlight=False, soft_wrap=True)
        sys.exit(1)


if __name__ == "__main__":
    main()
