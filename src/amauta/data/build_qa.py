"""Build a domain question–answer dataset from documents with a language model.

The thesis built its Ecuadorian tax-law dataset by pasting SRI documents into GPT-4 with a fixed prompt
and checking the answers by hand. This stage does the same, repeatably:

1. read the documents and cut them along their articles (`amauta.documents`);
2. for each chunk, ask a model (local, or any OpenAI-compatible endpoint) for question–answer pairs
   with a fixed Spanish prompt, as JSON {"instruction", "input", "output"}; bad JSON is repaired, asked
   again, and after `retries` recorded as a failure (`ask_json`);
3. keep provenance on every pair (source, page, article, chunk id, model), drop duplicate questions,
   and write `qa.jsonl` atomically, plus `qa.failures.jsonl` and `qa.manifest.json` beside it.

Every answered chunk is appended to a cache keyed by the chunk text, the prompt (system prompt included),
the generation settings and the model that answers: an endpoint by its URL and served model name (two
servers may report the same name), a local model by its resolved location, adapter and dtype. So a rerun
after a crash resumes, and a chunk that did not change is never asked twice of the same model. Failed
chunks are asked again on the next run (their failure is often transient). Then `amauta data review qa.jsonl`.
"""

from __future__ import annotations

import hashlib
import re
import time
import unicodedata
from pathlib import Path
from typing import Any

from pydantic import Field

from amauta.core.errors import AmautaError
from amauta.core.files import atomic_write_json, atomic_write_jsonl
from amauta.data.asking import (
    ChunkAskingConfig,
    answer_chunks,
    failed_chunks,
    model_identity,
    read_chunks,
    reply_key,
    sidecar,
    write_failures,
)
from amauta.llm.client import LLM

PROMPT_VERSION = "qa-es-v1"

SYSTEM_PROMPT = (
    "Eres un especialista en tributación ecuatoriana que prepara material educativo para la ciudadanía. "
    "Escribes en español claro y sencillo, para personas sin formación legal."
)

USER_PROMPT = """A partir del siguiente fragmento de un documento, escribe {n} pares de pregunta y respuesta.

Instrucciones:
- Cada pregunta debe plantear un problema cotidiano que una persona en Ecuador podría tener (por ejemplo, \
alguien que abre una tienda, trabaja por su cuenta, arrienda un departamento o recibe su primer sueldo) y \
que el fragmento permita resolver.
- La respuesta debe ser fácil de leer, correcta según el fragmento y completa; no inventes datos que el \
fragmento no diga. Si sirve, menciona el artículo.
- Usa "input" para datos de la situación de la persona (puede quedar vacío "").
- Responde solo con una lista JSON, sin texto adicional, con este formato exacto:
[{{"instruction": "pregunta", "input": "", "output": "respuesta"}}]

Fuente: {source}{article}
Fragmento:
\"\"\"
{text}
\"\"\""""


class BuildQAConfig(ChunkAskingConfig):
    """Config of `amauta data build-qa` (and the pipeline step `data.build_qa`); the model, asking and chunking
    keys are `ChunkAskingConfig`'s."""

    out: str = Field("qa.jsonl", description="Output JSONL of pairs; failures and manifest are written beside it.")
    pairs_per_chunk: int = Field(3, ge=1, le=20, description="Pairs asked for each chunk.")
    cache: str | None = Field(None, description="Cache JSONL (default: $AMAUTA_HOME/build-qa/cache.jsonl).")
    category: str = Field("dominio", description="Category written on every pair (kept by the Alpaca reader).")


def build_messages(chunk, pairs_per_chunk: int) -> list[dict]:
    """The Spanish prompt for one chunk (system + user)."""
    article = f", {chunk.article}" if chunk.article else ""
    if chunk.heading:
        article += f" ({chunk.heading})"
    user = USER_PROMPT.format(n=pairs_per_chunk, source=Path(chunk.source).name, article=article, text=chunk.text)
    return [{"role": "system", "content": SYSTEM_PROMPT}, {"role": "user", "content": user}]


def cache_key(messages: list[dict], llm: LLM, config: BuildQAConfig) -> str:
    """Hash of what decides the answer: the prompt (system prompt and chunk text), the model that answers
    (`model_identity`: endpoint and name, or a local model's location) and the generation settings."""
    return reply_key(PROMPT_VERSION, model_identity(llm), messages, config.max_tokens, config.temperature)


