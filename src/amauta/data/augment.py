"""`amauta data augment DOCS --recipe qa|paraphrase|cpt|raft`: training data that teaches a domain.

Each recipe writes an ordinary dataset folder (train.jsonl, val.jsonl, stats.json, lengths.png and a
manifest of stage `data.prepare`, through `prepare.write_dataset`), so `amauta train --dataset` reads it:

- `qa`: question–answer pairs about the documents, nothing else (the thesis's recipe; what build-qa makes).
- `paraphrase`: every article as written plus `restatements` rewordings (completion records; an LLM
  rewrites each article, and when fewer rewordings exist than asked, more are made by reordering the
  sentences of those that exist), mixed with the Q&A in `phrasings` wordings each (chat records). Facts
  seen once are stored but not extractable; varied restatements make them answerable (Allen-Zhu & Li 2023).
- `cpt`: continued pretraining: the documents' chunks as completion records (raw text, loss on every
  token), mixed with instruction data (`mix`, `mix_ratio` instruction records per document record) so the
  model keeps chatting.
- `raft`: each question with its gold chunk and `raft_distractors` distractor chunks of the same chunker
  (the nearest by BM25, as retrieval would bring them), the gold kept for a fraction `raft_p` of the
  examples (a seeded hash decides), laid out by `rag.answer.rag_messages`, the very function RAG answers
  with; the answer quotes the gold passage and cites its number (Zhang et al. 2024). Examples without
  their gold answer from memory (`raft_missing: memory`, the paper) or say what RAG says when the documents
  do not hold the answer (`abstain`, the default: see docs/data.md).

Where the model's text comes from: the configured LLM through `amauta.llm` (the embedded model or any
OpenAI-compatible endpoint), each call cached by prompt and model so a rerun resumes; or `from_files`,
hand-written restatements and Q&A (examples/augment/), with no LLM asked at all.

Hold-out (`exam`): no training record may contain the text of an exam `dev`/`test` question, and only
the `train` phrasings of `qa`-group facts may become Q&A; document-only facts reach training only through
the documents. A user's file that breaks this is refused in one line naming file:line; an LLM's text
that repeats a held-out question is dropped and counted.
"""

from __future__ import annotations

import re
import time
import unicodedata
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from pydantic import Field

from amauta.core.errors import AmautaError
from amauta.core.files import decode_utf8, parse_json
from amauta.core.outdir import claim
from amauta.data.asking import (
    AskingConfig,
    ChunkingConfig,
    ask_all,
    model_identity,
    read_cache,
    read_chunks,
    reply_entry,
    reply_key,
)
from amauta.data.mix import SplitConfig, repeat, select, split, unit_hash
from amauta.data.records import Record

Recipe = Literal["qa", "paraphrase", "cpt", "raft"]
RECIPES = ("qa", "paraphrase", "cpt", "raft")
PROMPT_VERSION = "augment-es-v1"

RESTATE_SYSTEM = ("Eres un redactor que reescribe textos normativos en español claro, sin cambiar ni agregar "
                  "ningún dato.")
RESTATE_USER = """Reescribe con tus propias palabras el siguiente artículo y {style}.
Conserva exactamente todos los datos (cifras, fechas, porcentajes, plazos, formularios y nombres) y no \
agregues nada que el artículo no diga. Responde solo con el texto reescrito.

Fuente: {source}{article}
Artículo:
\"\"\"
{text}
\"\"\""""
# One wording instruction per restatement, so k calls give k different texts even with greedy decoding.
RESTATE_STYLES = ("cambia el orden de las oraciones", "empieza por el dato más importante",
                  "usa oraciones cortas y sencillas", "explícalo como a una persona que abre su primer negocio",
                  "termina con el dato principal", "usa otras palabras para cada término que no sea un nombre")
REPHRASE_USER = """Escribe {n} formas distintas de hacer la misma pregunta, en español, sin cambiar lo que \
se pregunta ni agregar datos. Responde solo con una lista JSON de textos, así: ["...", "..."]

Pregunta: {question}"""


class AugmentLLMConfig(AskingConfig):
    """The model that writes restatements, Q&A and rephrasings (unused with `from_files`); its keys are
    `AskingConfig`'s."""

    cache: str | None = Field(None, description="Cache JSONL of answers (default: $AMAUTA_HOME/augment/cache.jsonl); "
                              "a rerun asks only what is missing.")


