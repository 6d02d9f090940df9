"""Retrieval: Spanish BM25, dense vectors, and their reciprocal rank fusion.

BM25 catches exact words (article numbers, "RIMPE", "IVA"); dense vectors catch paraphrases ("¿cuánto
se paga?" vs. "tarifa"). Reciprocal rank fusion adds 1/(k + rank) from each list, so neither score scale
has to be calibrated against the other. Measured on XQuAD-es and SQuAD-es in docs/rag.md.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any, Literal

from amauta.core.errors import AmautaError
from amauta.core.files import atomic_dir, atomic_write_json

Mode = Literal["hybrid", "dense", "bm25"]
RRF_K = 60  # the constant from Cormack et al. (2009); results are flat for k in 20..100
TOKEN_PATTERN = r"(?u)\b\w+\b"  # keep one-character tokens: article numbers like "5" matter in law

# Interrogatives and fillers of Spanish questions, which bm25s' (NLTK) Spanish list lacks.
_EXTRA_STOPWORDS = (
    "qué cuál cuáles cómo dónde cuándo quién quiénes cuánto cuánta cuántos cuántas "
    "puede pueden debe deben hay según mediante"
).split()


def _strip_accents(word: str) -> str:
    return "".join(c for c in unicodedata.normalize("NFD", word) if unicodedata.category(c) != "Mn")


def spanish_stopwords() -> list[str]:
    """NLTK's Spanish stopwords plus question words, each also without accents (users often omit them)."""
    from bm25s.stopwords import STOPWORDS_SPANISH

    words = set(STOPWORDS_SPANISH) | set(_EXTRA_STOPWORDS)
    return sorted(words | {_strip_accents(w) for w in words})


class SpanishBM25:
    """BM25 (bm25s) over Snowball-stemmed Spanish with Spanish stopwords.

    ids: the caller's id for each indexed text, returned by `search`.
    """

    def __init__(self, retriever: Any, ids: list[str]):
        self.retriever = retriever
        self.ids = ids

    @staticmethod
    def _tokenize(texts: list[str], return_ids: bool):
        import bm25s
        import Stemmer

        return bm25s.tokenize(texts, stopwords=spanish_stopwords(), stemmer=Stemmer.Stemmer("spanish"),
                              token_pattern=TOKEN_PATTERN, return_ids=return_ids, show_progress=False)

    @classmethod
    def build(cls, texts: Sequence[str], ids: Sequence[str]) -> SpanishBM25:
        """Index `texts` (any number, zero included) under `ids`."""
        import bm25s

        retriever = bm25s.BM25()
        if texts:
            retriever.index(cls._tokenize(list(texts), return_ids=True), show_progress=False)
        return cls(retriever if texts else None, list(ids))

    def search(self, query: str, k: int) -> list[tuple[str, float]]:
        """The best `k` (id, score) pairs with a positive score (no shared word, no hit)."""
        import numpy as np  # here, not at the top: the CLI imports this module for a config and needs no numpy

        if self.retriever is None or not self.ids:
            return []
        tokens = self._tokenize([query], return_ids=False)[0]
        if not tokens:
            return []
        scores = np.asarray(self.retriever.get_scores(tokens))
        k = min(k, len(scores))
        top = np.argpartition(-scores, k - 1)[:k]
        top = top[np.argsort(-scores[top], kind="stable")]
        return [(self.ids[i], float(scores[i])) for i in top if scores[i] > 0]

    def coverage(self, query: str, ids: Sequence[str]) -> dict[str, float]:
        """For each of `ids`: the share of the query's content words its indexed text holds (0 to 1).

        Words are the ones BM25 searches with (stopwords dropped, Snowball stems), each weighted by its IDF
        in this index, so a rare word counts more than one every chunk uses, and a word the index never saw
        counts most: a question that names what the documents never mention is not about them. A query of
        stopwords only covers every text (1.0): there is nothing to check.
        """
        tokens = set(self._tokenize([query], return_ids=False)[0]) - {""}
        if not tokens:
            return {pid: 1.0 for pid in ids}
        weights, holders = self._weights_and_holders(tokens)
        total = sum(weights.values())
        rows = {pid: self._rows.get(pid, -1) for pid in ids}
        return {pid: sum(w for t, w in weights.items() if rows[pid] in holders[t]) / total for pid in ids}

    @classmethod
    def stems(cls, text: str) -> list[str]:
        """The words of `text` BM25 searches with, as it stores them (stopwords dropped, Snowball stems)."""
        return cls.stems_of_each([text])[0]

    @classmethod
    def stems_of_each(cls, texts: list[str]) -> list[list[str]]:
        """`stems` of each of `texts`, in one pass."""
        return [[t for t in tokens if t] for tokens in cls._tokenize(texts, return_ids=False)] if texts else []

    def word_weights(self, query: str) -> dict[str, tuple[float, set[str]]]:
        """For each content word of `query` (its stem): its IDF in this index and the ids of the texts that
        hold it (none: a word the documents never use)."""
        tokens = set(self.stems(query))
        if not tokens:
            return {}
        weights, holders = self._weights_and_holders(tokens)
        return {t: (weights[t], {self.ids[row] for row in holders[t]}) for t in tokens}

    @cached_property
    def _rows(self) -> dict[str, int]:
        """Each id's row in the BM25 matrix."""
        return {pid: row for row, pid in enumerate(self.ids)}

    def _weights_and_holders(self, tokens: set[str]) -> tuple[dict[str, float], dict[str, set[int]]]:
        """Each token's IDF (bm25s' Lucene formula) and the rows of the texts that hold it."""
        import numpy as np

        scores = self.retriever.scores if self.retriever is not None else {"num_docs": 0, "indptr": [0]}
        n, indptr, indices = int(scores["num_docs"]), scores["indptr"], scores.get("indices", [])
        vocab = self.retriever.vocab_dict if self.retriever is not None else {}
        weights, holders = {}, {}
        for token in tokens:
            column = vocab.get(token)
            # bm25s keeps one column of the (texts x vocabulary) score matrix per token: its rows hold it.
            rows = indices[indptr[column]:indptr[column + 1]] if column is not None and column + 1 < len(indptr) else []
            holders[token] = {int(r) for r in rows}
            weights[token] = float(np.log(1 + (n - len(rows) + 0.5) / (len(rows) + 0.5)))
        return weights, holders

    def save(self, folder: Path) -> None:
        """Write the index to `folder` atomically (bm25s arrays + our ids)."""
        with atomic_dir(folder, overwrite=True) as tmp:  # bm25/ inside the index being written
            if self.retriever is not None:
                self.retriever.save(str(tmp), show_progress=False)
            atomic_write_json(tmp / "ids.json", self.ids)

    @classmethod
    def load(cls, folder: Path) -> SpanishBM25:
        import bm25s

        ids_file = folder / "ids.json"
        if not ids_file.is_file():
            raise AmautaError(f"{folder}: the BM25 index is missing; rerun `amauta rag index` to rebuild it")
        import json

        ids = json.loads(ids_file.read_text(encoding="utf-8"))
        retriever = bm25s.BM25.load(str(folder), show_progress=False) if ids else None
        return cls(retriever, ids)


