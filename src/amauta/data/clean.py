"""Cleaning rules, applied in order; each counts what it removed, per source.

1. `normalize` (rewrites, never removes): Unicode NFC, line endings, invisible characters, runs of
   spaces, blank-line runs, surrounding whitespace.
2. `empty`: a user or assistant turn with no text.
3. `too_short`: an assistant reply shorter than `min_answer_chars`.
4. `exact_duplicate`: the same conversation (case-folded) already kept, from any source.
5. `too_long`: more than `max_tokens` tokens with the target model's tokenizer and template.
6. `language`: a paragraph (of 50+ characters) unlikely to be Spanish (lingua, restricted to a few
   candidate languages for speed); the thesis's machine-translated datasets keep English leftovers.
7. `near_duplicate`: MinHash LSH (datasketch) over word 3-grams finds candidates; a record is dropped when
   both its prompt and its reply are near-copies of a kept one's (so many questions on one passage survive).

The cheap rules run first so the costly ones see fewer records.
"""

from __future__ import annotations

import hashlib
import re
import time
import unicodedata
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from pydantic import Field

from amauta.core.config import StageConfig
from amauta.core.errors import AmautaError
from amauta.data.records import Record, record_id

RULES = ("empty", "too_short", "exact_duplicate", "too_long", "language", "near_duplicate")


class CleanConfig(StageConfig):
    """What `prepare` removes."""

    min_answer_chars: int = Field(
        2, ge=0, description="Drop records whose assistant reply has fewer characters (after normalizing).")
    max_tokens: int | None = Field(
        2048, gt=0, description="Drop conversations longer than this many tokens with the target template; "
                                "null keeps all.")
    exact_dedup: bool = Field(
        True, description="Drop exact duplicates (after normalizing and case-folding), across sources.")
    near_dedup_threshold: float | None = Field(
        0.9, gt=0, le=1, description="Jaccard similarity of word 3-grams (prompt and reply each) at which a "
                                     "record is a near-duplicate; null disables.")
    near_dedup_num_perm: int = Field(
        128, ge=16, description="MinHash permutations (more: a finer estimate, slower).")
    language: str | None = Field(
        "es", description="ISO 639-1 code the text must be in; null disables the language filter.")
    language_candidates: list[str] = Field(
        default_factory=lambda: ["es", "en", "pt", "fr", "it", "de"],
        description="Languages the detector chooses among (a short list is fast and enough to catch "
                    "leftovers).")
    language_min_chars: int = Field(
        50, ge=1, description="Paragraphs shorter than this are not checked (names and short answers fool "
                              "any detector).")
    language_fast: bool = Field(
        False, description="lingua's low-accuracy mode: loads in under a second instead of several, but "
                           "flags more short texts.")
    language_min_confidence: float = Field(
        0.2, ge=0, le=1, description="A paragraph whose confidence of being in `language` is below this "
                                     "removes its record.")


@dataclass
class CleanReport:
    """removed[(source, rule)] = count; seconds[rule] = time spent; examples[rule] = a few removed ids."""

    removed: Counter = field(default_factory=Counter)
    seconds: dict[str, float] = field(default_factory=dict)
    examples: dict[str, list[str]] = field(default_factory=dict)

    def by_rule(self) -> dict[str, int]:
        totals = Counter()
        for (_, rule), n in self.removed.items():
            totals[rule] += n
        return {rule: totals.get(rule, 0) for rule in RULES}


# ---------------------------------------------------------------------------------------------- normalize