class AugmentConfig(ChunkingConfig):
    """Config of `amauta data augment` (a YAML file with these keys, or the command's flags); the documents
    and their chunking keys are `ChunkingConfig`'s (the RAG index's defaults, so chunks match the index's)."""

    recipe: Recipe = Field(description="qa, paraphrase, cpt or raft (see docs/data.md).")
    out: str | None = Field(None, description="The dataset folder to write (what `amauta train --dataset` reads).")
    model: str = Field("smollm2-135m-instruct", description="The model to be trained: its tokenizer and template "
                       "measure token lengths (as in `data prepare`).")
    system_prompt: str | None = Field(None, description="System prompt for conversations without one: unset = the "
                                      "model profile's, \"\" = none (training must match).")
    llm: AugmentLLMConfig = Field(default_factory=AugmentLLMConfig,
                                  description="The LLM that writes the augmentation (ignored with `from_files`).")
    from_files: list[str] = Field(default_factory=list, description="Hand-written augmentation JSONL (restatements, "
                                  "Q&A with rephrasings) used instead of asking an LLM, e.g. "
                                  "examples/augment/leyes-*.jsonl.")
    exam: str | None = Field(None, description="An exam JSONL whose dev/test questions stay out of the data and "
                             "whose groups decide which facts may become Q&A (only `qa`-group facts' train "
                             "phrasings).")
    pairs_per_chunk: int = Field(3, ge=1, le=20, description="Q&A pairs asked of the LLM per chunk (without `exam` "
                                 "and `from_files`).")
    restatements: int = Field(5, ge=1, le=20, description="paraphrase: rewordings of every article (k).")
    phrasings: int = Field(3, ge=1, le=10, description="paraphrase: wordings of each question (the original "
                           "included).")
    mix: str | None = Field(None, description="Instruction data mixed in (cpt needs it unless mix_ratio is 0): a "
                            "dataset folder or a source file (Alpaca, Dolly, chat... as `data prepare` reads them).")
    mix_ratio: float = Field(1.0, ge=0, description="Instruction records per recipe record (cpt: per document "
                             "record), sampled or repeated by hash.")
    raft_p: float = Field(0.8, ge=0, le=1, description="raft: share of examples that keep their gold chunk among "
                          "the passages.")
    raft_distractors: int = Field(3, ge=1, le=10, description="raft: distractor chunks per example (gold + 3 = the "
                                  "4 passages RAG retrieves by default).")
    raft_missing: Literal["memory", "abstain"] = Field(
        "abstain", description="raft, examples without their gold chunk: answer from memory (the paper) or say the "
        "documents do not say it (rag's reply; the default, for the abstention target).")
    raft_context_chars: int = Field(6000, ge=200, description="raft: characters of passages in the prompt (RAG's "
                                    "default max_context_chars).")
    val_fraction: float = Field(0.05, ge=0, lt=1, description="Share of the conversations kept for validation "
                                "(documents and restatements always train).")
    seed: int = Field(0, description="Decides every hashed choice (raft gold, distractor order, sampling, split).")
    category: str = Field("dominio", description="Category written on the domain records.")


@dataclass
class QA:
    """A question about a chunk, its answer, and where they came from.

    where: 'file:line' of a person's file, or 'LLM reply for <chunk>' (generated text).
    """

    question: str
    answer: str
    chunk: Any
    where: str
    generated: bool
    rephrasings: list[str] = field(default_factory=list)
    fact_id: str | None = None


@dataclass
class HeldOut:
    """An exam's hold-out: dev/test questions (as folded word strings) and each fact's group."""

    questions: list[tuple[str, str, str]] = field(default_factory=list)  # (folded words, item id, split)
    groups: dict[str, str | None] = field(default_factory=dict)
    train_qas: list[tuple[str, dict]] = field(default_factory=list)  # (where, item) of qa-group train items


# ---------------------------------------------------------------------------------------------- reading


def fold(text: str) -> str:
    """Lower case, accents and punctuation dropped, words joined by one space (how questions are matched)."""
    text = unicodedata.normalize("NFKD", text.casefold())
    return " ".join(re.findall(r"\w+", "".join(c for c in text if not unicodedata.combining(c))))


def numbered_jsonl(path: Path) -> list[tuple[str, dict]]:
    """('file:line', object) for each non-empty line of a JSONL file; bad JSON is one line naming file:line."""
    if not path.is_file():
        raise AmautaError(f"{path}: file not found")
    rows = []
    for number, raw in enumerate(path.read_bytes().splitlines(), start=1):
        line = decode_utf8(raw, path, first_line=number)
        if not line.strip():
            continue
        obj = parse_json(line, path, first_line=number)
        if not isinstance(obj, dict):
            raise AmautaError(f"{path}:{number}: expected a JSON object, found {type(obj).__name__}")
        rows.append((f"{path}:{number}", obj))
    return rows


def _string(obj: dict, key: str, where: str, what: str, *, required: bool = True) -> str | None:
    value = obj.get(key)
    if value is None and not required:
        return None
    if not isinstance(value, str) or not value.strip():
        raise AmautaError(f"{where}: {what} needs '{key}' as a non-empty string; got {value!r}")
    return value.strip()


