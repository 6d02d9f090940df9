"""`amauta eval belebele|perplexity|xquad|mgsm|exam|harness`.

An eval command is a config class, a run function and the short flags of a few fields: `eval_command`
gives it one option per config field (core/cli_options.py: `--model/-m`, `--compare base,RUN1,...`,
`--batch-size`...), an optional YAML config whose keys are the config class's fields (flags override it),
and `--progress/--no-progress` and `--threads`; it writes an eval folder that `amauta report` renders. The
judge room, above this one, adds `judge` and `grade` to the same `eval_app` (`amauta.judge.commands`); the
report room adds `amauta report`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import typer

from amauta.core.cli_options import ConfigArgs, FlagSpec, config_options
from amauta.core.threads import THREADS_OPTION, apply_threads
from amauta.evaluate import belebele, exam, harness, mgsm, perplexity, xquad

eval_app = typer.Typer(help="Evaluate models: Belebele, perplexity, XQuAD, MGSM, lm-eval tasks (and the judge); "
                       "compare adapters.",
                       no_args_is_help=True)

# The spellings of the fields every eval config shares (EvalModelsConfig) where `--field-name` is not it.
EVAL_FLAGS: dict[str, FlagSpec] = {"model": "-m", "out": "-o", "system_prompt": "--system"}
PROGRESS = typer.Option(True, "--progress/--no-progress", help="Show progress bars.")


def _run(run: Callable[..., Any], cfg: Any, progress: bool) -> None:
    """Run an eval on its validated config and print the summary table."""
    from amauta.evaluate.compare import print_summary
    from amauta.evaluate.runner import load_summary

    print_summary(load_summary(run(cfg, show_progress=progress)), cfg.out)


def eval_command(name: str, config_class: type, run: Callable[..., Any], help: str,
                 flags: dict[str, FlagSpec] | None = None) -> None:
    """Add `amauta eval NAME`: the options of `config_class`, then `run(config, show_progress=...)`.

    flags: short or renamed spellings of the task's own fields (the shared ones are in EVAL_FLAGS).
    """

    @eval_app.command(name, help=help)
    @config_options(config_class, {**EVAL_FLAGS, **(flags or {})})
    def command(config: ConfigArgs, progress: bool = PROGRESS, threads: int | None = THREADS_OPTION) -> None:
        apply_threads(threads)
        _run(run, config.load(), progress)


eval_command("belebele", belebele.BelebeleConfig, belebele.run,
             "Belebele reading comprehension (Table 5 of the thesis): accuracy, 95% CI and flips vs base.",
             {"formulation": "-f", "shots": "-k"})
eval_command("perplexity", perplexity.PerplexityConfig, perplexity.run,
             "Perplexity per token on held-out Spanish text: the first sign of forgetting Spanish.",
             {"system_prompt": None})  # no chat prompt to put it in
eval_command("xquad", xquad.XquadConfig, xquad.run,
             "XQuAD-es extractive QA by generation: exact match and F1 (Spanish normalisation).")
eval_command("mgsm", mgsm.MgsmConfig, mgsm.run,
             "MGSM maths word problems in Spanish: accuracy of the final number.")


GENERATE_API_KEY = typer.Option(None, "--generate-api-key", help="The answer endpoint's API key (--generate-base-url; "
                                "never written to disk; default: $AMAUTA_LLM_API_KEY, $AMAUTA_API_KEY, $OPENAI_API_KEY).")


@eval_app.command("exam")
@config_options(exam.ExamConfig, {"model": "-m", "out": "-o"})
def exam_command(config: ConfigArgs, progress: bool = PROGRESS, threads: int | None = THREADS_OPTION,
                 generate_api_key: str = GENERATE_API_KEY) -> None:
    """A document exam, closed-book and open-book: multiple choice and short answers, no judge."""
    apply_threads(threads)
    from amauta.core.console import make_console
    from amauta.evaluate.runner import load_summary

    cfg = config.load()
    if cfg.export_lm_eval:
        files = exam.export_lm_eval(cfg)
        console = make_console()
        for file in files:
            console.print(f"wrote {file}", highlight=False)
        console.print(f"run it: lm_eval --model hf --model_args pretrained=MODEL --include_path {cfg.export_lm_eval} "
                      f"--tasks {','.join(f.stem for f in files if f.suffix == '.yaml')}", highlight=False)
        return
    key = {"generate_api_key": generate_api_key} if generate_api_key else {}  # never in the config or on disk
    exam.print_exam_summary(load_summary(exam.run(cfg, show_progress=progress, **key)), cfg.out)


@eval_app.command("harness")
@config_options(harness.HarnessConfig, EVAL_FLAGS)
def harness_command(config: ConfigArgs, progress: bool = PROGRESS, threads: int | None = THREADS_OPTION) -> None:
    """lm-evaluation-harness tasks (belebele_spa_Latn, xnli_es, spanish_bench...) on the model and its adapters."""
    apply_threads(threads)
    from rich.table import Table

    from amauta.core.console import make_console
    from amauta.evaluate.harness_tables import task_tables
    from amauta.evaluate.runner import load_summary

    cfg = config.load()
    folder = harness.run(cfg, show_progress=progress)
    console = make_console()
    for title, headers, rows in task_tables(load_summary(folder)):
        console.print(title, highlight=False, markup=False)  # above the table: a title wraps at its width
        table = Table()
        for header in headers:
            table.add_column(header, justify="left" if header == "Model" else "right")
        for row in rows:
            table.add_row(*row)
        console.print(table)
    console.print(f"per-item results: {folder}/samples/", highlight=False)


def register(app: typer.Typer) -> None:
    """Add `amauta eval ...` to the app."""
    app.add_typer(eval_app, name="eval")
