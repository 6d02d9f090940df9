"""CLI: `amauta eval judge` (rubric grading by an LLM judge) and `amauta eval grade` (by people).

The evaluate room creates the `eval` group (`amauta.evaluate.commands.eval_app`); the judge room, above
it, adds its two commands to that group. Heavy imports stay inside the command functions so
`amauta --help` is fast.
"""

from __future__ import annotations

from pathlib import Path

import typer

from amauta.core.cli_options import ConfigArgs, Flag, FlagSpec, config_options
from amauta.core.threads import THREADS_OPTION, apply_threads
from amauta.judge.judge import JudgeConfig

# Spellings older than the derived options: `--set` names the prompt set, `-c` the candidates.
JUDGE_FLAGS: dict[str, FlagSpec] = {"prompt_set": "--set", "model": "-m", "candidates": "-c", "out": "-o",
                                    "skip_judge": Flag(off="--with-judge")}


def register(app: typer.Typer) -> None:
    """Add `amauta eval judge` and `amauta eval grade` to the evaluate room's `eval` group."""
    from amauta.evaluate.commands import eval_app

    add_eval_commands(eval_app)


def add_eval_commands(eval_app: typer.Typer) -> None:
    """Add `judge` and `grade` to an `eval` command group."""

    @eval_app.command("judge")
    @config_options(JudgeConfig, JUDGE_FLAGS, config=typer.Option(None, "--config", help="A YAML JudgeConfig; "
                                                                   "flags override its keys."))
    def judge_command(
        config: ConfigArgs,
        judge_api_key: str = typer.Option(None, "--judge-api-key", help="The judge's API key (never written to disk; "
                                          "default: $AMAUTA_JUDGE_API_KEY, $AMAUTA_API_KEY, $OPENAI_API_KEY)."),
        generate_api_key: str = typer.Option(None, "--generate-api-key", help="The answer endpoint's API key "
                                             "(--generate-base-url; never written to disk; default: "
                                             "$AMAUTA_LLM_API_KEY, $AMAUTA_API_KEY, $OPENAI_API_KEY)."),
        summary_only: bool = typer.Option(False, "--summary", help="Only recompute and print the tables of --out."),
        threads: int | None = THREADS_OPTION,
    ) -> None:
        """Grade answers 1–5 (accuracy, relevance, coherence, context) with an LLM judge: best-of-N and mean-of-N."""
        apply_threads(threads)
        from amauta.judge.judge import resummarize, run

        if summary_only:
            resummarize(config.values.get("out") or "runs/judge")
            return
        path = run(config.load(), api_key=judge_api_key, generate_api_key=generate_api_key)
        typer.echo(f"wrote {path}/summary.json and {path}/items.jsonl")

    @eval_app.command("grade")
    def grade_command(
        run_dir: Path = typer.Argument(..., help="A judge run folder (from amauta eval judge --out)."),
        grader: str = typer.Option(None, "--grader", "-g", help="Your name; your grades go to RUN/grades/NAME.jsonl."),
        limit: int = typer.Option(None, "--limit", help="Stop after this many answers in this session."),
        attempts: int = typer.Option(None, "--attempts", help="Grade only the first K of the N attempts per prompt."),
        status: bool = typer.Option(False, "--status", help="Only show how many answers each grader has done."),
    ) -> None:
        """Grade answers 1–5 yourself, blind to the model and in random order; then judge-vs-people agreement."""
        from amauta.judge.grade import grade, grading_status
        from amauta.judge.judge import resummarize

        if status:
            info = grading_status(run_dir)
            for name, count in info["graders"].items() or {"(nobody yet)": 0}.items():
                typer.echo(f"{name}: {count}/{info['answers']}")
            return
        grade(run_dir, grader, limit=limit, attempts=attempts)
        if (run_dir / "config.yaml").is_file():
            resummarize(run_dir)