def read_exam_holdout(path: Path) -> HeldOut:
    """The hold-out an exam imposes: its dev/test questions, each fact's group, its qa-group train items.

    Reads only the fields the hold-out needs (the full reader lives in `amauta.evaluate`, above this layer).
    """
    held = HeldOut()
    for where, obj in numbered_jsonl(path):
        for key in ("id", "fact_id", "question"):
            _string(obj, key, where, "an exam item")
        split_name = obj.get("split")
        if split_name not in ("train", "dev", "test"):
            raise AmautaError(f"{where}: exam item split {split_name!r} is unknown; use train, dev or test")
        group = obj.get("group")
        if group not in (None, "qa", "document_only"):
            raise AmautaError(f"{where}: exam item group {group!r} is unknown; use qa, document_only or null")
        held.groups[obj["fact_id"]] = group
        if split_name in ("dev", "test"):
            held.questions.append((fold(obj["question"]), obj["id"], split_name))
        elif group == "qa" and obj.get("answerable", True):
            _string(obj, "reference", where, "a train item")
            source = obj.get("source")
            if not isinstance(source, dict) or not isinstance(source.get("file"), str):
                raise AmautaError(f'{where}: exam item needs "source": {{"file": ..., "article": ...}}')
            held.train_qas.append((where, obj))
    if not held.groups:
        raise AmautaError(f"{path}: no exam items; write one JSON object per line (docs/evaluate.md)")
    return held


class ChunkIndex:
    """The documents' chunks, found by (file name, article)."""

    def __init__(self, chunks: list) -> None:
        self.chunks = chunks
        self.by_key: dict[tuple[str, str | None], Any] = {}
        for chunk in chunks:
            self.by_key.setdefault((Path(chunk.source).name, chunk.article), chunk)

    def find(self, file: str, article: str | None, where: str) -> Any:
        chunk = self.by_key.get((Path(file).name, article))
        if chunk is None:
            raise AmautaError(f"{where}: no chunk of the documents is {file}{', ' + article if article else ''}; "
                              "name a file and article of DOCS (e.g. iva.md, Art. 2)")
        return chunk


def read_from_files(paths: list[Path], chunks: ChunkIndex) -> tuple[dict[str, list[tuple[str, str]]], list[QA]]:
    """Hand-written augmentation: {chunk id: [(restatement, file:line)]} and Q&A, each line checked (file:line errors).

    Lines: {"kind": "restatement", "file", "article", "text"} or
    {"kind": "qa", "file", "article", "question", "answer", "rephrasings": [...], "fact_id"}.
    """
    restated: dict[str, list[tuple[str, str]]] = {}
    qas: list[QA] = []
    for path in paths:
        for where, obj in numbered_jsonl(path):
            kind = obj.get("kind")
            if kind not in ("restatement", "qa"):
                raise AmautaError(f"{where}: 'kind' must be \"restatement\" or \"qa\", got {kind!r}")
            file = _string(obj, "file", where, f"a {kind} line")
            article = obj.get("article")
            if article is not None and not isinstance(article, str):
                raise AmautaError(f"{where}: 'article' must be a string such as \"Art. 2\" or null")
            chunk = chunks.find(file, article, where)
            if kind == "restatement":
                restated.setdefault(chunk.id, []).append((_string(obj, "text", where, "a restatement line"), where))
                continue
            rephrasings = obj.get("rephrasings") or []
            if not isinstance(rephrasings, list) or not all(isinstance(r, str) and r.strip() for r in rephrasings):
                raise AmautaError(f"{where}: 'rephrasings' must be a list of non-empty strings")
            qas.append(QA(_string(obj, "question", where, "a qa line"), _string(obj, "answer", where, "a qa line"),
                          chunk, where, generated=False, rephrasings=[r.strip() for r in rephrasings],
                          fact_id=_string(obj, "fact_id", where, "a qa line", required=False)))
    return restated, qas


# ---------------------------------------------------------------------------------------------- the LLM