def validate_pairs(value: Any, limit: int) -> list[dict]:
    """Normalize a reply to a list of {"instruction", "input", "output"}; ValueError when nothing usable."""
    if isinstance(value, dict):
        lists = [v for v in value.values() if isinstance(v, list)]
        value = lists[0] if ("instruction" not in value and lists) else [value]
    if not isinstance(value, list):
        raise ValueError(f"se esperaba una lista JSON de objetos, llegó {type(value).__name__}")
    pairs = []
    for item in value:
        if not isinstance(item, dict):
            continue
        instruction, output, extra = item.get("instruction"), item.get("output"), item.get("input") or ""
        if not isinstance(instruction, str) or not isinstance(output, str) or not isinstance(extra, str):
            continue
        if instruction.strip() and output.strip():
            pairs.append({"instruction": instruction.strip(), "input": extra.strip(), "output": output.strip()})
    if not pairs:
        raise ValueError('ningún elemento tiene "instruction" y "output" como textos no vacíos')
    return pairs[:limit]


def _norm(text: str) -> str:
    """Case-, accent- and punctuation-insensitive form used to spot duplicate questions."""
    text = unicodedata.normalize("NFKD", text.casefold())
    text = "".join(c for c in text if not unicodedata.combining(c))
    return re.sub(r"[\W_]+", " ", text).strip()


def run(config: BuildQAConfig, *, llm: LLM | None = None, console: Any = None) -> Path:
    """Build the Q&A file described by `config` and return its path.

    llm: use this client instead of building one from the config (tests, or a model already loaded).
    console: a rich Console for progress and the summary (default: stderr).
    """
    from rich.console import Console

    from amauta.core.manifest import package_versions

    console = console or Console(stderr=True)
    started = time.time()
    out = Path(config.out)
    if out.suffix.lower() != ".jsonl":
        raise AmautaError(f"{out}: the output must be a .jsonl file (e.g. --out qa.jsonl)")
    paths, chunks = read_chunks(config.docs, config.max_chars, config.overlap, config.min_chars)

    jobs = [(chunk, build_messages(chunk, config.pairs_per_chunk)) for chunk in chunks]
    asked = answer_chunks(config, "build-qa", jobs, key=lambda messages, llm: cache_key(messages, llm, config),
                          validate=lambda value: validate_pairs(value, config.pairs_per_chunk), value_field="pairs",
                          value_type=list, prompt_version=PROMPT_VERSION, llm=llm, console=console)
    results = asked.results
    failures = failed_chunks(results)
    pairs, seen, duplicates = [], set(), 0
    for i, (chunk, _) in enumerate(jobs):
        entry = results[i]
        if entry["status"] != "ok":
            continue
        for pair in entry["pairs"]:
            norm = _norm(pair["instruction"] + " " + pair.get("input", ""))
            if norm in seen:
                duplicates += 1
                continue
            seen.add(norm)
            pid = hashlib.sha256(f"{chunk.id}\x00{pair['instruction']}\x00{pair.get('input', '')}".encode()).hexdigest()[:16]
            pairs.append({"id": pid, "instruction": pair["instruction"], "input": pair.get("input", ""),
                          "output": pair["output"], "category": config.category, "source": chunk.source,
                          "page": chunk.page, "article": chunk.article, "heading": chunk.heading,
                          "chunk_id": chunk.id, "chunk_text": chunk.text, "model": entry["model"],
                          "prompt_version": PROMPT_VERSION})

    atomic_write_jsonl(out, pairs)
    failures_path = write_failures(out, failures)
    summary = {"documents": len(paths), "chunks": len(jobs), "asked": asked.asked, "from_cache": asked.from_cache,
               "failed": len(failures), "pairs": len(pairs), "duplicates_dropped": duplicates,
               "seconds": round(time.time() - started, 1)}
    safe_config = config.model_dump(mode="json") | {"api_key": "***" if config.api_key else None}
    atomic_write_json(sidecar(out, "manifest.json"), {
        "stage": "data.build_qa", "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "config": safe_config,
        "model": asked.llm.name, "endpoint": asked.endpoint, "prompt_version": PROMPT_VERSION,
        "cache": str(asked.cache_path),
        "inputs": {str(p): hashlib.sha256(p.read_bytes()).hexdigest() for p in paths},
        "summary": summary, "versions": package_versions()})
    console.print(f"build-qa: {summary['pairs']} pairs from {summary['chunks']} chunks of {summary['documents']} "
                  f"documents ({summary['asked']} asked, {summary['from_cache']} from cache, {summary['failed']} failed, "
                  f"{summary['duplicates_dropped']} duplicate questions dropped) → {out}", highlight=False)
    if failures:
        console.print(f"[yellow]{len(failures)} chunks failed; see {failures_path}; rerun the same command to "
                      "retry them[/]")
    return out
