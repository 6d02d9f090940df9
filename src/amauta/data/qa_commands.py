"""`amauta data build-qa`, `build-exam` and `review`: domain Q&A or exam items from documents, then human review."""

from __future__ import annotations

from pathlib import Path

import typer

from amauta.core.cli_options import ConfigArgs, Flag, config_options
from amauta.core.threads import THREADS_OPTION, apply_threads
from amauta.data.build_exam import BuildExamConfig
from amauta.data.build_qa import BuildQAConfig


def register(data_app: typer.Typer) -> None:
    """Add `build-qa`, `build-exam` and `review` to the `data` command group."""

    @data_app.command("build-qa")
    @config_options(BuildQAConfig, {"docs": Flag(argument=True), "out": "-o", "model": "-m", "pairs_per_chunk": "-n"})
    def build_qa_command(config: ConfigArgs, threads: int | None = THREADS_OPTION) -> None:
        """Ask a model for Spanish question–answer pairs about each article of DOCS (cached, resumable)."""
        apply_threads(threads)
        from amauta.data.build_qa import run

        run(config.load(missing={"docs": "build-qa: give at least one document or folder (e.g. examples/docs) "
                                         "or --config"}))

    @data_app.command("build-exam")
    @config_options(BuildExamConfig, {"docs": Flag(argument=True), "out": "-o", "model": "-m"})
    def build_exam_command(config: ConfigArgs, threads: int | None = THREADS_OPTION) -> None:
        """Ask a model for Spanish exam items (with unanswerable ones) about each article of DOCS (cached, resumable)."""
        apply_threads(threads)
        from amauta.data.build_exam import run

        run(config.load(missing={"docs": "build-exam: give at least one document or folder (e.g. examples/docs) "
                                         "or --config"}))

    @data_app.command("review")
    def review_command(
        qa: Path = typer.Argument(..., help="The pairs (output of build-qa) or exam items (output of build-exam) "
                                 "to review."),
        out: Path = typer.Option(None, "--out", "-o", help="Accepted pairs (Alpaca JSONL) or items (exam JSONL) "
                                 "(default: <file>.accepted.jsonl)."),
    ) -> None:
        """Accept, fix, reject or skip each Q&A pair or exam item beside its source text; resumes where you stopped."""
        from amauta.data.review import review

        review(qa, out)