class CachedAsker:
    """Asks the configured LLM, caching every answer (JSONL, appended as it arrives) so reruns resume."""

    def __init__(self, config: AugmentLLMConfig, console: Any, llm: Any = None) -> None:
        from amauta.core.paths import amauta_home

        self.config = config
        self.console = console
        self._llm = llm
        self.cache_path = Path(config.cache) if config.cache else amauta_home() / "augment" / "cache.jsonl"
        self.cache = read_cache(self.cache_path)
        self.asked = self.from_cache = self.failed = 0

    @property
    def llm(self) -> Any:
        if self._llm is None:
            from amauta.llm.client import make_llm

            c = self.config
            self._llm = make_llm(c.model, c.base_url, c.api_key, adapter=c.adapter, timeout=c.timeout,
                                 max_retries=c.max_retries)
        return self._llm

    def _key(self, kind: str, messages: list[dict]) -> str:

        return reply_key(PROMPT_VERSION, kind, model_identity(self.llm), messages, self.config.max_tokens,
                         self.config.temperature)

    def ask(self, label: str, kind: str, jobs: list[list[dict]], validate) -> list[Any]:
        """The validated value of each job's reply (None where every try failed); kind "json" or "text"."""
        from amauta.llm.client import LocalLLM

        if not jobs:
            return []
        keys = [self._key(kind, messages) for messages in jobs]
        values: dict[int, Any] = {i: self.cache[k]["value"] for i, k in enumerate(keys) if k in self.cache}
        self.from_cache += len(values)
        todo = [i for i in range(len(jobs)) if i not in values]

        def one(i: int) -> dict:
            reply = self._ask_one(kind, jobs[i], validate)
            return reply_entry(keys[i], self.llm.name, PROMPT_VERSION, reply, "value", task=label)

        workers = 1 if isinstance(self.llm, LocalLLM) else self.config.workers
        answered = ask_all(one, todo, total=len(jobs), workers=workers, cache_path=self.cache_path,
                           console=self.console, label=f"augment: {label}")
        for i, entry in answered.items():
            self.asked += 1
            if entry["status"] == "ok":
                self.cache[entry["key"]] = entry
                values[i] = entry["value"]
            else:
                self.failed += 1
        return [values.get(i) for i in range(len(jobs))]

    def _ask_one(self, kind: str, messages: list[dict], validate):
        from amauta.core.errors import ContextTooLongError
        from amauta.llm.json_reply import JsonReply

        try:
            return self._ask_and_check(kind, messages, validate)
        except ContextTooLongError as exc:  # this prompt alone does not fit a small local model: a failure, not a stop
            return JsonReply(None, [], str(exc))

    def _ask_and_check(self, kind: str, messages: list[dict], validate):
        from amauta.llm.json_reply import JsonReply, ask_json

        c = self.config
        if kind == "json":
            return ask_json(self.llm, messages, retries=c.retries, max_tokens=c.max_tokens,
                            temperature=c.temperature, validate=validate)
        replies = []
        for _ in range(c.retries + 1):
            replies.append(self.llm.complete(messages, max_tokens=c.max_tokens, temperature=c.temperature))
            try:
                return JsonReply(validate(replies[-1]), replies)
            except ValueError as exc:
                error = str(exc)
        return JsonReply(None, replies, error)


def _text_reply(text: str) -> str:
    text = text.strip().strip('"').strip()
    if len(text) < 20:
        raise ValueError("la respuesta está vacía o es demasiado corta")
    return text


def _string_list(value: Any) -> list[str]:
    if isinstance(value, dict):
        value = next((v for v in value.values() if isinstance(v, list)), None)
    if not isinstance(value, list):
        raise ValueError("se esperaba una lista JSON de textos")
    texts = [v.strip() for v in value if isinstance(v, str) and v.strip()]
    if not texts:
        raise ValueError("la lista no tiene ningún texto")
    return texts


def _where(chunk: Any) -> str:
    return Path(chunk.source).name + (f", {chunk.article}" if chunk.article else "")


def llm_pairs(asker: CachedAsker, chunks: list, config: AugmentConfig) -> list[QA]:
    """Q&A pairs per chunk with build-qa's prompt (one question each)."""
    from amauta.data.build_qa import build_messages, validate_pairs

    jobs = [build_messages(chunk, config.pairs_per_chunk) for chunk in chunks]
    replies = asker.ask("Q&A", "json", jobs, lambda v: validate_pairs(v, config.pairs_per_chunk))
    qas = []
    for chunk, pairs in zip(chunks, replies, strict=True):
        for pair in pairs or []:
            question = pair["instruction"] + (f"\n\n{pair['input']}" if pair.get("input") else "")
            qas.append(QA(question, pair["output"], chunk, f"LLM reply for {_where(chunk)}", generated=True))
    return qas


def llm_restatements(asker: CachedAsker, chunks: list, k: int) -> dict[str, list[tuple[str, str]]]:
    """k rewordings of each chunk, one call each with its own wording instruction."""
    jobs, owners = [], []
    for chunk in chunks:
        for i in range(k):
            style = RESTATE_STYLES[i % len(RESTATE_STYLES)] + (f" (versión {i + 1})" if i >= len(RESTATE_STYLES) else "")
            user = RESTATE_USER.format(style=style, source=Path(chunk.source).name,
                                       article=f", {chunk.article}" if chunk.article else "", text=chunk.text)
            jobs.append([{"role": "system", "content": RESTATE_SYSTEM}, {"role": "user", "content": user}])
            owners.append(chunk)
    restated: dict[str, list[tuple[str, str]]] = {}
    for owner, text in zip(owners, asker.ask("restatements", "text", jobs, _text_reply), strict=True):
        if text:
            restated.setdefault(owner.id, []).append((text, f"LLM restatement of {_where(owner)}"))
    return restated


