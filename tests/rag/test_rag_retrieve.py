"""Spanish BM25, reciprocal rank fusion, citations parsing: the pure parts of retrieval."""

from __future__ import annotations

import pytest

from amauta.rag.answer import cited_numbers, format_passages
from amauta.rag.retrieve import Hit, SpanishBM25, reciprocal_rank_fusion, spanish_stopwords

TEXTS = [
    "La declaración del impuesto a la renta se presenta una vez al año.",
    "El IVA grava la venta de bienes y la prestación de servicios.",
    "Art. 5.- Los contribuyentes del RIMPE pagan una cuota fija.",
]


def test_bm25_stems_spanish_and_ignores_stopwords():
    bm25 = SpanishBM25.build(TEXTS, ["renta", "iva", "rimpe"])
    # "declarar" and "declaración" share the Snowball stem; "impuestos" matches "impuesto".
    assert bm25.search("¿Cuándo debo declarar mis impuestos?", 3)[0][0] == "renta"
    assert bm25.search("servicios gravados", 3)[0][0] == "iva"
    # Accents omitted by the user still match, and an article number is a searchable word.
    assert bm25.search("articulo 5 cuota", 3)[0][0] == "rimpe"
    # Only stopwords and question words: nothing to match, no hits (rather than arbitrary ones).
    assert bm25.search("¿Qué es lo que hay de la?", 3) == []
    assert "cual" in spanish_stopwords() and "cuál" in spanish_stopwords()


def test_bm25_save_load_round_trip(tmp_path):
    bm25 = SpanishBM25.build(TEXTS, ["a", "b", "c"])
    bm25.save(tmp_path / "bm25")
    again = SpanishBM25.load(tmp_path / "bm25")
    assert again.search("cuota fija", 2) == bm25.search("cuota fija", 2)
    empty = SpanishBM25.build([], [])
    empty.save(tmp_path / "empty")
    assert SpanishBM25.load(tmp_path / "empty").search("iva", 3) == []


def test_reciprocal_rank_fusion_rewards_agreement():
    fused = reciprocal_rank_fusion([["a", "b", "c"], ["b", "c", "a"]], k=60)
    assert [item for item, _ in fused] == ["b", "a", "c"]
    assert fused[0][1] == pytest.approx(1 / 62 + 1 / 61)
    # An item found by one method only still ranks, below one found by both.
    fused = reciprocal_rank_fusion([["x", "y"], ["y"]])
    assert [item for item, _ in fused] == ["y", "x"]


def test_cited_numbers_and_prompt_passages():
    assert cited_numbers("Es 15% [2]. Ver [1, 3] y [2][9].", count=3) == [2, 1, 3]
    assert cited_numbers("sin citas", count=3) == []
    hits = [Hit(id="1", text="palabra " * 500, source="/d/ley.pdf", article="Art. 7", page=3),
            Hit(id="2", text="texto corto", source="/d/guia.md")]
    block = format_passages(hits, max_chars=1000)
    assert block.startswith("[1] (ley.pdf, Art. 7, página 3)")
    assert "[2] (guia.md)\ntexto corto" in block
    assert len(block) < 1200  # the long passage was cut to fit
    assert hits[0].citation() == "/d/ley.pdf, Art. 7, p. 3"
