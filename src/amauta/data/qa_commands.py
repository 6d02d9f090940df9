"""`amauta data build-qa`, `build-exam` and `review`: domain Q&A or exam items from documents, then human review."""

from __future__ import annotations

from pathlib import Path

import typer

from amauta.core.cli_options import ConfigArgs, Flag, config_options
from amauta.core.threads import THREADS_OPTION, apply_threads
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
    def build_exam_command(
        docs: list[Path] = typer.Argument(None, help="Document files or folders (PDF, HTML, Markdown, text)."),
        out: Path = typer.Option(None, "--out", "-o", help="Output exam JSONL (default: exam.jsonl)."),
        config: Path = typer.Option(None, "--config", "-c", help="A BuildExamConfig YAML; flags override it."),
        model: str = typer.Option(None, "--model", "-m", help="Endpoint model name, or a local profile/folder/GGUF "
                                  "(default: smollm2-135m-instruct)."),
        base_url: str = typer.Option(None, "--base-url", help="OpenAI-compatible endpoint, e.g. http://127.0.0.1:8000/v1."),
        api_key: str = typer.Option(None, "--api-key", help="Endpoint API key (never written to disk; default: "
                                    "$AMAUTA_LLM_API_KEY, then $AMAUTA_API_KEY, then $OPENAI_API_KEY)."),
        adapter: str = typer.Option(None, "--adapter", help="LoRA adapter or run folder for a local model."),
        facts_per_chunk: int = typer.Option(None, "--facts-per-chunk", help="Facts asked per chunk (default: 2)."),
        questions_per_fact: int = typer.Option(None, "--questions-per-fact", help="Wordings per fact: 1 dev, 3 test, "
                                               "the rest train (default: 6)."),
        unanswerable_per_chunk: int = typer.Option(None, "--unanswerable-per-chunk", help="Unanswerable questions "
                                                   "per chunk (default: 1)."),
        document_only_share: float = typer.Option(None, "--document-only-share", help="Share of facts kept "
                                                  "document-only, without train wordings (default: 0.5)."),
        seed: int = typer.Option(None, "--seed", help="Seed of option order and document-only facts (default: 0)."),
        retries: int = typer.Option(None, "--retries", help="Extra tries when a reply is not valid JSON (default: 3)."),
        max_chars: int = typer.Option(None, "--max-chars", help="Largest chunk in characters (default: 2000)."),
        min_chars: int = typer.Option(None, "--min-chars", help="Skip chunks shorter than this (default: 80)."),
        max_retries: int = typer.Option(None, "--max-retries", help="Endpoint retries after connection errors, "
                                        "timeouts and 5xx, with exponential backoff (default: 3)."),
        workers: int = typer.Option(None, "--workers", help="Parallel requests to an endpoint (default: 1)."),
        temperature: float = typer.Option(None, "--temperature", help="Sampling temperature; 0 = greedy (default: 0)."),
        cache: Path = typer.Option(None, "--cache", help="Cache JSONL (default: $AMAUTA_HOME/build-exam/cache.jsonl)."),
        threads: int | None = THREADS_OPTION,
    ) -> None:
        """Ask a model for Spanish exam items (with unanswerable ones) about each article of DOCS (cached, resumable)."""
        apply_threads(threads)
        from amauta.core.config import load_config, validate_config
        from amauta.core.errors import AmautaError
        from amauta.data.build_exam import BuildExamConfig, run

        overrides = {"docs": [str(d) for d in docs] if docs else None, "out": str(out) if out else None,
                     "model": model, "base_url": base_url, "api_key": api_key, "adapter": adapter,
                     "facts_per_chunk": facts_per_chunk, "questions_per_fact": questions_per_fact,
                     "unanswerable_per_chunk": unanswerable_per_chunk, "document_only_share": document_only_share,
                     "seed": seed, "retries": retries, "max_retries": max_retries, "max_chars": max_chars,
                     "min_chars": min_chars, "workers": workers, "temperature": temperature,
                     "cache": str(cache) if cache else None}
        if config:
            cfg = load_config(BuildExamConfig, config, overrides)
        else:
            if not docs:
                raise AmautaError("build-exam: give at least one document or folder (e.g. examples/docs) or --config")
            cfg = validate_config(BuildExamConfig, {k: v for k, v in overrides.items() if v is not None},
                                  source="build-exam")
        run(cfg)

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