def llm_rephrasings(asker: CachedAsker, qas: list[QA], n: int) -> None:
    """Fill each QA's rephrasings up to n with the LLM's (generated: held-out matches are dropped later)."""
    wanting = [qa for qa in qas if len(qa.rephrasings) < n]
    jobs = [[{"role": "user", "content": REPHRASE_USER.format(n=n, question=qa.question)}] for qa in wanting]
    for qa, texts in zip(wanting, asker.ask("rephrasings", "json", jobs, _string_list), strict=True):
        seen = {fold(qa.question)} | {fold(r) for r in qa.rephrasings}
        for text in texts or []:
            if fold(text) not in seen and len(qa.rephrasings) < n:
                qa.rephrasings.append(text)
                seen.add(fold(text))


# ---------------------------------------------------------------------------------------------- recipes


@dataclass
class Item:
    """A record being built, with where its text came from (for hold-out refusals)."""

    record: Record
    where: str
    generated: bool


def _chat(question: str, answer: str, source: str, category: str) -> Record:
    return Record([{"role": "user", "content": question}, {"role": "assistant", "content": answer}], source, category)


def _document_text(chunk: Any) -> str:
    """A chunk as raw training text: its heading path first (it names the law and chapter), as RAG indexes it."""
    return f"{chunk.heading}\n\n{chunk.text}" if chunk.heading else chunk.text


_BLOCK = re.compile(r"\n\s*\n|\n(?=\s*(?:[-*•]|\d+\.)\s)")  # blank lines and list items start blocks
_SENTENCE = re.compile(r"(?<=[.;!?])\s+(?=[A-ZÁÉÍÓÚÑ¿¡(])")


def squeeze(text: str) -> str:
    """Whitespace runs (a PDF's line breaks inside sentences) as one space."""
    return " ".join(text.split())


def sentences(text: str) -> list[str]:
    """The text's sentences, line breaks inside them squeezed (list items and paragraphs end a sentence)."""
    return [s for block in _BLOCK.split(text) for s in _SENTENCE.split(squeeze(block)) if s]


def reorder(text: str, seed: int, salt: str) -> str:
    """The text's sentences in another order, fixed by (seed, salt): a restatement with its order varied."""
    parts = sentences(text)
    return " ".join(sorted(parts, key=lambda s: unit_hash(s, seed, salt)))


def restatement_texts(written: list[tuple[str, str]], k: int, seed: int) -> list[tuple[str, str]]:
    """k (restatement, where) pairs: the written ones, then sentence-reordered copies of them until there are k."""
    out = list(written[:k])
    for i in range(8 * k if written else 0):  # a two-sentence text has only two orders: stop trying at some point
        if len(out) >= k:
            break
        text, where = written[i % len(written)]
        candidate = reorder(text, seed, f"reorder{i}")
        if candidate not in [t for t, _ in out]:
            out.append((candidate, f"{where} (sentences reordered)"))
    return out


def qa_items(qas: list[QA], config: AugmentConfig, phrasings: int) -> list[Item]:
    items = []
    for qa in qas:
        for question in [qa.question, *qa.rephrasings][:phrasings]:
            items.append(Item(_chat(question, qa.answer, "qa", config.category), qa.where, qa.generated))
    return items


def document_items(chunks: list, source: str = "documents") -> list[Item]:
    return [Item(Record([], source, "documento", text=_document_text(c)), f"{c.source} ({_where(c)})", False)
            for c in chunks]


def _hit(chunk: Any) -> Any:
    from amauta.rag.retrieve import Hit

    return Hit(id=chunk.id, text=chunk.text, source=chunk.source, title=chunk.title, page=chunk.page,
               article=chunk.article, heading=chunk.heading)


def _quote(gold_text: str, question: str, answer: str, prompt: str) -> str | None:
    """The gold passage's sentence sharing most content words with the question and answer (the first one
    shown when none shares any), as the prompt shows it; None when the prompt cut every sentence short."""
    wanted = {w for w in fold(question + " " + answer).split() if len(w) > 3 or w.isdigit()}
    best, best_score = None, -1
    shown = squeeze(prompt)
    for sentence in sentences(gold_text):
        score = len(wanted & set(fold(sentence).split()))
        if score > best_score and sentence in shown:
            best, best_score = sentence, score
    return best


