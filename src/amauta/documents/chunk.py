"""Cut documents into chunks along their legal structure.

Ecuadorian laws and regulations are built from articles ("Art. 56.-", "Artículo 5.", "Art. 10 bis.-")
grouped under books, titles, chapters and sections. A chunk is one article when it fits in `max_chars`
(the unit a lawyer cites); a longer article is split at paragraph, then sentence, then word boundaries,
each part repeating the last `overlap` characters of the one before so no sentence loses its context.
Text outside articles (preambles, explanatory pages) is chunked the same way under its heading.

Every chunk carries its source file, the page where it starts, its article and the heading path, and an
id that is a hash of that content: the same text in the same file always gets the same id, so caches
(`data build-qa`) and indexes (`rag index`) can skip what they have already seen. Chunking is pure
Python regular expressions over lines: tens of thousands of pages per second, no model involved.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import asdict, dataclass
from pathlib import Path

from amauta.documents.ingest import Document

# "Art. 5.-", "ART. 5.", "Artículo 5", "Art. 10 bis.-", "Art. 10.1.-", also inside Markdown ("### Art. 5.-",
# "**Art. 5.-**"). The number must be followed by punctuation or the end of the line, so a sentence that
# merely starts with "Artículo 5 de la ley..." is not mistaken for a new article.
_SUFFIXES = r"bis|ter|qu[áa]ter|quinquies|sexies|septies|octies|nonies|decies"
ARTICLE_RE = re.compile(
    rf"^[\s#>*_]*(?:art[íi]culo|art\.?)\s*(?P<num>\d+(?:\.\d+)*)"
    rf"(?:[\s.\-–—]*(?P<suffix>{_SUFFIXES})\b)?"
    rf"\s*(?:[.\-–—:]+|\*\*|$)",
    re.IGNORECASE,
)
# Structural headings, from the largest unit to the smallest; the word must be followed by a numeral or
# an ordinal ("Capítulo II", "TÍTULO PRELIMINAR", "Sección primera") to count as a heading.
_ORDINALS = (r"[IVXLCDM]+|\d+|[úu]nic[oa]|preliminar|final|primer[oa]?|segund[oa]|tercer[oa]?|cuart[oa]|"
             r"quint[oa]|sext[oa]|s[ée]ptim[oa]|octav[oa]|noven[oa]|d[ée]cim[oa]")
LEGAL_HEADING_RE = re.compile(
    rf"^[\s#>*_]*(?P<kind>libro|t[íi]tulo|cap[íi]tulo|secci[óo]n|par[áa]grafo)\s+(?:{_ORDINALS})\b[^\n]{{0,160}}$",
    re.IGNORECASE,
)
_LEGAL_RANK = {"libro": 10, "titulo": 20, "capitulo": 30, "seccion": 40, "paragrafo": 50}
MARKDOWN_HEADING_RE = re.compile(r"^(#{1,6})\s+(.+?)\s*#*\s*$")


@dataclass(frozen=True)
class Chunk:
    """A piece of a document small enough for a prompt or an embedding.

    id: 16 hex characters, a hash of the file name, article, part and text (stable across runs).
    source: the document's path as given.
    page: the page where the chunk starts (1 for files without pages).
    article: "Art. 5", "Art. 10 bis", or None outside articles.
    heading: the heading path, e.g. "Ley de IVA > Capítulo II — Tarifas" ("" when there is none).
    text: the chunk's text (an article starts with its own "Art. N.-" line).
    title: the document's title.
    part: 1-based part number when an article was split (1 otherwise); parts: how many parts it has.
    index: position of the chunk in the document (0-based).
    """

    id: str
    source: str
    page: int
    article: str | None
    heading: str
    text: str
    title: str = ""
    part: int = 1
    parts: int = 1
    index: int = 0

    def citation(self) -> str:
        """A short human-readable reference: 'retenciones.pdf, p. 2, Art. 3 (parte 1/2)'."""
        where = [Path(self.source).name]
        if Path(self.source).suffix.lower() == ".pdf":
            where.append(f"p. {self.page}")
        if self.article:
            where.append(self.article + (f" (parte {self.part}/{self.parts})" if self.parts > 1 else ""))
        elif self.heading:
            where.append(self.heading.split(" > ")[-1])
        return ", ".join(where)

    def to_dict(self) -> dict:
        return asdict(self)


def article_label(line: str) -> str | None:
    """'Art. 10 bis' for a line that opens an article, else None."""
    match = ARTICLE_RE.match(line)
    if not match:
        return None
    suffix = match.group("suffix")
    return f"Art. {match.group('num')}" + (f" {suffix.lower()}" if suffix else "")


def _heading(line: str) -> tuple[int, str] | None:
    """(rank, text) when `line` is a heading: legal headings rank by unit, Markdown ones by level."""
    legal = LEGAL_HEADING_RE.match(line)
    text = _clean_heading(line)
    if legal:
        kind = legal.group("kind").lower().translate(str.maketrans("íóá", "ioa"))
        return _LEGAL_RANK[kind], text
    markdown = MARKDOWN_HEADING_RE.match(line.strip())
    if markdown:
        return len(markdown.group(1)), text
    return None


def _clean_heading(line: str) -> str:
    return re.sub(r"\s+", " ", line.strip().lstrip("#>").replace("**", "").replace("__", "")).strip(" *_#")


def _is_bare_legal_heading(text: str) -> bool:
    """'CAPÍTULO II' alone on its line; its name usually follows on the next line."""
    return bool(re.fullmatch(rf"\S+\s+(?:{_ORDINALS})[.:\-–— ]*", text, re.IGNORECASE))


def chunk_document(doc: Document, max_chars: int = 2000, overlap: int = 200) -> list[Chunk]:
    """Cut `doc` into chunks: one per article when it fits, otherwise overlapping parts."""
    if max_chars < 100:
        raise ValueError(f"max_chars must be at least 100, got {max_chars}")
    if not 0 <= overlap < max_chars // 2:
        raise ValueError(f"overlap must be between 0 and max_chars/2 ({max_chars // 2}), got {overlap}")
    lines = [(page.number, line) for page in doc.pages for line in page.text.split("\n")]
    segments = _segments(lines)
    chunks: list[Chunk] = []
    seen: dict[str, int] = {}
    name = Path(doc.path).name
    for article, heading, body in segments:
        parts = _split(body, max_chars, overlap)
        for part_no, (page, text) in enumerate(parts, start=1):
            key = f"{name}\x00{article}\x00{part_no}\x00{text}"
            digest = hashlib.sha256(key.encode("utf-8")).hexdigest()[:16]
            # The same text twice in one file (a repeated disclaimer) still needs two distinct ids.
            if digest in seen:
                seen[digest] += 1
                digest = hashlib.sha256(f"{key}\x00{seen[digest]}".encode()).hexdigest()[:16]
            seen.setdefault(digest, 0)
            chunks.append(Chunk(id=digest, source=str(doc.path), page=page, article=article, heading=heading,
                                text=text, title=doc.title, part=part_no, parts=len(parts), index=len(chunks)))
    return chunks


def _segments(lines: list[tuple[int, str]]) -> list[tuple[str | None, str, list[tuple[int, str]]]]:
    """Group lines into (article, heading path, lines): one group per article or per run of other text."""
    stack: list[tuple[int, str]] = []
    segments: list[tuple[str | None, str, list[tuple[int, str]]]] = []
    article: str | None = None
    body: list[tuple[int, str]] = []

    def flush() -> None:
        if any(text.strip() for _, text in body):
            segments.append((article, " > ".join(text for _, text in stack), list(body)))
        body.clear()

    i = 0
    while i < len(lines):
        page, line = lines[i]
        label = article_label(line) if line[:1] not in ("|",) else None
        heading = None if label else _heading(line)
        if label:
            flush()
            article = label
            body.append((page, line.strip()))
        elif heading:
            flush()
            article = None
            rank, text = heading
            if _is_bare_legal_heading(text):
                # "CAPÍTULO II" then "DE LAS TARIFAS": take the name from the next non-empty line.
                j = i + 1
                while j < len(lines) and not lines[j][1].strip():
                    j += 1
                if j < len(lines):
                    nxt = lines[j][1].strip()
                    # A name is short and is not a sentence: "DE LAS TARIFAS", "Disposiciones generales".
                    if (nxt and len(nxt) <= 100 and not article_label(nxt) and not _heading(nxt)
                            and not nxt.rstrip("*_").endswith((".", ";", ":", ",")) and any(c.isalpha() for c in nxt)):
                        text = f"{text} — {_clean_heading(nxt)}"
                        i = j
            while stack and stack[-1][0] >= rank:
                stack.pop()
            stack.append((rank, text))
        else:
            body.append((page, line.rstrip()))
        i += 1
    flush()
    return segments


def _split(body: list[tuple[int, str]], max_chars: int, overlap: int) -> list[tuple[int, str]]:
    """Split a segment's lines into parts of at most `max_chars` characters, with overlap."""
    paragraphs: list[tuple[int, str]] = []
    current: list[tuple[int, str]] = []
    for page, line in body + [(0, "")]:
        if line.strip():
            current.append((page, line))
        elif current:
            paragraphs.append((current[0][0], "\n".join(text for _, text in current)))
            current = []
    whole = "\n\n".join(text for _, text in paragraphs)
    if len(whole) <= max_chars:
        return [(paragraphs[0][0], whole)]

    budget = max_chars - overlap - 1  # room for the space that joins the repeated tail
    # Pieces no longer than the budget, each with the separator that joins it to the piece before.
    pieces: list[tuple[int, str, str]] = []
    for page, para in paragraphs:
        if len(para) <= budget:
            pieces.append((page, "\n\n", para))
            continue
        sep = "\n\n"
        for sentence in re.split(r"(?<=[.;:!?])\s+", para):
            for window in _windows(sentence, budget):
                pieces.append((page, sep, window))
                sep = " "

    parts: list[tuple[int, str]] = []
    page, text = pieces[0][0], pieces[0][2]
    for piece_page, sep, piece in pieces[1:]:
        if len(text) + len(sep) + len(piece) <= budget:
            text += sep + piece
        else:
            parts.append((page, text))
            page, text = piece_page, piece
    parts.append((page, text))

    if overlap:
        with_overlap = [parts[0]]
        for (_, previous), (page, text) in zip(parts, parts[1:], strict=False):
            tail = previous[-overlap:]
            # Start the repeated tail at a word boundary so it does not open with half a word.
            cut = tail.find(" ")
            tail = tail[cut + 1:] if 0 <= cut < len(tail) - 1 else tail
            with_overlap.append((page, f"{tail.strip()} {text}"))
        parts = with_overlap
    return parts


def _windows(text: str, size: int) -> list[str]:
    """Split `text` into windows of at most `size` characters at spaces (hard cuts only when unavoidable)."""
    out = []
    while len(text) > size:
        cut = text.rfind(" ", 0, size + 1)
        if cut <= size // 2:
            cut = size
        out.append(text[:cut].rstrip())
        text = text[cut:].lstrip()
    if text:
        out.append(text)
    return out
