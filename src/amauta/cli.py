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

from amauta.core import logs
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
STAGES = ("models", "chat", "data", "train", "evaluate", "judge", "report", "rag", "llm", "serve", "pipeline")


@app.callback()
def _root(ctx: typer.Context,
          debug: bool = typer.Option(False, "--debug", help="Show full tracebacks instead of one-line errors."),
          threads: int | None = typer.Option(None, "--threads", help="CPU threads for every model this command "
                                             "runs (as each command's --threads; env AMAUTA_THREADS)."),
          verbose: bool = typer.Option(False, "--verbose", help="Show the libraries' warnings, logs and progress "
                                       "bars here instead of in the output folder's amauta.log.")) -> None:
    if debug:
        os.environ["AMAUTA_DEBUG"] = "1"
    if verbose:
        os.environ[logs.VERBOSE_ENV] = "1"
    if threads is not None:  # commands without a model of their own still get it (and torch loads only now)
        apply_threads(threads)
    # Library noise goes to the command's output folder (core/logs.py) until the command ends; `amauta run`
    # opens its own capture (its folder is known up front, and its --verbose is parsed after this).
    if ctx.invoked_subcommand != "run":
        ctx.with_resource(logs.capture_libraries())


def _register_stages() -> None:
    for stage in STAGES:
        module_name = "amauta.pipeline" if stage == "pipeline" else f"amauta.{stage}.commands"
        importlib.import_module(module_name).register(app)


_register_stages()


def print_error(message: str) -> None:
    """Print `error: MESSAGE` on stderr as one line (the message is text, never rich markup)."""
    from rich.text import Text

    one_line = " ".join(part.strip() for part in str(message).splitlines() if part.strip())
    err_console.print(Text.assemble(("error:", "bold red"), f" {one_line}"), highlight=False, soft_wrap=True)


def usage_error_message(exc) -> str:
    """A click/typer usage error (unknown option, missing argument, bad value) as one line with its help hint."""
    ctx = getattr(exc, "ctx", None)
    message = exc.format_message().strip()
    return f"{message.rstrip('.')} (see '{ctx.command_path} --help')" if ctx is not None else message


def _click_exception_types() -> tuple[tuple[type, ...], tuple[type, ...], tuple[type, ...]]:
    """(usage errors, exits, aborts) of typer, which carries its own click since 0.2x, and of click itself."""
    usage, exits, aborts = [typer.TyperException], [typer.Exit], [typer.Abort]
    try:
        import click
    except ImportError:  # pragma: no cover - typer no longer needs click
        pass
    else:
        usage.append(click.ClickException)
        exits.append(click.exceptions.Exit)
        aborts.append(click.exceptions.Abort)
    return tuple(usage), tuple(exits), tuple(aborts)


def main() -> None:
    """Entry point of the `amauta` console script: handled errors print `error: ...` and exit 2."""
    debug = "--debug" in sys.argv or os.environ.get("AMAUTA_DEBUG") == "1"
    usage_errors, exits, aborts = _click_exception_types()
    try:
        code = app(standalone_mode=False)
    except AmautaError as exc:
        if debug:
            raise
        print_error(str(exc))
        sys.exit(2)
    except KeyboardInterrupt:
        code = 130
    except SystemExit:
        raise
    except exits as exc:
        sys.exit(exc.exit_code)
    except aborts:
        sys.exit(130)
    except usage_errors as exc:
        if type(exc).__name__ == "NoArgsIsHelpError":  # `amauta data` alone: the group's help, as click does
            exc.show()
        else:  # click would print "Usage: ... Try ... Error: ..." over four lines
            print_error(usage_error_message(exc))
        sys.exit(2)
    except Exception as exc:  # anything unexpected: a bug, so exit 1 and offer the traceback
        if debug:
            raise
        print_error(f"{type(exc).__name__}: {exc} (rerun with --debug for the traceback)")
        sys.exit(1)
    # Without standalone mode typer returns the code of a `typer.Exit` (and 130 for Ctrl-C) instead of exiting.
    if code == 130:
        err_console.print("[yellow]interrupted[/]")
    if isinstance(code, int) and not isinstance(code, bool) and code:
        sys.exit(code)


if __name__ == "__main__":
    main()