def _distractors(qa: QA, chunks: list, nearest: list, key: str, seed: int) -> list:
    """Chunks of other articles than the gold's: the BM25-nearest to the question first (what retrieval would
    bring), then the rest in a hashed order."""
    gold = (qa.chunk.source, qa.chunk.article)
    others = sorted(chunks, key=lambda c: unit_hash(c.id + key, seed, "fill"))
    pool, seen = [], set()
    for chunk in nearest + others:
        if (chunk.source, chunk.article) != gold and chunk.id not in seen:
            pool.append(chunk)
            seen.add(chunk.id)
    return pool


def raft_items(qas: list[QA], chunks: list, config: AugmentConfig) -> tuple[list[Item], dict[str, Any]]:
    """RAFT examples: question + passages (gold kept for raft_p) in RAG's layout, answers quoting the gold."""
    from amauta.rag.answer import NOT_FOUND, rag_messages
    from amauta.rag.retrieve import SpanishBM25

    bm25 = SpanishBM25.build([_document_text(c) for c in chunks], [c.id for c in chunks])
    by_id = {c.id: c for c in chunks}
    items, kept = [], 0
    for qa in qas:
        key = f"{qa.question}\x00{qa.chunk.id}"
        pool = _distractors(qa, chunks, [by_id[i] for i, _ in bm25.search(qa.question, config.raft_distractors + 8)],
                            key, config.seed)
        with_gold = unit_hash(key, config.seed, "raft-gold") < config.raft_p
        chosen = ([qa.chunk] + pool[: config.raft_distractors]) if with_gold else pool[: config.raft_distractors + 1]
        chosen.sort(key=lambda c: unit_hash(c.id + key, config.seed, "raft-order"))
        hits = [_hit(c) for c in chosen]
        messages = rag_messages(qa.question, hits, config.raft_context_chars)
        if with_gold:
            kept += 1
            number = chosen.index(qa.chunk) + 1
            quote = _quote(qa.chunk.text, qa.question, qa.answer, messages[-1]["content"])
            lead = f"Según el fragmento [{number}]: «{quote}»\n\n" if quote else ""
            answer = f"{lead}{qa.answer} [{number}]"
        else:
            answer = qa.answer if config.raft_missing == "memory" else NOT_FOUND
        record = Record([*messages, {"role": "assistant", "content": answer}], "raft", config.category)
        items.append(Item(record, qa.where, qa.generated))
    summary = {"examples": len(items), "gold_kept": kept, "gold_fraction": round(kept / max(len(items), 1), 4),
               "p": config.raft_p, "missing": config.raft_missing}
    return items, summary


def read_mix(path: str) -> tuple[list[Record], list[Path]]:
    """Instruction records to mix in: a dataset folder's train split, or a source file `data prepare` reads."""
    folder = Path(path)
    if folder.is_dir() and (folder / "manifest.json").is_file():
        from amauta.data.dataset import read_dataset_dir

        return read_dataset_dir(folder).train, [folder / "train.jsonl"]
    from amauta.data.readers import SourceConfig, read_source

    result = read_source(SourceConfig(path=path, name="instrucciones"))
    return result.records, result.inputs


def mix_items(records: list[Record], wanted: int, seed: int) -> list[Item]:
    """`wanted` instruction records: a hashed sample, or whole copies plus a hashed share when too few."""
    if not records or wanted <= 0:
        return []
    chosen = select(records, weight=1.0, cap=wanted, seed=seed) if wanted <= len(records) else \
        repeat(records, wanted / len(records), seed)
    return [Item(r, r.where or r.source, False) for r in chosen]


# ---------------------------------------------------------------------------------------------- hold-out


def check_holdout(items: list[Item], held: HeldOut | None) -> tuple[list[Item], int]:
    """Refuse a person's text that holds a dev/test question (one line); drop such generated text, counted."""
    if held is None or not held.questions:
        return items, 0
    kept, dropped = [], 0
    for item in items:
        text = f" {fold(item.record.text or chr(10).join(m['content'] for m in item.record.messages))} "
        leak = next(((qid, sp) for q, qid, sp in held.questions if q and f" {q} " in text), None)
        if leak is None:
            kept.append(item)
        elif item.generated:
            dropped += 1
        else:
            raise AmautaError(f"{item.where}: holds the text of exam {leak[1]} question {leak[0]!r}; held-out "
                              "questions never go into training data: reword or remove it")
    return kept, dropped


def exam_qas(held: HeldOut, chunks: ChunkIndex) -> list[QA]:
    """The exam's qa-group train phrasings as Q&A (answer: the item's reference)."""
    return [QA(obj["question"].strip(), obj["reference"].strip(),
               chunks.find(obj["source"]["file"], obj["source"].get("article"), where), where, generated=False,
               fact_id=obj["fact_id"]) for where, obj in held.train_qas]


