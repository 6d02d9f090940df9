"""`amauta eval belebele|perplexity|xquad|mgsm`.

Every eval command takes the same model options (`--model`, `--adapter`, `--compare base,RUN1,...`),
an optional YAML config whose keys are the config class's fields (flags override it), and writes an
eval folder that `amauta report` renders. The judge room, above this one, adds `judge` and `grade` to
the same `eval_app` (`amauta.judge.commands`); the report room adds `amauta report`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer

from amauta.core.threads import THREADS_OPTION, apply_threads

eval_app = typer.Typer(help="Evaluate models: Belebele, perplexity, XQuAD, MGSM (and the judge); compare adapters.",
                       no_args_is_help=True)

# Options every eval command shares (None = keep the config file's or the class's default).
CONFIG = typer.Option(None, "--config", "-c", help="YAML with the config's keys (flags override it).")
MODEL = typer.Option(None, "--model", "-m", help="Base model: registry name, hub id, folder or .gguf.")
ADAPTER = typer.Option(None, "--adapter", help="LoRA adapter or training run folder applied to the base.")
COMPARE = typer.Option(None, "--compare", help="Evaluate together: base,RUN_OR_ADAPTER1,... (label=path allowed).")
LIMIT = typer.Option(None, "--limit", help="Only the first N items.")
BATCH = typer.Option(None, "--batch-size", help="Items per forward pass / generation batch.")
OUT = typer.Option(None, "--out", "-o", help="Eval folder; rerunning the same command resumes it.")
DTYPE = typer.Option(None, "--dtype", help="auto (float32 on a CPU, bf16 on a GPU), float32, bfloat16 or float16.")
DEVICE = typer.Option(None, "--device", help="auto, cpu or cuda.")
QUANT = typer.Option(None, "--quantization", help="none, 8bit or 4bit (GPU).")
PROGRESS = typer.Option(True, "--progress/--no-progress", help="Show progress bars.")
SYSTEM = typer.Option(None, "--system", help="System prompt of the chat prompts (default: the model profile's; "
                                              "'' = none). Part of the cache key.")


def _config(cls: type, path: Path | None, overrides: dict[str, Any]):
    from amauta.core.config import load_config, validate_config

    if path is not None:
        return load_config(cls, path, overrides)
    return validate_config(cls, {k: v for k, v in overrides.items() if v is not None}, source="command line")


def _run(cls: type, run: Any, options: dict[str, Any]) -> None:
    """Validate a command's options as `cls` (its --config YAML first, flags over it), run it, print the summary.

    options: the command's parameters, `config` and `progress` among them (the command's `locals()`).
    """
    from amauta.evaluate.compare import print_summary
    from amauta.evaluate.runner import load_summary

    options = dict(options)
    path, progress = options.pop("config"), options.pop("progress")
    apply_threads(options.pop("threads"))
    cfg = _config(cls, path, options)
    print_summary(load_summary(run(cfg, show_progress=progress)), cfg.out)


@eval_app.command("belebele")
def belebele_command(
    config: Path = CONFIG, model: str = MODEL, adapter: str = ADAPTER, compare: str = COMPARE,
    data: str = typer.Option(None, "--data", help="Belebele JSONL/parquet (official or short layout) or hub id."),
    language: str = typer.Option(None, "--language", help="Hub config when --data is a hub id (spa_Latn)."),
    split: str = typer.Option(None, "--split", help="Hub split when --data is a hub id (test)."),
    formulation: str = typer.Option(None, "--formulation", "-f", help="cloze (default), letter, or generate."),
    prompt: str = typer.Option(None, "--prompt", help="Prompt format: es (default), lm-eval, paper."),
    shots: int = typer.Option(None, "--shots", "-k", help="Solved examples before each item."),
    shots_from: str = typer.Option(None, "--shots-from", help="File the shots come from (else the first items)."),
    max_new_tokens: int = typer.Option(None, "--max-new-tokens", help="generate only: tokens to write."),
    system_prompt: str = SYSTEM,
    limit: int = LIMIT, batch_size: int = BATCH, out: str = OUT, dtype: str = DTYPE, device: str = DEVICE,
    quantization: str = QUANT, progress: bool = PROGRESS, threads: int = THREADS_OPTION,
) -> None:
    """Belebele reading comprehension (Table 5 of the thesis): accuracy, 95% CI and flips vs base."""
    options = dict(locals())  # a copy taken before the import below adds names
    from amauta.evaluate.belebele import BelebeleConfig, run

    _run(BelebeleConfig, run, options)


@eval_app.command("perplexity")
def perplexity_command(
    config: Path = CONFIG, model: str = MODEL, adapter: str = ADAPTER, compare: str = COMPARE,
    data: str = typer.Option(None, "--data", help="XQuAD/SQuAD JSON, JSONL with text/passage, or a .txt file."),
    max_length: int = typer.Option(None, "--max-length", help="Window length in tokens for long texts."),
    limit: int = LIMIT, batch_size: int = BATCH, out: str = OUT, dtype: str = DTYPE, device: str = DEVICE,
    quantization: str = QUANT, progress: bool = PROGRESS, threads: int = THREADS_OPTION,
) -> None:
    """Perplexity per token on held-out Spanish text: the first sign of forgetting Spanish."""
    options = dict(locals())  # a copy taken before the import below adds names
    from amauta.evaluate.perplexity import PerplexityConfig, run

    _run(PerplexityConfig, run, options)


@eval_app.command("xquad")
def xquad_command(
    config: Path = CONFIG, model: str = MODEL, adapter: str = ADAPTER, compare: str = COMPARE,
    data: str = typer.Option(None, "--data", help="SQuAD-style JSON (default ../shared/data/xquad/xquad.es.json)."),
    max_new_tokens: int = typer.Option(None, "--max-new-tokens", help="Tokens per answer."),
    system_prompt: str = SYSTEM,
    limit: int = LIMIT, batch_size: int = BATCH, out: str = OUT, dtype: str = DTYPE, device: str = DEVICE,
    quantization: str = QUANT, progress: bool = PROGRESS, threads: int = THREADS_OPTION,
) -> None:
    """XQuAD-es extractive QA by generation: exact match and F1 (Spanish normalisation)."""
    options = dict(locals())  # a copy taken before the import below adds names
    from amauta.evaluate.xquad import XquadConfig, run

    _run(XquadConfig, run, options)


@eval_app.command("mgsm")
def mgsm_command(
    config: Path = CONFIG, model: str = MODEL, adapter: str = ADAPTER, compare: str = COMPARE,
    data: str = typer.Option(None, "--data", help="MGSM TSV (default ../shared/data/mgsm/mgsm_es.tsv)."),
    max_new_tokens: int = typer.Option(None, "--max-new-tokens", help="Tokens for the reasoning and answer."),
    system_prompt: str = SYSTEM,
    limit: int = LIMIT, batch_size: int = BATCH, out: str = OUT, dtype: str = DTYPE, device: str = DEVICE,
    quantization: str = QUANT, progress: bool = PROGRESS, threads: int = THREADS_OPTION,
) -> None:
    """MGSM maths word problems in Spanish: accuracy of the final number."""
    options = dict(locals())  # a copy taken before the import below adds names
    from amauta.evaluate.mgsm import MgsmConfig, run

    _run(MgsmConfig, run, options)


@eval_app.command("exam")
def exam_command(
    config: Path = CONFIG,
    exam: str = typer.Option(None, "--exam", help="Exam JSONL (default examples/exams/leyes.jsonl)."),
    split: str = typer.Option(None, "--split", help="train, dev or test (default): test is read once, at the end."),
    candidates: str = typer.Option(None, "--candidates", help="base,RUN,rag:INDEX,RUN+rag:INDEX (NAME=... labels one); "
                                                              "the first is the reference."),
    model: str = MODEL,
    gold_passage: bool = typer.Option(None, "--gold-passage/--no-gold-passage",
                                      help="Also give each model the item's own source chunk (retrieval's upper bound)."),
    docs: str = typer.Option(None, "--docs", help="Documents the exam cites (default: docs/ beside the exam's folder)."),
    options_only: bool = typer.Option(None, "--options-only/--no-options-only",
                                      help="Also score the options with the question withheld (on by default)."),
    short_answer: bool = typer.Option(None, "--short-answer/--no-short-answer",
                                      help="Also generate short answers and score their key facts (on by default)."),
    prompt_format: str = typer.Option(None, "--prompt-format", help="chat (default) or plain (the lm-eval layout)."),
    rag_top_k: int = typer.Option(None, "--rag-top-k", help="Passages retrieved per question for rag:INDEX."),
    max_new_tokens: int = typer.Option(None, "--max-new-tokens", help="Tokens per short answer."),
    seed: int = typer.Option(None, "--seed", help="Seed of the bootstrap intervals."),
    export_lm_eval: str = typer.Option(None, "--export-lm-eval",
                                       help="Write the exam as an lm-evaluation-harness task in DIR; scores nothing."),
    limit: int = LIMIT, batch_size: int = BATCH, out: str = OUT, dtype: str = DTYPE, device: str = DEVICE,
    quantization: str = QUANT, progress: bool = PROGRESS, threads: int = THREADS_OPTION,
) -> None:
    """A document exam, closed-book and open-book: multiple choice and short answers, no judge."""
    options = dict(locals())  # a copy taken before the import below adds names
    from amauta.core.console import make_console
    from amauta.evaluate.exam import ExamConfig, export_lm_eval, print_exam_summary, run
    from amauta.evaluate.runner import load_summary

    path, show_progress = options.pop("config"), options.pop("progress")
    apply_threads(options.pop("threads"))
    cfg = _config(ExamConfig, path, options)
    if cfg.export_lm_eval:
        files = export_lm_eval(cfg)
        console = make_console()
        for file in files:
            console.print(f"wrote {file}", highlight=False)
        console.print(f"run it: lm_eval --model hf --model_args pretrained=MODEL --include_path {cfg.export_lm_eval} "
                      f"--tasks {','.join(f.stem for f in files if f.suffix == '.yaml')}", highlight=False)
        return
    print_exam_summary(load_summary(run(cfg, show_progress=show_progress)), cfg.out)


def register(app: typer.Typer) -> None:
    """Add `amauta eval ...` to the app."""
    app.add_typer(eval_app, name="eval")
