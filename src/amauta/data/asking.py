"""Asking an LLM about document chunks with a resumable answer cache: what `build-qa`, `build-exam` and
`augment` share.

Each of them cuts documents into chunks, asks a model one prompt per chunk (or per question), and appends
every answer to a JSONL cache keyed by what decides it (prompt, model, settings) as soon as it arrives, so
a killed run keeps what it paid for and a rerun asks only what is missing. The prompts, the reply checks
and the outputs stay with each stage; the chunking, the cache, the worker pool and the progress bar are
here, once.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import Field, model_validator

from amauta.core.config import StageConfig
from amauta.core.errors import AmautaError
from amauta.core.files import append_jsonl, atomic_write_jsonl, read_jsonl


class AskingConfig(StageConfig):
    """The model that answers and how it is asked: the keys build-qa, build-exam and augment's `llm:` share
    (`amauta.llm.make_llm` and `ask_json` take them)."""

    model: str | None = Field(None, description="Endpoint: the served model name; local: a profile, folder or GGUF "
                              "(default smollm2-135m-instruct).")
    base_url: str | None = Field(None, description="OpenAI-compatible endpoint, e.g. http://127.0.0.1:8000/v1; "
                                 "unset = a local model.")
    api_key: str | None = Field(None, description="Endpoint API key (default: $AMAUTA_LLM_API_KEY, $AMAUTA_API_KEY, "
                                                  "$OPENAI_API_KEY: docs/llm.md); never written to files.")
    adapter: str | None = Field(None, description="LoRA adapter or training run folder for a local model.")
    temperature: float = Field(0.0, ge=0, le=2, description="0 = deterministic (greedy) replies.")
    max_tokens: int = Field(1024, ge=16, description="Longest reply asked from the model.")
    retries: int = Field(3, ge=0, le=10, description="Extra tries when a reply is unusable (bad JSON, empty text); "
                         "a JSON one is sent back with the reason.")
    workers: int = Field(1, ge=1, le=64, description="Parallel requests to an endpoint (local models use 1).")
    timeout: float = Field(120, gt=0, description="Seconds to wait for one endpoint answer.")
    max_retries: int = Field(3, ge=0, le=10, description="Endpoint retries after connection errors, timeouts and 5xx "
                             "(waiting 1, 2, 4... s).")
    cache: str | None = Field(None, description="Cache JSONL of answers (default: $AMAUTA_HOME/<stage>/cache.jsonl); "
                              "a rerun asks only what is missing.")


class ChunkingConfig(StageConfig):
    """The documents and how they are cut into chunks (`read_chunks`): build-qa, build-exam and augment."""

    docs: list[str] = Field(min_length=1, description="Document files or folders (PDF, HTML, Markdown, text).")
    max_chars: int = Field(2000, ge=200, description="Largest chunk in characters (an article that fits stays whole).")
    overlap: int = Field(200, ge=0, description="Characters repeated between the parts of a split article.")
    min_chars: int = Field(80, ge=0, description="Skip chunks shorter than this (stray headings, page furniture).")

    @model_validator(mode="after")
    def _check_chunking(self) -> ChunkingConfig:
        if self.overlap >= self.max_chars // 2:
            raise ValueError(f"overlap ({self.overlap}) must be less than half of max_chars ({self.max_chars})")
        return self


class ChunkAskingConfig(AskingConfig, ChunkingConfig):
    """A model asked about each chunk of the documents (build-qa, build-exam)."""


def read_chunks(docs: list[str], max_chars: int, overlap: int, min_chars: int) -> tuple[list[Path], list[Any]]:
    """(the document files, their chunks of `min_chars`+ characters) of the files or folders `docs`;
    one clear line when no chunk is left."""
    from amauta.documents import chunk_document, iter_document_paths, load_document

    paths = list(iter_document_paths(docs))
    chunks = [c for path in paths for c in chunk_document(load_document(path), max_chars, overlap)
              if len(c.text.strip()) >= min_chars]
    if not chunks:
        raise AmautaError(f"{', '.join(docs)}: no chunk has {min_chars}+ characters; lower --min-chars")
    return paths, chunks


def model_identity(llm: Any) -> dict[str, Any]:
    """What names the model that answers, for the cache key (never a secret: no API key).

    An endpoint is its base URL plus the served model name: two servers that report the same name are two
    models. A local model is its resolved location (folder, GGUF, hub id), adapter, dtype, quantization and
    decoding settings, not its profile name. Any other LLM object (tests, notebooks) is its name.
    """
    base_url = getattr(llm, "base_url", None)
    if base_url:
        return {"endpoint": str(base_url).rstrip("/"), "model": getattr(llm, "model", None) or llm.name}
    loaded = getattr(llm, "loaded", None)
    if loaded is None:
        return {"name": llm.name}
    extra = getattr(loaded, "extra", None) or {}
    settings = getattr(llm, "settings", None)
    return {"local": _resolved(getattr(loaded, "source", "")), "name": llm.name,
            "adapter": _resolved(extra["adapter"]) if extra.get("adapter") else None,
            "converted_from": _resolved(extra["converted_from"]) if extra.get("converted_from") else None,
            "dtype": str(extra.get("dtype")) if extra.get("dtype") else None,
            "quantization": extra.get("quantization"),
            "settings": settings.model_dump(mode="json") if hasattr(settings, "model_dump") else None}


def _resolved(where: Any) -> str:
    """An absolute path for a file or folder that exists (a relative path names different models from
    different folders); anything else (a hub id, "tiny") as it is."""
    path = Path(str(where)).expanduser()
    return str(path.resolve()) if str(where) and path.exists() else str(where)


def reply_key(*decides: Any) -> str:
    """The cache key of a reply: a hash of everything that decides it (prompt version, model identity,
    messages, generation settings), in a fixed order."""
    return hashlib.sha256(json.dumps(list(decides), ensure_ascii=False, sort_keys=True).encode()).hexdigest()[:32]


def seal_jsonl(path: Path) -> None:
    """End a JSONL file cut mid-line by a killed writer with a newline, so the next append starts clean."""
    if path.is_file() and path.stat().st_size:
        with open(path, "rb+") as handle:
            handle.seek(-1, 2)
            if handle.read(1) != b"\n":
                handle.write(b"\n")


def read_cache(path: Path, usable: Callable[[dict], bool] | None = None) -> dict[str, dict]:
    """The latest successful entry per key (of those `usable` says hold a value of the right shape). A line torn by a killed run is skipped (that job is
    asked again)."""
    entries: dict[str, dict] = {}
    seal_jsonl(path)
    if path.is_file():
        for row in read_jsonl(path, skip_invalid=True):
            if row.get("status") == "ok" and "key" in row and (usable is None or usable(row)):
                entries[row["key"]] = row
    return entries


def reply_entry(key: str, model: str, prompt_version: str, reply: Any, value_field: str,
                **about: Any) -> dict[str, Any]:
    """The cache line of one `ask_json`-style reply: the validated value under `value_field` (None when every
    try failed), the error and the raw replies; `about` says what was asked (chunk, task, endpoint)."""
    return {"key": key, **about, "model": model, "prompt_version": prompt_version,
            "status": "ok" if reply.ok else "failed", value_field: reply.value if reply.ok else None,
            "error": reply.error, "raw_replies": reply.raw_replies, "time": time.strftime("%Y-%m-%dT%H:%M:%S")}


def answers(ask: Callable[[int], dict], todo: list[int], workers: int) -> Iterator[tuple[int, dict]]:
    """Yield (index, cache entry) as answers arrive: in order with one worker, else as they complete."""
    if workers == 1:
        # No thread pool: Ctrl+C stops at once instead of waiting for the request in flight.
        for i in todo:
            yield i, ask(i)
        return
    pool = ThreadPoolExecutor(max_workers=workers)
    try:
        futures = {pool.submit(ask, i): i for i in todo}
        for future in as_completed(futures):
            yield futures[future], future.result()
    finally:
        # An endpoint that is down fails every job alike: stop at the first error, not after all of them.
        pool.shutdown(wait=True, cancel_futures=True)


def ask_all(ask: Callable[[int], dict], todo: list[int], *, total: int, workers: int, cache_path: Path,
            console: Any, label: str) -> dict[int, dict]:
    """Ask every job in `todo` (of `total`, the rest cached) with a progress bar; every entry is appended
    to the cache as it arrives (in this thread, the only writer), so a killed run keeps every answer it
    paid for. Returns index → entry."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    cached = total - len(todo)
    columns = (TextColumn(f"[bold]{label}"), BarColumn(), MofNCompleteColumn(), TextColumn("{task.fields[note]}"),
               TimeRemainingColumn())
    entries: dict[int, dict] = {}
    with Progress(*columns, console=console, transient=False) as progress:
        task = progress.add_task(label, total=total, completed=cached, note=f"{cached} cached")
        failed = 0
        for i, entry in answers(ask, todo, workers):
            append_jsonl(cache_path, entry)
            entries[i] = entry
            failed += entry["status"] != "ok"
            progress.update(task, advance=1, note=f"{cached} cached, {failed} failed")
    return entries