def check_qa_facts(qas: list[QA], held: HeldOut) -> None:
    """With an exam, every hand-written Q&A must name a qa-group fact (document-only facts stay in documents)."""
    for qa in qas:
        if qa.fact_id is None:
            raise AmautaError(f"{qa.where}: Q&A line has no 'fact_id', so it cannot be checked against the exam's "
                              "hold-out; add the fact_id of a qa-group fact of the exam")
        group = held.groups.get(qa.fact_id, "missing")
        if group != "qa":
            what = "not in the exam" if group == "missing" else f"a {group or 'ungrouped'} fact of the exam"
            raise AmautaError(f"{qa.where}: fact {qa.fact_id!r} is {what}; only qa-group facts' phrasings may become "
                              "Q&A (document-only facts appear only in the documents): remove the line")


# ---------------------------------------------------------------------------------------------- the run


def safe_config(config: AugmentConfig) -> AugmentConfig:
    """The config as recorded in the manifest: the API key never written."""
    if not config.llm.api_key:
        return config
    return config.model_copy(update={"llm": config.llm.model_copy(update={"api_key": "***"})})


def run(config: AugmentConfig, *, out: str | Path | None = None, overwrite: bool = False, llm: Any = None,
        quiet: bool = False) -> Path:
    """Write the dataset folder of `config.recipe`; return its path.

    out: overrides `config.out`. overwrite: replace a dataset folder made from other inputs (core/outdir.py).
    llm: an LLM client to use instead of building one from `config.llm` (tests, a model already loaded).
    """
    from rich.console import Console

    out = Path(out or config.out or "")
    if not str(out) or str(out) == ".":
        raise AmautaError("no output folder: pass --out DIR (or set 'out:' in the config)")
    console = Console(stderr=True, quiet=quiet, highlight=False)
    started = time.perf_counter()
    paths, chunks = read_chunks(config.docs, config.max_chars, config.overlap, config.min_chars)
    files = [Path(p) for p in config.from_files]
    inputs = [*paths, *files, *([Path(config.exam)] if config.exam else [])]
    if config.recipe == "cpt" and config.mix_ratio > 0 and not config.mix:
        raise AmautaError("cpt mixes the documents with instruction data so the model keeps chatting; pass --mix "
                          "FILE_OR_DATASET (e.g. examples/data/alpaca_es.jsonl), or --mix-ratio 0 for documents alone")
    mixed, mix_inputs = read_mix(config.mix) if config.mix and config.mix_ratio > 0 else ([], [])
    inputs += mix_inputs
    recorded = safe_config(config)
    with claim(out, "data.prepare", overwrite=overwrite, quiet=quiet) as folder:
        if folder.up_to_date(recorded, inputs):
            console.print(f"{out}: already made from this config and these inputs; nothing to do", markup=False)
            return out
        folder.check_replace(recorded, inputs)
        items, summary = _build(config, chunks, files, mixed, console, llm)
        _write(config, recorded, folder, items, summary, inputs, started, console)
    return out


def _build(config: AugmentConfig, chunks: list, files: list[Path], mixed: list[Record], console: Any,
           llm: Any) -> tuple[list[Item], dict[str, Any]]:
    """The recipe's records (hold-out checked) and a summary of where they came from."""
    index = ChunkIndex(chunks)
    held = read_exam_holdout(Path(config.exam)) if config.exam else None
    restated, qas = read_from_files(files, index) if files else ({}, [])
    if held is not None:
        check_qa_facts(qas, held)
    needs_qa = config.recipe in ("qa", "paraphrase", "raft")
    uses_llm = not files and (config.recipe == "paraphrase" or (needs_qa and held is None))
    asker = CachedAsker(config.llm, console, llm) if uses_llm else None
    if needs_qa:
        if held is not None:
            # An LLM's pairs about a chunk cannot be traced to facts, and chunks mix qa and document-only
            # facts: with an exam, Q&A comes only from its qa-group train phrasings (and a person's lines).
            qas = exam_qas(held, index) + qas
        elif asker is not None:
            qas = llm_pairs(asker, chunks, config)
        qas = _unique_questions(qas)
        if not qas:
            raise AmautaError(f"recipe {config.recipe} needs Q&A, and none came ({'the --from files hold no qa lines' if files else 'the LLM gave no usable pairs'})")
    summary: dict[str, Any] = {"recipe": config.recipe, "chunks": len(chunks), "qa": len(qas)}
    items: list[Item] = []
    if config.recipe == "qa":
        items = qa_items(qas, config, phrasings=1)
    elif config.recipe == "paraphrase":
        articles = [c for c in chunks if c.article] or chunks  # documents without articles: every chunk
        if asker is not None:
            restated = llm_restatements(asker, articles, config.restatements)
            llm_rephrasings(asker, qas, config.phrasings - 1)
        docs = document_items(articles)
        for chunk in articles:
            texts = restatement_texts(restated.get(chunk.id, []), config.restatements, config.seed)
            docs += [Item(Record([], "restatements", "documento", text=t), where, asker is not None)
                     for t, where in texts]
        summary["articles"] = len(articles)
        summary["articles_without_restatements"] = sum(1 for c in articles if not restated.get(c.id))
        items = docs + qa_items(qas, config, phrasings=config.phrasings)
    elif config.recipe == "cpt":
        items = document_items(chunks)
    else:
        items, summary["raft"] = raft_items(qas, chunks, config)
    base = len(items)
    items += mix_items(mixed, round(config.mix_ratio * base), config.seed)
    items, dropped = check_holdout(items, held)
    summary.update(records=len(items), mixed=len(items) - base + dropped, dropped_held_out=dropped)
    if asker is not None:
        summary["llm"] = {"model": asker._llm.name if asker._llm else None, "asked": asker.asked,
                          "from_cache": asker.from_cache, "failed": asker.failed, "cache": str(asker.cache_path)}
    return items, summary


