"""CLI: `amauta eval judge` (rubric grading by an LLM judge) and `amauta eval grade` (by people).

The evaluate room creates the `eval` group (`amauta.evaluate.commands.eval_app`); the judge room, above
it, adds its two commands to that group. Heavy imports stay inside the command functions so
`amauta --help` is fast.
"""

from __future__ import annotations

from pathlib import Path

import typer

from amauta.core.threads import THREADS_OPTION, apply_threads


def register(app: typer.Typer) -> None:
    """Add `amauta eval judge` and `amauta eval grade` to the evaluate room's `eval` group."""
    from amauta.evaluate.commands import eval_app

    add_eval_commands(eval_app)


def add_eval_commands(eval_app: typer.Typer) -> None:
    """Add `judge` and `grade` to an `eval` command group."""

    @eval_app.command("judge")
    def judge_command(
        prompt_set: str = typer.Option(None, "--set", help="Prompt set: general-es, law-ec, or a YAML file."),
        model: str = typer.Option(None, "--model", "-m", help="Base model the candidates build on (profile, folder, hub id, .gguf)."),
        candidates: str = typer.Option(None, "--candidates", "-c",
                                       help="Comma-separated WHO[+rag:INDEX][@STRATEGY]: base, a run/adapter folder, "
                                            "another model, rag:INDEX, ADAPTER+rag:INDEX (e.g. base,runs/law,rag:leyes,runs/law+rag:leyes)."),
        n: int = typer.Option(None, "--n", help="Answers per prompt (default 3, as the thesis)."),
        strategy: str = typer.Option(None, "--strategy", help="Default decoding: sampling (default), greedy, beam, contrastive."),
        max_new_tokens: int = typer.Option(None, "--max-new-tokens", help="Longest answer in tokens (default 256)."),
        seed: int = typer.Option(None, "--seed", help="Base seed of the sampled answers."),
        limit: int = typer.Option(None, "--limit", help="Only the first K prompts of each category (quick runs)."),
        rag_top_k: int = typer.Option(None, "--rag-top-k", help="Passages per question for rag candidates (default 4)."),
        quantization: str = typer.Option(None, "--quantization", help="none, 8bit or 4bit for candidate models."),
        dtype: str = typer.Option(None, "--dtype", help="auto, float32, bfloat16 or float16."),
        device: str = typer.Option(None, "--device", help="auto, cpu or cuda."),
        judge_model: str = typer.Option(None, "--judge-model", help="The judge: the endpoint's model name, or a local model."),
        judge_url: str = typer.Option(None, "--judge-url", help="OpenAI-compatible base URL (e.g. http://127.0.0.1:8000/v1)."),
        judge_api_key: str = typer.Option(None, "--judge-api-key", help="The judge's API key (never written to disk; "
                                          "default: $AMAUTA_JUDGE_API_KEY, $AMAUTA_API_KEY, $OPENAI_API_KEY)."),
        judge_workers: int = typer.Option(None, "--judge-workers", help="Concurrent requests to an endpoint judge (default 4)."),
        skip_judge: bool = typer.Option(None, "--skip-judge/--with-judge", help="Only generate answers (for people to grade)."),
        out: Path = typer.Option(None, "--out", "-o", help="Run folder (default runs/judge); rerun to resume."),
        config: Path = typer.Option(None, "--config", help="A YAML JudgeConfig; flags override its keys."),
        summary_only: bool = typer.Option(False, "--summary", help="Only recompute and print the tables of --out."),
        threads: int | None = THREADS_OPTION,
    ) -> None:
        """Grade answers 1–5 (accuracy, relevance, coherence, context) with an LLM judge: best-of-N and mean-of-N."""
        apply_threads(threads)
        from amauta.core.config import load_config, validate_config
        from amauta.judge.judge import JudgeConfig, resummarize, run

        if summary_only:
            resummarize(out or "runs/judge")
            return
        overrides = {
            "prompt_set": prompt_set, "model": model, "n": n, "strategy": strategy, "max_new_tokens": max_new_tokens,
            "seed": seed, "limit": limit, "rag_top_k": rag_top_k, "quantization": quantization, "dtype": dtype,
            "device": device, "judge_model": judge_model, "judge_url": judge_url, "judge_workers": judge_workers,
            "skip_judge": skip_judge, "out": str(out) if out else None,
            "candidates": [c.strip() for c in candidates.split(",") if c.strip()] if candidates else None,
        }
        if config:
            cfg = load_config(JudgeConfig, config, overrides)
        else:
            cfg = validate_config(JudgeConfig, {k: v for k, v in overrides.items() if v is not None}, source="flags")
        path = run(cfg, api_key=judge_api_key)
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
