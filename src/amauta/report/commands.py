"""`amauta report RUN_DIRS... --out report/`: one Markdown and one self-contained HTML report.

Heavy imports stay inside the command so `amauta --help` is fast.
"""

from __future__ import annotations

from pathlib import Path

import typer


def report_command(
    run_dirs: list[Path] = typer.Argument(..., help="Eval folders (summary.json) and training run folders (log.jsonl)."),
    out: Path = typer.Option(Path("report"), "--out", "-o", help="Folder for report.md and report.html."),
    title: str = typer.Option(None, "--title", help="Report title."),
    overwrite: bool = typer.Option(False, "--overwrite",
                                   help="Replace a report made from other runs or results (never any other folder)."),
) -> None:
    """One Markdown and one self-contained HTML report over eval and training runs."""
    from amauta.core.console import make_console
    from amauta.report.report import ReportConfig, run

    cfg = ReportConfig(run_dirs=[str(p) for p in run_dirs], out=str(out), **({"title": title} if title else {}))
    folder = run(cfg, overwrite=overwrite)
    make_console().print(f"wrote {folder / 'report.md'} and {folder / 'report.html'}", highlight=False)


def register(app: typer.Typer) -> None:
    """Add `amauta report` to the app."""
    app.command("report")(report_command)