def _unique_questions(qas: list[QA]) -> list[QA]:
    seen, out = set(), []
    for qa in qas:
        if fold(qa.question) not in seen:
            seen.add(fold(qa.question))
            out.append(qa)
    return out


def _write(config: AugmentConfig, recorded: AugmentConfig, folder: Any, items: list[Item], summary: dict[str, Any],
           inputs: list[Path], started: float, console: Any) -> None:
    """Split, measure and write the folder through `prepare.write_dataset` (the one dataset-folder writer)."""
    from amauta.data.clean import RULES
    from amauta.data.prepare import write_dataset
    from amauta.data.stats import length_summary
    from amauta.data.tokenize import conversation_lengths
    from amauta.models.load import load_tokenizer

    records, seen = [], set()
    for item in items:
        if item.record.id not in seen:  # a reordered restatement may equal its original
            seen.add(item.record.id)
            records.append(item.record)
    chats = [r for r in records if not r.is_completion]
    train, val = split(chats, SplitConfig(val_fraction=config.val_fraction, seed=config.seed))
    train += [r for r in records if r.is_completion]  # every fact stays in training
    train.sort(key=lambda r: unit_hash(r.id, config.seed, "order"))
    tokenizer, profile = load_tokenizer(config.model, system_prompt=config.system_prompt)
    final = train + val
    chat_lengths = conversation_lengths(tokenizer, profile, [r.messages for r in final if not r.is_completion])
    texts = [r.text for r in final if r.is_completion]
    text_lengths = [len(ids) for ids in tokenizer(texts, add_special_tokens=False)["input_ids"]] if texts else []
    lengths = {profile.template: chat_lengths + text_lengths}
    per_source: dict[str, dict[str, Any]] = {}
    for name in dict.fromkeys(r.source for r in records):
        n = sum(r.source == name for r in records)
        per_source[name] = {"read": n, "invalid": 0, "skipped": {}, "removed": dict.fromkeys(RULES, 0), "kept": n,
                            "selected": n, "train": sum(r.source == name for r in train),
                            "val": sum(r.source == name for r in val)}
    stats = {"model": config.model, "template": profile.template, "system_prompt": profile.system_prompt,
             "totals": {"read": len(records), "invalid": 0, "kept": len(records), "train": len(train), "val": len(val)},
             "removed": dict.fromkeys(RULES, 0), "sources": per_source,
             "categories": dict(Counter(r.category or "(none)" for r in train).most_common()),
             "token_lengths": {profile.template: length_summary(lengths[profile.template])},
             "training_tokens": sum(lengths[profile.template]),
             "invalid_examples": [], "removed_examples": {}, "augment": summary}
    write_dataset(folder, train, val, stats=stats, lengths=lengths, seconds={"augment": time.perf_counter() - started},
                  started=started, config=recorded, inputs=inputs, model=config.model, profile=profile,
                  made_by="data.augment", recipe=config.recipe)
    llm_note = ""
    if "llm" in summary:
        llm_note = f"; LLM: {summary['llm']['asked']} asked, {summary['llm']['from_cache']} from cache, " \
                   f"{summary['llm']['failed']} failed"
    longest = stats["token_lengths"][profile.template]
    console.print(f"augment ({config.recipe}): {len(train)} train + {len(val)} val records "
                  f"({len(texts)} completion, {len(chat_lengths)} chat; tokens p50 {longest['p50']}, max "
                  f"{longest['max']}: train with max_length above it){llm_note}"
                  + (f"; {summary['dropped_held_out']} generated texts dropped for repeating held-out questions"
                     if summary["dropped_held_out"] else "") + f" → {folder.path}", markup=False)
