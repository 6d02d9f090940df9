"""`amauta generate` (one answer) and `amauta chat` (the terminal chat). Heavy imports stay inside."""

from __future__ import annotations

import json
import sys
from contextlib import nullcontext
from pathlib import Path

import typer

from amauta.core.errors import AmautaError
from amauta.core.threads import THREADS_OPTION, apply_threads

DEFAULT_MODEL = "smollm2-135m-instruct"


SYSTEM_HELP = "System prompt (default: the model profile's, see `amauta models show`; '' = none)."
TEMPLATE_HELP = ("Render with this Amauta template (chatml, llama2, mistral, falcon, gemma, llama3, alpaca, alpaca-es) "
                 "instead of the tokenizer's: for a folder or .gguf whose template is not recorded.")


def _load(model: str, adapter: Path | None, dtype: str, quantization: str, quiet: bool = False,
          template: str | None = None):
    from amauta.core.console import make_console
    from amauta.models.load import load_model

    console = make_console(stderr=True)
    with nullcontext() if quiet else console.status(f"loading {model}…", spinner="dots"):
        return load_model(model, adapter=adapter, dtype=dtype, quantization=quantization, template=template)


def register(app: typer.Typer) -> None:
    """Add `generate` and `chat` to the `amauta` command."""

    @app.command("generate")
    def generate_command(
        prompt: str = typer.Argument(..., help="The question or instruction ('-' reads it from standard input)."),
        model: str = typer.Option(DEFAULT_MODEL, "--model", "-m", help="Registry name, hub id, folder or .gguf file."),
        strategy: str | None = typer.Option(None, "--strategy", "-s",
                                               help="greedy, sampling, beam or contrastive (default: the profile's)."),
        max_new_tokens: int | None = typer.Option(None, "--max-new-tokens", "-n", help="Most tokens to generate."),
        system: str | None = typer.Option(None, "--system", help=SYSTEM_HELP),
        template: str | None = typer.Option(None, "--template", help=TEMPLATE_HELP),
        adapter: Path | None = typer.Option(None, "--adapter", help="LoRA adapter folder or training run folder."),
        raw: bool = typer.Option(False, "--raw", help="Send the prompt as is, without the chat template."),
        as_json: bool = typer.Option(False, "--json", help="Print JSON: text, tokens, seconds, tok/s."),
        temperature: float | None = typer.Option(None, help="Sampling temperature."),
        top_k: int | None = typer.Option(None, "--top-k", help="Sampling top-k, or contrastive candidates."),
        top_p: float | None = typer.Option(None, "--top-p", help="Sampling nucleus mass."),
        penalty_alpha: float | None = typer.Option(None, "--penalty-alpha", help="Contrastive degeneration penalty."),
        repetition_penalty: float | None = typer.Option(None, "--repetition-penalty", help="1.0 = off."),
        num_beams: int | None = typer.Option(None, "--num-beams", help="Beams for beam search."),
        stop: list[str] | None = typer.Option(None, "--stop", help="Extra stop string (repeatable)."),
        seed: int | None = typer.Option(None, "--seed", help="Seed for sampling."),
        dtype: str = typer.Option("auto", "--dtype", help="auto, float32, bfloat16 or float16."),
        quantization: str = typer.Option("none", "--quantization", "-q", help="none, 8bit or 4bit."),
        threads: int | None = THREADS_OPTION,
    ) -> None:
        """Answer one prompt and print the answer (streamed), or JSON with --json."""
        apply_threads(threads)
        from amauta.chat.decoding import GenerationSettings, check_strategy
        from amauta.chat.generate import Generation
        from amauta.core.console import make_console

        if prompt == "-":
            prompt = sys.stdin.read()
        if not prompt.strip():
            raise AmautaError("the prompt is empty; pass the text to answer (or '-' to read standard input)")
        if strategy is not None:
            check_strategy(strategy)
        loaded = _load(model, adapter, dtype, quantization, quiet=as_json, template=template)
        settings = GenerationSettings.from_profile(
            loaded.profile, strategy=strategy, max_new_tokens=max_new_tokens, temperature=temperature, top_k=top_k,
            top_p=top_p, penalty_alpha=penalty_alpha, repetition_penalty=repetition_penalty, num_beams=num_beams,
            stop=stop or None, seed=seed)
        if raw:
            for flag, value in (("--system", system), ("--template", template)):
                if value is not None:
                    raise AmautaError(f"{flag} needs the chat template; drop --raw or {flag}")
            request = prompt
        else:  # no --system: the profile's system prompt; --system '' : none
            request = ([{"role": "system", "content": system}] if system is not None else []) + \
                [{"role": "user", "content": prompt}]
        run = Generation(loaded, request, settings)
        if as_json:
            for _ in run:
                pass
            result = run.result
            print(json.dumps({"model": loaded.profile.name, "strategy": settings.strategy, "text": result.text,
                              "tokens": result.new_tokens, "prompt_tokens": result.prompt_tokens,
                              "seconds": round(result.seconds, 3), "tokens_per_second": round(result.tokens_per_second, 2),
                              "finish_reason": result.finish_reason}, ensure_ascii=False))
            return
        out = make_console(highlight=False)
        for delta in run:
            out.print(delta, end="", markup=False, soft_wrap=True)
        out.print()
        result = run.result
        make_console(stderr=True).print(f"[dim]{result.new_tokens} tokens · {result.seconds:.2f} s · "
                                   f"{result.tokens_per_second:.1f} tok/s · {settings.strategy} · "
                                   f"{result.finish_reason}[/]")

    @app.command("chat")
    def chat_command(
        model: str = typer.Option(DEFAULT_MODEL, "--model", "-m", help="Registry name, hub id, folder or .gguf file."),
        adapter: Path | None = typer.Option(None, "--adapter", help="LoRA adapter folder or training run folder."),
        strategy: str | None = typer.Option(None, "--strategy", "-s",
                                               help="greedy, sampling, beam or contrastive (default: the profile's)."),
        system: str | None = typer.Option(None, "--system", help=SYSTEM_HELP),
        template: str | None = typer.Option(None, "--template", help=TEMPLATE_HELP),
        rag: str | None = typer.Option(None, "--rag", help="Answer from this RAG index (name or folder)."),
        rag_top_k: int = typer.Option(4, "--rag-top-k", help="Passages retrieved per question with --rag."),
        max_new_tokens: int | None = typer.Option(None, "--max-new-tokens", "-n", help="Most tokens per answer."),
        dtype: str = typer.Option("auto", "--dtype", help="auto, float32, bfloat16 or float16."),
        quantization: str = typer.Option("none", "--quantization", "-q", help="none, 8bit or 4bit."),
        threads: int | None = THREADS_OPTION,
    ) -> None:
        """A multi-turn chat in the terminal (/help inside lists the commands; Ctrl-C stops an answer)."""
        apply_threads(threads)
        from amauta.chat.decoding import GenerationSettings, check_strategy
        from amauta.chat.session import ChatSession
        from amauta.chat.terminal import run_chat

        if strategy is not None:
            check_strategy(strategy)
        answerer = None
        if rag is not None:
            from amauta.rag.answer import RagAnswerer  # built by the rag room; only needed with --rag

            answerer = RagAnswerer(rag, top_k=rag_top_k)
        loaded = _load(model, adapter, dtype, quantization, template=template)
        settings = GenerationSettings.from_profile(loaded.profile, strategy=strategy, max_new_tokens=max_new_tokens)
        run_chat(ChatSession(loaded, settings, system=system, rag=answerer))
