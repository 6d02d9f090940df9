"""`amauta report RUN_DIRS... --out report/`: one Markdown and one self-contained HTML report.

Heavy imports stay inside the command so `amauta --help` is fast.
"""

from __future__ import annotations

import typer

from amauta.core.cli_options import ConfigArgs, Flag, config_options
from amauta.report.report import ReportConfig


@config_options(ReportConfig, {"run_dirs": Flag(argument=True), "out": "-o"})
def report_command(
    config: ConfigArgs,
    overwrite: bool = typer.Option(False, "--overwrite",
                                   help="Replace a report made from other runs or results (never any other folder)."),
) -> None:
    """One Markdown and one self-contained HTML report over eval and training runs."""
    from amauta.core.console import make_console
    from amauta.report.report import run

    cfg = config.load(missing={"run_dirs": "no folders to report on; usage: amauta report RUN_DIRS... --out report/"})
    folder = run(cfg, overwrite=overwrite)
    make_console().print(f"wrote {folder / 'report.md'} and {folder / 'report.html'}", highlight=False)


def register(app: typer.Typer) -> None:
    """Add `amauta report` to the app."""
    app.command("report")(report_command)