def reciprocal_rank_fusion(rankings: Sequence[Sequence[str]], k: int = RRF_K) -> list[tuple[str, float]]:
    """Fuse ranked id lists: score(id) = sum over lists of 1 / (k + rank), rank starting at 1."""
    scores: dict[str, float] = {}
    for ranking in rankings:
        for rank, item in enumerate(ranking, start=1):
            scores[item] = scores.get(item, 0.0) + 1.0 / (k + rank)
    return sorted(scores.items(), key=lambda kv: (-kv[1], kv[0]))


@dataclass
class Hit:
    """One retrieved passage.

    id: the chunk's point id in the index.
    text: the passage.
    source: path of the document it came from (a user can open it).
    title: the document's title.
    page: page where the passage starts (1 for files without pages).
    article: "Art. 5" when the passage is a law article, else None.
    heading: the heading path above the passage.
    score: the fused score that ordered the hits.
    dense_score: cosine similarity to the question (the relevance test uses it).
    bm25_score: BM25 score (0 when no word matched).
    """

    id: str
    text: str
    source: str
    title: str = ""
    page: int = 1
    article: str | None = None
    heading: str = ""
    score: float = 0.0
    dense_score: float = 0.0
    bm25_score: float = 0.0
    extra: dict = field(default_factory=dict)

    def citation(self) -> str:
        """Where to look: 'ley.pdf, Art. 5, p. 3' (page only when the file has pages)."""
        parts = [self.source]
        if self.article:
            parts.append(self.article)
        if self.page and self.page > 1 or self.source.lower().endswith(".pdf"):
            parts.append(f"p. {self.page}")
        return ", ".join(parts)

    def to_dict(self) -> dict:
        return asdict(self)


class Retriever:
    """Search one opened index (see `amauta.rag.index.open_index`).

    index: an `Index` (its embedder, vector store and BM25).
    mode: "hybrid" (default), "dense" or "bm25".
    candidates: how many hits each method contributes before fusion.
    """

    def __init__(self, index: Any, mode: Mode = "hybrid", candidates: int = 30):
        if mode not in ("hybrid", "dense", "bm25"):
            raise AmautaError(f"unknown retrieval mode '{mode}'; choose hybrid, dense or bm25")
        self.index = index
        self.mode = mode
        self.candidates = candidates

    def search(self, question: str, top_k: int = 4, min_score: float | None = None) -> list[Hit]:
        """The `top_k` best passages for `question`, dropping those with a cosine under `min_score`."""
        question = question.strip()
        if not question:
            raise AmautaError("the question is empty; type a question")
        n = max(self.candidates, top_k)
        query_vector = self.index.embedder.query(question)
        dense = self.index.dense_search(query_vector, n) if self.mode != "bm25" else []
        lexical = self.index.bm25.search(question, n) if self.mode != "dense" else []
        if self.mode == "dense":
            fused = [(pid, s) for pid, s in dense]
        elif self.mode == "bm25":
            fused = lexical
        else:
            fused = reciprocal_rank_fusion([[pid for pid, _ in dense], [pid for pid, _ in lexical]])
        chosen = [pid for pid, _ in fused[: max(top_k * 3, top_k)]]
        records = self.index.fetch(chosen, query_vector)
        bm25_scores = dict(lexical)
        fused_scores = dict(fused)
        hits = []
        for pid in chosen:
            record = records.get(pid)
            if record is None:  # the stores disagree (an interrupted update); skip rather than fail
                continue
            payload, cosine = record
            if min_score is not None and cosine < min_score:
                continue
            hits.append(Hit(
                id=pid, text=payload.get("text", ""), source=payload.get("source", ""),
                title=payload.get("title", ""), page=int(payload.get("page") or 1), article=payload.get("article"),
                heading=payload.get("heading", ""), score=float(fused_scores[pid]), dense_score=float(cosine),
                bm25_score=float(bm25_scores.get(pid, 0.0)),
            ))
            if len(hits) == top_k:
                break
        return hits
