"""Chunking along legal structure: articles whole, headings tracked, long articles split with overlap."""

from __future__ import annotations

from pathlib import Path

import pytest

from amauta.documents import Document, Page, article_label, chunk_document, load_document

REPO = Path(__file__).resolve().parents[2]


def doc(text: str, name: str = "ley.txt", pages: list[str] | None = None) -> Document:
    pages = pages or [text]
    return Document(path=Path(name), title="Ley", pages=[Page(i, t) for i, t in enumerate(pages, 1)], sha256="0" * 64)


@pytest.mark.parametrize("line, label", [
    ("Art. 5.- El impuesto...", "Art. 5"),
    ("ART. 56.- Tarifa cero.", "Art. 56"),
    ("Artículo 3.- Objeto.", "Art. 3"),
    ("Artículo 12. Sujetos pasivos", "Art. 12"),
    ("Articulo 7", "Art. 7"),
    ("Art. 10 bis.- Retenciones", "Art. 10 bis"),
    ("Art. 10-ter.- Otro", "Art. 10 ter"),
    ("Art. 10.1.- Numerado", "Art. 10.1"),
    ("**Art. 2.-** Quiénes", "Art. 2"),
    ("### Art. 4.- Plazos", "Art. 4"),
    ("Art. 9: definición", "Art. 9"),
    ("Artículo 5 de la ley dispone que...", None),
    ("El Art. 5.- dice", None),
    ("Artista invitado", None),
])
def test_article_headers(line, label):
    assert article_label(line) == label


def test_articles_stay_whole_under_their_heading_path():
    text = """TÍTULO PRIMERO
DEL IMPUESTO

CAPÍTULO I
DE LAS TARIFAS

Art. 1.- Primera regla.
Sigue la primera regla en otra línea.

Art. 2.- Segunda regla.

SECCIÓN 1
Disposiciones

Art. 2 bis.- Regla añadida.

CAPÍTULO II
DE LA DECLARACIÓN

Art. 3.- Tercera regla."""
    chunks = chunk_document(doc(text))
    assert [c.article for c in chunks] == ["Art. 1", "Art. 2", "Art. 2 bis", "Art. 3"]
    assert chunks[0].text == "Art. 1.- Primera regla.\nSigue la primera regla en otra línea."
    assert chunks[0].heading == "TÍTULO PRIMERO — DEL IMPUESTO > CAPÍTULO I — DE LAS TARIFAS"
    assert chunks[2].heading.endswith("CAPÍTULO I — DE LAS TARIFAS > SECCIÓN 1 — Disposiciones")
    # A new chapter closes the section of the one before.
    assert chunks[3].heading == "TÍTULO PRIMERO — DEL IMPUESTO > CAPÍTULO II — DE LA DECLARACIÓN"
    assert all(c.parts == 1 and c.source == "ley.txt" for c in chunks)


def test_a_sentence_after_a_bare_heading_is_body_text():
    chunks = chunk_document(doc("CAPÍTULO III\nEste capítulo trata de las multas.\n\nArt. 9.- Multas."))
    assert [(c.article, c.heading) for c in chunks] == [(None, "CAPÍTULO III"), ("Art. 9", "CAPÍTULO III")]
    assert chunks[0].text == "Este capítulo trata de las multas."


def test_markdown_headings_and_text_outside_articles():
    text = "# Guía\n\nIntroducción sin artículo.\n\n## Capítulo I — Tarifas\n\nArt. 1.- Uno.\n\n## Notas\n\nTexto final."
    chunks = chunk_document(doc(text, "guia.md"))
    assert [(c.article, c.heading, c.text) for c in chunks] == [
        (None, "Guía", "Introducción sin artículo."),
        ("Art. 1", "Guía > Capítulo I — Tarifas", "Art. 1.- Uno."),
        (None, "Guía > Notas", "Texto final."),
    ]


def test_long_article_is_split_with_overlap_and_keeps_its_label():
    sentences = [f"La oración número {i} explica una regla distinta del impuesto." for i in range(120)]
    text = "Art. 7.- Regla larga.\n\n" + "\n\n".join(" ".join(sentences[i:i + 6]) for i in range(0, 120, 6))
    chunks = chunk_document(doc(text), max_chars=600, overlap=120)
    assert len(chunks) > 5
    assert all(len(c.text) <= 600 for c in chunks)
    assert all(c.article == "Art. 7" and c.parts == len(chunks) for c in chunks)
    assert [c.part for c in chunks] == list(range(1, len(chunks) + 1))
    for before, after in zip(chunks, chunks[1:], strict=False):
        # Each part opens with the last words of the part before it.
        opening = after.text[:40]
        assert opening in before.text[-130:], (opening, before.text[-130:])
    joined = " ".join(c.text for c in chunks)
    assert all(s in joined for s in sentences)  # nothing lost


def test_giant_paragraph_without_punctuation_is_cut_at_spaces():
    text = "Art. 1.- " + " ".join(["palabra"] * 2000)
    chunks = chunk_document(doc(text), max_chars=500, overlap=50)
    assert all(len(c.text) <= 500 for c in chunks)
    assert all(not c.text.endswith("palab") for c in chunks)
    assert sum(c.text.count("palabra") for c in chunks) >= 2000


def test_ids_are_stable_and_distinct():
    text = "Aviso.\n\n# X\n\nAviso.\n\n# Y\n\nAviso.\n\nArt. 1.- Igual.\n\nArt. 2.- Otra."
    first = chunk_document(doc(text))
    again = chunk_document(doc(text))
    assert [c.id for c in first] == [c.id for c in again]
    assert len(first) == 5 and len({c.id for c in first}) == 5  # the repeated notice gets three ids
    changed = chunk_document(doc(text.replace("Otra.", "Otra cosa.")))
    assert [a.id == b.id for a, b in zip(first, changed, strict=True)] == [True, True, True, True, False]
    assert all(len(c.id) == 16 for c in first)


def test_pdf_chunks_know_their_page_and_citation():
    chunks = chunk_document(load_document(REPO / "examples" / "docs" / "retenciones.pdf"))
    by_article = {c.article: c for c in chunks}
    assert (by_article["Art. 3"].page, by_article["Art. 4"].page, by_article["Art. 6"].page) == (1, 2, 3)
    assert by_article["Art. 4"].heading == "CAPÍTULO II — DE LOS PORCENTAJES"
    assert by_article["Art. 4"].citation() == "retenciones.pdf, p. 2, Art. 4"


def test_article_spanning_pages_starts_on_its_first_page():
    chunks = chunk_document(doc("", pages=["Art. 1.- Empieza aquí", "y termina aquí.\n\nArt. 2.- Otro."]))
    assert [(c.article, c.page) for c in chunks] == [("Art. 1", 1), ("Art. 2", 2)]
    assert "termina aquí" in chunks[0].text


def test_sample_corpus_has_the_promised_articles():
    from amauta.documents import iter_document_paths

    chunks = [c for p in iter_document_paths([REPO / "examples" / "docs"]) for c in chunk_document(load_document(p))]
    articles = [c for c in chunks if c.article]
    assert 12 <= len(articles) <= 30
    assert all(c.parts == 1 for c in articles)  # every sample article fits whole


def test_bad_sizes_are_refused():
    with pytest.raises(ValueError, match="overlap"):
        chunk_document(doc("Art. 1.- x"), max_chars=400, overlap=300)
    with pytest.raises(ValueError, match="max_chars"):
        chunk_document(doc("Art. 1.- x"), max_chars=10)