@dataclass
class ChunkAnswers:
    """What `answer_chunks` found: the model, every chunk's cache entry (index → entry), how many came from
    the cache and how many were asked now, the endpoint (None for a local model) and the cache file."""

    llm: Any
    results: dict[int, dict]
    from_cache: int
    asked: int
    endpoint: str | None
    cache_path: Path


def answer_chunks(config: Any, stage: str, jobs: list[tuple[Any, list[dict]]], *, key: Callable[[list[dict], Any], str],
                  validate: Callable[[Any], Any], value_field: str, value_type: type, prompt_version: str,
                  llm: Any = None, console: Any = None) -> ChunkAnswers:
    """Ask `config`'s model (or `llm`) each job's messages for JSON, unless its cache has the answer.

    config: a stage config with the model fields (model, base_url, api_key, adapter, timeout, max_retries)
        and the asking ones (retries, max_tokens, temperature, workers, cache).
    stage: its name (`build-qa`): the progress bar's label and the default cache's folder in $AMAUTA_HOME.
    jobs: (chunk, messages) per chunk. key: the cache key of (messages, llm).
    validate: the reply's check (`ask_json`'s). value_field, value_type: the cache field holding the validated
        value, and its type (a cache line without one is asked again).
    """
    from amauta.core.paths import amauta_home
    from amauta.llm.client import LocalLLM, make_llm
    from amauta.llm.json_reply import ask_json

    llm = llm or make_llm(config.model, config.base_url, config.api_key, adapter=config.adapter,
                          timeout=config.timeout, max_retries=config.max_retries)
    cache_path = Path(config.cache) if config.cache else amauta_home() / stage / "cache.jsonl"
    cache = read_cache(cache_path, lambda row: isinstance(row.get(value_field), value_type))
    keys = [key(messages, llm) for _, messages in jobs]
    results: dict[int, dict] = {i: cache[k] for i, k in enumerate(keys) if k in cache}
    from_cache = len(results)
    todo = [i for i in range(len(jobs)) if i not in results]
    endpoint = model_identity(llm).get("endpoint")  # recorded beside the answers (as base_url in the config)

    def ask(i: int) -> dict:
        chunk, messages = jobs[i]
        reply = ask_json(llm, messages, retries=config.retries, max_tokens=config.max_tokens,
                         temperature=config.temperature, validate=validate)
        return reply_entry(keys[i], llm.name, prompt_version, reply, value_field, chunk_id=chunk.id,
                           source=chunk.source, article=chunk.article, endpoint=endpoint)

    workers = 1 if isinstance(llm, LocalLLM) else config.workers
    results |= ask_all(ask, todo, total=len(jobs), workers=workers, cache_path=cache_path, console=console,
                       label=stage)
    return ChunkAnswers(llm, results, from_cache, len(todo), endpoint, cache_path)


def sidecar(out: Path, suffix: str) -> Path:
    """The file beside `out` that holds its `suffix` (`qa.jsonl` → `qa.failures.jsonl`)."""
    return out.with_name(f"{out.stem}.{suffix}")


def write_failures(out: Path, failures: list[dict]) -> Path:
    """Write the failed chunks beside `out` (or remove a stale list this stage wrote); returns its path."""
    path = sidecar(out, "failures.jsonl")
    if failures:
        atomic_write_jsonl(path, failures)
    elif path.exists():
        path.unlink()  # this stage wrote it; a stale failure list from an earlier run would mislead
    return path


FAILURE_FIELDS = ("chunk_id", "source", "article", "model", "error", "raw_replies")


def failed_chunks(results: dict[int, dict]) -> list[dict]:
    """The failures list of a per-chunk run: what each failed chunk's cache entry says, in chunk order."""
    return [{k: results[i][k] for k in FAILURE_FIELDS} for i in sorted(results) if results[i]["status"] != "ok"]
