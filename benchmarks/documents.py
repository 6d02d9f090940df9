"""Chunking benchmark: legal-structure chunking vs. a plain fixed-size splitter, on a synthetic law.

    .venv/bin/python benchmarks/documents.py [--articles 3000] [--max-chars 2000] [--overlap 200]

The law is generated here (our own template sentences, varied lengths, chapters and sections, a few
articles longer than a chunk). Both splitters get the same text and sizes; the table shows speed and
what matters for citations: how many chunks mix two articles, and how many articles stay whole.
Prints a table and one JSON line. Timings on a shared CPU are noisy; compare the two rows of one run.
"""

from __future__ import annotations

import argparse
import json
import random
import re
import time
from pathlib import Path

from amauta.documents import Document, Page, chunk_document

SENTENCES = [
    "El contribuyente presentará la declaración dentro del plazo que corresponda a su noveno dígito.",
    "La administración tributaria podrá solicitar la información que considere necesaria.",
    "Los valores retenidos constituyen crédito tributario para quien los soporta.",
    "Se exceptúan de esta disposición los bienes destinados exclusivamente a la exportación.",
    "El incumplimiento de esta obligación será sancionado conforme a las normas vigentes.",
    "Para efectos de este artículo, se entenderá por ingreso bruto la totalidad de lo facturado.",
]


def synthetic_law(articles: int, seed: int = 0) -> tuple[str, int, dict[str, str]]:
    """A law with `articles` articles under chapters and sections: its text, page count and article texts."""
    rng = random.Random(seed)
    lines = ["LEY ILUSTRATIVA DE RÉGIMEN TRIBUTARIO", ""]
    bodies: dict[str, str] = {}
    for n in range(1, articles + 1):
        if n % 40 == 1:
            lines += [f"CAPÍTULO {n // 40 + 1}", "DISPOSICIONES DEL CAPÍTULO", ""]
        if n % 10 == 1:
            lines += [f"Sección {n // 10 % 4 + 1}", ""]
        # Mostly short articles, a few that need splitting (longer than a 2000-character chunk).
        count = rng.choice([2, 3, 4, 5, 6]) if rng.random() > 0.03 else 40
        body = " ".join(rng.choice(SENTENCES) for _ in range(count))
        lines += [f"Art. {n}.- {body}", ""]
        bodies[str(n)] = f"Art. {n}.- {body}"
    return "\n".join(lines), max(1, articles // 4), bodies


def fixed_size(text: str, max_chars: int, overlap: int) -> list[str]:
    """The baseline: windows of `max_chars` characters cut at spaces, each overlapping the one before."""
    out, start = [], 0
    while start < len(text):
        end = min(len(text), start + max_chars)
        if end < len(text):
            space = text.rfind(" ", start + max_chars // 2, end)
            end = space if space > 0 else end
        out.append(text[start:end])
        if end >= len(text):
            break
        start = max(end - overlap, start + 1)
    return out


def articles_in(text: str) -> set[str]:
    return set(re.findall(r"(?m)^Art\. (\d+)\.-", text))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--articles", type=int, default=3000)
    parser.add_argument("--max-chars", type=int, default=2000)
    parser.add_argument("--overlap", type=int, default=200)
    args = parser.parse_args()

    text, pages, bodies = synthetic_law(args.articles)
    lines = text.split("\n")
    per_page = len(lines) // pages + 1
    doc = Document(path=Path("ley.txt"), title="Ley", sha256="0" * 64,
                   pages=[Page(i + 1, "\n".join(lines[i * per_page:(i + 1) * per_page])) for i in range(pages)])
    total_articles = len(bodies)

    def whole_articles(chunks: list[str]) -> int:
        """Articles whose complete text sits inside one chunk (what a citation needs)."""
        return len({n for c in chunks for n in articles_in(c) if bodies[n] in c})

    rows = []
    started = time.perf_counter()
    ours = chunk_document(doc, args.max_chars, args.overlap)
    seconds = time.perf_counter() - started
    whole = whole_articles([c.text for c in ours])
    mixed = sum(1 for c in ours if len(articles_in(c.text)) > 1)
    rows.append({"splitter": "amauta legal", "seconds": seconds, "chunks": len(ours), "mixed_chunks": mixed,
                 "whole_articles": whole})

    started = time.perf_counter()
    base = fixed_size(doc.text, args.max_chars, args.overlap)
    seconds = time.perf_counter() - started
    whole_base = whole_articles(base)
    rows.append({"splitter": "fixed-size baseline", "seconds": seconds, "chunks": len(base),
                 "mixed_chunks": sum(1 for c in base if len(articles_in(c)) > 1), "whole_articles": whole_base})

    mb = len(doc.text) / 1e6
    print(f"synthetic law: {total_articles} articles, {pages} pages, {mb:.2f} MB; max_chars {args.max_chars}, "
          f"overlap {args.overlap}")
    print(f"{'splitter':<22}{'seconds':>9}{'MB/s':>8}{'chunks':>8}{'mixed':>8}{'whole articles':>16}")
    for row in rows:
        row["mb_per_s"] = mb / row["seconds"] if row["seconds"] else float("inf")
        print(f"{row['splitter']:<22}{row['seconds']:>9.3f}{row['mb_per_s']:>8.1f}{row['chunks']:>8}"
              f"{row['mixed_chunks']:>8}{row['whole_articles']:>10}/{total_articles}")
    print(json.dumps({"benchmark": "documents.chunk", "articles": total_articles, "mb": round(mb, 3),
                      "rows": [{k: (round(v, 4) if isinstance(v, float) else v) for k, v in r.items()} for r in rows]}))


if __name__ == "__main__":
    main()
