"""`amauta generate` (one answer) and `amauta chat` (the terminal chat). Heavy imports stay inside."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from contextlib import nullcontext
from pathlib import Path
from typing import Any

import typer

from amauta.chat.decoding import GenerationSettings, check_strategy
from amauta.core.cli_options import ConfigArgs, Flag, FlagSpec, config_options
from amauta.core.errors import AmautaError, did_you_mean
from amauta.core.threads import THREADS_OPTION, apply_threads
from amauta.models.types import DType, Quantization

DEFAULT_MODEL = "smollm2-135m-instruct"

# The decoding flags are GenerationSettings' fields; unset ones keep the model profile's defaults. The
# strategy is read as text and checked by `check_strategy`, whose error suggests the closest name.
DECODING_FLAGS: dict[str, FlagSpec] = {"strategy": Flag(("-s",), type=str), "max_new_tokens": "-n",
                                       "stop": Flag(repeat=True)}


def check_decoding(decoding: ConfigArgs) -> None:
    """Refuse an unknown --strategy before a model loads."""
    if "strategy" in decoding.values:
        check_strategy(decoding.values["strategy"])


SYSTEM_HELP = "System prompt (default: the model profile's, see `amauta models show`; '' = none)."
TEMPLATE_HELP = ("Render with this Amauta template (chatml, llama2, mistral, falcon, gemma, llama3, alpaca, alpaca-es) "
                 "instead of the tokenizer's: for a folder or .gguf whose template is not recorded.")


CHAT_BACKENDS: dict[str, Callable[..., Any]] = {}
"""`amauta chat --backend NAME` → a function returning its `ChatSession`, called as
`f(model, adapter, system=, template=, threads=, decoding={...}, rag=)`. `transformers` (Amauta's own decoding)
is this room's; engines that live in higher rooms lend theirs when their commands register (`llamacpp`:
`amauta.serve.commands`, which holds llama.cpp and the GGUF LoRA conversion this room may not import)."""


def _load(model: str, adapter: Path | None, dtype: DType, quantization: Quantization, quiet: bool = False,
          template: str | None = None):
    from amauta.core.console import make_console
    from amauta.models.load import load_model

    console = make_console(stderr=True)
    with nullcontext() if quiet else console.status(f"loading {model}…", spinner="dots"):
        return load_model(model, adapter=adapter, dtype=dtype, quantization=quantization, template=template)


def register(app: typer.Typer) -> None:
    """Add `generate` and `chat` to the `amauta` command."""

    @app.command("generate")
    @config_options(GenerationSettings, DECODING_FLAGS, config=None, show_defaults="the profile's")
    def generate_command(
        prompt: str = typer.Argument(..., help="The question or instruction ('-' reads it from standard input)."),
        model: str = typer.Option(DEFAULT_MODEL, "--model", "-m", help="Registry name, hub id, folder or .gguf file."),
        *,
        decoding: ConfigArgs,
        system: str | None = typer.Option(None, "--system", help=SYSTEM_HELP),
        template: str | None = typer.Option(None, "--template", help=TEMPLATE_HELP),
        adapter: Path | None = typer.Option(None, "--adapter", help="LoRA adapter folder or training run folder."),
        raw: bool = typer.Option(False, "--raw", help="Send the prompt as is, without the chat template."),
        as_json: bool = typer.Option(False, "--json", help="Print JSON: text, tokens, seconds, tok/s."),
        dtype: DType = typer.Option("auto", "--dtype", help="Weights' data type (auto: bf16 where supported)."),
        quantization: Quantization = typer.Option("none", "--quantization", "-q", help="8bit or 4bit: bitsandbytes."),
        threads: int | None = THREADS_OPTION,
    ) -> None:
        """Answer one prompt and print the answer (streamed), or JSON with --json."""
        apply_threads(threads)
        from amauta.chat.generate import Generation
        from amauta.core.console import make_console

        if prompt == "-":
            prompt = sys.stdin.read()
        if not prompt.strip():
            raise AmautaError("the prompt is empty; pass the text to answer (or '-' to read standard input)")
        check_decoding(decoding)
        loaded = _load(model, adapter, dtype, quantization, quiet=as_json, template=template)
        settings = GenerationSettings.from_profile(loaded.profile, **decoding.values)
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

    def transformers_session(model: str, adapter: Path | None, *, system: str | None, template: str | None,
                             threads: int | None, decoding: dict[str, Any], rag: Any = None, dtype: DType = "auto",
                             quantization: Quantization = "none"):
        from amauta.chat.session import ChatSession

        loaded = _load(model, adapter, dtype, quantization, template=template)
        settings = GenerationSettings.from_profile(loaded.profile, **decoding)
        return ChatSession(loaded, settings, system=system, rag=rag)

    CHAT_BACKENDS.setdefault("transformers", transformers_session)

    @app.command("chat")
    @config_options(GenerationSettings, DECODING_FLAGS, config=None, show_defaults="the profile's")
    def chat_command(
        model: str = typer.Option(DEFAULT_MODEL, "--model", "-m", help="Registry name, hub id, folder or .gguf file."),
        adapter: Path | None = typer.Option(None, "--adapter", help="LoRA adapter folder or training run folder "
                                            "(llamacpp: or a GGUF LoRA file)."),
        *,
        decoding: ConfigArgs,
        system: str | None = typer.Option(None, "--system", help=SYSTEM_HELP),
        template: str | None = typer.Option(None, "--template", help=TEMPLATE_HELP),
        rag: str | None = typer.Option(None, "--rag", help="Answer from this RAG index (name or folder)."),
        rag_top_k: int = typer.Option(4, "--rag-top-k", help="Passages retrieved per question with --rag."),
        dtype: DType = typer.Option("auto", "--dtype", help="Weights' data type (auto: bf16 where supported)."),
        quantization: Quantization = typer.Option("none", "--quantization", "-q", help="8bit or 4bit: bitsandbytes."),
        threads: int | None = THREADS_OPTION,
        backend: str = typer.Option("transformers", "--backend", "-b", help="transformers (every strategy), or "
                                    "llamacpp: a GGUF through llama.cpp, faster on a CPU (greedy and sampling; "
                                    "--adapter converted once to a GGUF LoRA)."),
    ) -> None:
        """A multi-turn chat in the terminal (/help inside lists the commands; Ctrl-C stops an answer)."""
        threads = apply_threads(threads)
        from amauta.chat.terminal import run_chat

        if backend not in CHAT_BACKENDS:
            raise AmautaError(f"unknown backend '{backend}'{did_you_mean(backend, CHAT_BACKENDS)}; choose "
                              f"{', '.join(CHAT_BACKENDS)}")
        engine_options = {"dtype": dtype, "quantization": quantization} if backend == "transformers" else {}
        if backend != "transformers" and (dtype != "auto" or quantization != "none"):
            raise AmautaError(f"--dtype and --quantization are for --backend transformers; a GGUF for --backend "
                              f"{backend} carries its own (export a quantized one with `amauta export --gguf-type`)")
        check_decoding(decoding)
        answerer = None
        if rag is not None:
            from amauta.rag.answer import RagAnswerer  # built by the rag room; only needed with --rag

            answerer = RagAnswerer(rag, top_k=rag_top_k)
        session = CHAT_BACKENDS[backend](model, adapter, system=system, template=template, threads=threads,
                                         decoding=decoding.values, rag=answerer, **engine_options)
        run_chat(session)
