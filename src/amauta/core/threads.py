"""How many CPU threads torch uses: `--threads N` (on `amauta` or on a command), else `AMAUTA_THREADS`.

On a CPU shared with other work, torch's threads wait for each other after every operation, and a waiting
thread whose core another process holds loses whole time slices: a 16-token answer took 31 s with 2
threads and 1.65 s with 1 while another job used the cores. So every command that runs a model takes
`--threads` (`THREADS_OPTION`) and calls `apply_threads` first; `amauta --threads N COMMAND` and the
environment variable set it for every command at once.

    def generate_command(..., threads: int | None = THREADS_OPTION):
        apply_threads(threads)
"""

from __future__ import annotations

import os

import typer

from amauta.core.errors import AmautaError

THREADS_ENV = "AMAUTA_THREADS"

THREADS_OPTION = typer.Option(None, "--threads", help="CPU threads for the model (default: $AMAUTA_THREADS, else "
                              "torch's choice); 1 is fastest on a machine busy with other work.")


def _root_threads() -> int | None:
    """The `--threads` given to `amauta` itself (`amauta --threads 1 generate ...`), if any."""
    import click

    ctx = click.get_current_context(silent=True)
    return ctx.find_root().params.get("threads") if ctx is not None else None


def requested_threads(threads: int | None = None) -> int | None:
    """The thread count asked for: the command's flag, else `amauta --threads`, else $AMAUTA_THREADS; None if none."""
    if threads is None:
        threads = _root_threads()
    if threads is None:
        value = os.environ.get(THREADS_ENV, "").strip()
        if not value:
            return None
        if not value.isdigit() or int(value) < 1:
            raise AmautaError(f"{THREADS_ENV}={value!r}: expected a whole number of CPU threads, 1 or more "
                              f"(e.g. export {THREADS_ENV}=1), or unset it")
        return int(value)
    if threads < 1:
        raise AmautaError(f"--threads {threads}: give 1 or more CPU threads")
    return threads


def apply_threads(threads: int | None = None) -> int | None:
    """Make torch use the requested number of CPU threads in this process; return it (None: left as it was).

    Intra-op threads can change at any time. Inter-op threads can be set only once, before torch's first
    parallel work; at a command's start that holds, and when it does not (a second call, or a library
    already ran) torch's inter-op pool stays as it is, which is harmless.
    """
    threads = requested_threads(threads)
    if threads is None:
        return None
    import torch

    torch.set_num_threads(threads)
    try:
        torch.set_num_interop_threads(threads)
    except RuntimeError:  # already set, or parallel work already started
        pass
    return threads