_INVISIBLE = re.compile("[\u200b\u200c\u200d\u2060\ufeff\u00ad]|[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
_SPACES = re.compile(r"[ \t\u00a0\u2000-\u200a\u202f\u3000]+")
_BLANKS = re.compile(r"\n{3,}")


def normalize_text(text: str) -> str:
    """NFC, \\n line endings, no invisible/control characters, single spaces, at most one blank line."""
    text = unicodedata.normalize("NFC", text).replace("\r\n", "\n").replace("\r", "\n")
    text = _INVISIBLE.sub("", text)
    text = "\n".join(_SPACES.sub(" ", line).strip() for line in text.split("\n"))
    return _BLANKS.sub("\n\n", text).strip()


def normalize_record(record: Record) -> Record:
    """The record with normalized text and its id recomputed over the normalized content."""
    messages = [{"role": m["role"], "content": normalize_text(m["content"])} for m in record.messages]
    return Record(messages, record.source, record.category.strip(), id=record_id(record.source, messages), where=record.where)


# ---------------------------------------------------------------------------------------------- rules


def _language_detector(config: CleanConfig):
    from lingua import IsoCode639_1, LanguageDetectorBuilder

    codes = list(dict.fromkeys([config.language, *config.language_candidates]))
    isos = []
    for code in codes:
        try:
            isos.append(getattr(IsoCode639_1, code.upper()))
        except AttributeError:
            raise AmautaError(f"clean.language: unknown ISO 639-1 language code '{code}'") from None
    if len(isos) < 2:
        raise AmautaError("clean.language_candidates: give at least one language besides the kept one")
    builder = LanguageDetectorBuilder.from_iso_codes_639_1(*isos)
    return (builder.with_low_accuracy_mode() if config.language_fast else builder).build()


def _shingles(text: str) -> set[bytes]:
    words = re.findall(r"\w+", text.casefold())
    if len(words) < 3:
        return {" ".join(words).encode()} if words else set()
    return {" ".join(words[i: i + 3]).encode() for i in range(len(words) - 2)}


class Cleaner:
    """Runs the rules in order over a list of records (from all sources, in source order)."""

    def __init__(self, config: CleanConfig, token_lengths: Callable[[Sequence[Record]], list[int]] | None = None,
                 progress: Callable[[str, int], None] | None = None) -> None:
        """token_lengths: counts tokens of records with the target template (needed for `max_tokens`).
        progress: called as progress(rule, n_records) before each rule runs (for a progress display)."""
        self.config = config
        self.token_lengths = token_lengths
        self.progress = progress or (lambda rule, n: None)
        self.report = CleanReport()
        self.lengths: dict[str, int] = {}  # record id → tokens with the target template (for stats)

    def _drop(self, record: Record, rule: str) -> None:
        self.report.removed[(record.source, rule)] += 1
        examples = self.report.examples.setdefault(rule, [])
        if len(examples) < 5:
            examples.append(record.where or record.id)

    def _timed(self, rule: str, fn: Callable[[list[Record]], list[Record]], records: list[Record]) -> list[Record]:
        self.progress(rule, len(records))
        start = time.perf_counter()
        kept = fn(records)
        self.report.seconds[rule] = self.report.seconds.get(rule, 0.0) + time.perf_counter() - start
        return kept

    def run(self, records: list[Record]) -> list[Record]:
        """The records that pass every enabled rule, in their original order."""
        c = self.config
        records = self._timed("normalize", lambda rs: [normalize_record(r) for r in rs], records)
        records = self._timed("empty", self._empty, records)
        records = self._timed("too_short", self._too_short, records)
        if c.exact_dedup:
            records = self._timed("exact_duplicate", self._exact, records)
        if c.max_tokens is not None or self.token_lengths is not None:
            records = self._timed("too_long", self._too_long, records)
        if c.language:
            records = self._timed("language", self._language, records)
        if c.near_dedup_threshold is not None:
            records = self._timed("near_duplicate", self._near, records)
        return records

    def _empty(self, records: list[Record]) -> list[Record]:
        kept = []
        for r in records:
            if any(not m["content"] for m in r.messages if m["role"] in ("user", "assistant")):
                self._drop(r, "empty")
            else:
                kept.append(r)
        return kept

    def _too_short(self, records: list[Record]) -> list[Record]:
        kept = []
        for r in records:
            replies = [m["content"] for m in r.messages if m["role"] == "assistant"]
            if min(len(x) for x in replies) < self.config.min_answer_chars:
                self._drop(r, "too_short")
            else:
                kept.append(r)
        return kept

    def _exact(self, records: list[Record]) -> list[Record]:
        seen: set[str] = set()
        kept = []
        for r in records:
            key = hashlib.sha256("\x1e".join(f"{m['role']}\x1f{m['content'].casefold()}" for m in r.messages)
                                 .encode("utf-8")).hexdigest()
            if key in seen:
                self._drop(r, "exact_duplicate")
            else:
                seen.add(key)
                kept.append(r)
        return kept

    def _too_long(self, records: list[Record]) -> list[Record]:
        if self.token_lengths is None:
            raise AmautaError("clean.max_tokens needs the target model's tokenizer; set 'model' in the prepare config")
        lengths = self.token_lengths(records)
        kept = []
        for r, n in zip(records, lengths, strict=True):
            self.lengths[r.id] = n
            if self.config.max_tokens is not None and n > self.config.max_tokens:
                self._drop(r, "too_long")
            else:
                kept.append(r)
        return kept

    def _language(self, records: list[Record]) -> list[Record]:
        from lingua import IsoCode639_1, Language

        c = self.config
        detector = _language_detector(c)
        want = Language.from_iso_code_639_1(getattr(IsoCode639_1, c.language.upper()))
        # Judge each paragraph of each turn on its own: a leftover is often one English reply or passage
        # inside Spanish text, and paragraphs repeat across records (a SQuAD passage serves ~5 questions),
        # so each distinct paragraph is scored once.
        per_record = [[p[:500] for m in r.messages for p in m["content"].split("\n\n") if len(p) >= c.language_min_chars]
                      for r in records]
        unique = list(dict.fromkeys(p for ps in per_record for p in ps))
        scores = dict(zip(unique, detector.compute_language_confidence_in_parallel(unique, want), strict=True)) if unique else {}
        kept = []
        for r, paragraphs in zip(records, per_record, strict=True):
            if any(scores[p] < c.language_min_confidence for p in paragraphs):
                self._drop(r, "language")
            else:
                kept.append(r)
        return kept

    def _near(self, records: list[Record]) -> list[Record]:
        from datasketch import MinHash, MinHashLSH

        c = self.config
        # MinHash LSH over the prompts proposes candidates at a looser threshold (few misses); each is then
        # checked with the exact Jaccard of hashed 3-grams, prompt and reply apart. Indexing prompts, not
        # replies, keeps candidate lists short when thousands of records share one reply ("Sí.", "4").
        lsh = MinHashLSH(threshold=max(0.3, c.near_dedup_threshold - 0.2), num_perm=c.near_dedup_num_perm)
        prompt_sets = [_shingles(r.user_text()) for r in records]
        reply_sets = [_shingles(r.assistant_text()) for r in records]
        signatures = MinHash.bulk([list(p) for p in prompt_sets], num_perm=c.near_dedup_num_perm, seed=1)
        kept_sets: dict[int, tuple] = {}
        kept = []
        for i, (r, signature) in enumerate(zip(records, signatures, strict=True)):
            prompt, reply = _hashed(prompt_sets[i]), _hashed(reply_sets[i])
            duplicate = any(_jaccard(prompt, kept_sets[k][0]) >= c.near_dedup_threshold
                            and _jaccard(reply, kept_sets[k][1]) >= c.near_dedup_threshold for k in lsh.query(signature))
            if duplicate:
                self._drop(r, "near_duplicate")
                continue
            lsh.insert(i, signature)
            kept_sets[i] = (prompt, reply)
            kept.append(r)
        return kept


def _hashed(shingles: set[bytes]):
    """The 3-grams as a sorted array of CRC32 values (compact: 4 bytes each, kept for every kept record)."""
    import zlib

    import numpy as np  # here, not at the top: the CLI imports this module for a config and needs no numpy

    return np.unique(np.fromiter((zlib.crc32(s) for s in shingles), dtype=np.uint32, count=len(shingles)))


def _jaccard(a, b) -> float:
    import numpy as np

    if not len(a) and not len(b):
        return 1.0
    inter = len(np.intersect1d(a, b, assume_unique=True))
    return inter / (len(a) + len(b) - inter)
