"""`amauta serve`: the OpenAI-compatible API and the web chat page. Heavy imports stay inside."""

from __future__ import annotations

import os
import shlex

import typer

from amauta.core.cli_options import ConfigArgs, config_options
from amauta.core.errors import AmautaError, did_you_mean
from amauta.core.threads import apply_threads
from amauta.serve.config import ServeConfig

DEFAULT_MODEL = "smollm2-135m-instruct"
LOCAL_HOSTS = ("127.0.0.1", "localhost", "::1")


def check_exposure(host: str, api_key: str | None, insecure: bool) -> None:
    """Refuse to listen beyond this machine without an API key, unless the user insists."""
    if host not in LOCAL_HOSTS and not api_key and not insecure:
        raise AmautaError(f"--host {host} exposes the models to the network without an API key; set "
                          "AMAUTA_API_KEY=KEY (or AMAUTA_SERVER_API_KEY, or pass --api-key KEY, visible in ps), or "
                          "--insecure if this network is trusted")


def check_port_free(host: str, port: int) -> None:
    """Refuse at once when the address is taken: uvicorn would print its own "ERROR: [Errno 98]" and exit 1,
    after the models were loaded."""
    import socket

    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn does: TIME_WAIT is not in use
        try:
            sock.bind((host, port))
        except OSError as exc:
            raise AmautaError(f"cannot listen on {host}:{port} ({exc.strerror or exc}); is another server running "
                              "there? pick another --port") from None


def llamacpp_chat_session(*args, **kwargs):
    """`amauta chat --backend llamacpp`: the llama.cpp engine and its adapters live in this room, which lends
    them to the chat command (see `amauta.chat.commands.CHAT_BACKENDS`); imported only when chosen."""
    from amauta.serve.llamacpp_chat import llamacpp_chat_session as make

    return make(*args, **kwargs)


def register(app: typer.Typer) -> None:
    """Add `serve` to the `amauta` command (and lend the llama.cpp engine to `amauta chat --backend`)."""
    from amauta.chat.commands import CHAT_BACKENDS

    CHAT_BACKENDS["llamacpp"] = llamacpp_chat_session

    @app.command("serve")
    @config_options(ServeConfig, {"port": "-p", "quantization": "-q"}, config=None)
    def serve_command(
        model: list[str] | None = typer.Option(None, "--model", "-m", help="Model to serve (repeatable): registry "
                                                  "name, hub id, folder or .gguf. Default: smollm2-135m-instruct."),
        adapter: list[str] | None = typer.Option(None, "--adapter", help="LoRA adapter NAME=PATH served as model "
                                                    "id NAME on the first --model (repeatable); llamacpp: PATH may "
                                                    "also be a GGUF LoRA file."),
        backend: str = typer.Option("transformers", "--backend", "-b", help="transformers, llamacpp or vllm."),
        *,
        config: ConfigArgs,
        system: str | None = typer.Option(None, "--system", help="System prompt of requests that bring none "
                                             "(default: each model profile's, see `amauta models show`; '' = none)."),
        template: str | None = typer.Option(None, "--template", help="Render with this Amauta template (chatml, llama2, "
                                               "...) instead of the tokenizer's: for a folder or .gguf whose "
                                               "template is not recorded."),
        threads: int | None = typer.Option(None, "--threads", help="CPU threads for torch and llama.cpp (default: "
                                              "$AMAUTA_THREADS, else torch's choice; llama.cpp: half the cores)."),
        context: int | None = typer.Option(None, "--context", help="llamacpp: context window to allocate."),
        dry_run: bool = typer.Option(False, "--dry-run", help="vllm: print the command instead of running it."),
    ) -> None:
        """Serve models over an OpenAI-compatible API (/v1/chat/completions, /v1/completions, /v1/models)
        and a web chat page at /."""
        from rich.console import Console

        from amauta.llm.keys import api_key_with_source
        from amauta.serve.backends import BACKENDS, parse_adapters

        console = Console(stderr=True)
        settings = config.load()
        api_key, key_source = api_key_with_source("SERVER", settings.api_key)
        settings = settings.model_copy(update={"api_key": api_key})
        host, port, rag = settings.host, settings.port, settings.rag
        threads = apply_threads(threads)
        if backend not in BACKENDS:
            raise AmautaError(f"unknown backend '{backend}'{did_you_mean(backend, BACKENDS)}; choose "
                              f"{', '.join(BACKENDS)}")
        check_exposure(host, api_key, settings.insecure)
        models = list(model or [DEFAULT_MODEL])
        adapters = parse_adapters(adapter or [])

        if backend == "vllm":
            from amauta.serve.backends import exec_vllm, vllm_command

            if rag:
                raise AmautaError("--rag needs Amauta's own server; use --backend transformers or llamacpp with --rag")
            command = vllm_command(models, adapters, host=host, port=port, api_key=api_key)
            if dry_run:
                typer.echo(shlex.join(command))
                return
            console.print(f"starting vLLM: {shlex.join(command)}", highlight=False, soft_wrap=True)
            exec_vllm(command)
            return

        import uvicorn

        from amauta.serve.app import create_app

        check_port_free(host, port)
        with console.status(f"loading {', '.join(models)} ({backend})…", spinner="dots"):
            if backend == "llamacpp":
                from amauta.serve.backends import LlamaCppBackend

                engine = LlamaCppBackend(models, adapters=adapters, context=context, threads=threads,
                                         system_prompt=system, template=template)
            else:
                from amauta.serve.backends import TransformersBackend

                engine = TransformersBackend.load(models, adapters, dtype=settings.dtype,
                                                  quantization=settings.quantization, system_prompt=system,
                                                  template=template)
            answerer = None
            if rag:
                from amauta.rag.answer import RagAnswerer

                answerer = RagAnswerer(rag, top_k=settings.rag_top_k)
        app_ = create_app(engine, settings, answerer)
        ids = ", ".join(card.id for card in engine.cards())
        shown = f"[{host}]" if ":" in host else host
        console.print(f"serving {ids} on http://{shown}:{port}  (chat page: /, API: /v1, docs: /docs)"
                      + (f"  [API key required: {'--api-key' if key_source == 'flag' else '$' + key_source}]"
                         if api_key else ""), highlight=False)
        uvicorn.run(app_, host=host, port=port, log_level=os.environ.get("AMAUTA_LOG_LEVEL", "warning"),
                    timeout_graceful_shutdown=5)
