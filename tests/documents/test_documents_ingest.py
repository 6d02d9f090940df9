"""Reading documents: the shipped samples, and the PDF/HTML/text inputs a person can get wrong."""

from __future__ import annotations

from pathlib import Path

import pytest

from amauta.core.errors import AmautaError
from amauta.documents import iter_document_paths, load_document
from amauta.documents.ingest import _html_to_text

REPO = Path(__file__).resolve().parents[2]
DOCS = REPO / "examples" / "docs"


def test_sample_documents_load_with_titles_and_pages():
    paths = list(iter_document_paths([DOCS]))
    assert [p.name for p in paths] == ["iva.md", "renta.md", "retenciones.pdf", "rimpe.md", "ruc.html"]
    pdf = load_document(DOCS / "retenciones.pdf")
    assert pdf.kind == "pdf" and [p.number for p in pdf.pages] == [1, 2, 3]
    assert pdf.title == "Guía ilustrativa de las retenciones en la fuente"
    assert "Art. 5.- Retención del IVA" in pdf.pages[1].text and "Art. 5" not in pdf.pages[0].text
    assert "Página" not in pdf.text  # page-number footers are dropped
    assert "  " not in pdf.text  # justified spacing collapsed
    html = load_document(DOCS / "ruc.html")
    assert html.title == "Guía ilustrativa del RUC"
    assert "Art. 2.-" in html.text and "inscripción debe hacerse" in html.text
    assert "body {" not in html.text and "no pertenece al SRI" not in html.text  # no styles, no footer
    md = load_document(DOCS / "iva.md")
    assert md.title.startswith("Guía ilustrativa del Impuesto al Valor Agregado")
    assert len(md.sha256) == 64 and md.pages[0].number == 1


def test_every_sample_is_marked_illustrative():
    for path in iter_document_paths([DOCS]):
        assert "no es asesoría legal" in load_document(path).text.lower(), path


def _image_only_pdf(path: Path) -> Path:
    from fpdf import FPDF

    pdf = FPDF()
    pdf.add_page()
    pdf.set_fill_color(120, 120, 120)
    pdf.rect(20, 20, 100, 60, style="F")  # a "scan": marks on the page, no text layer
    pdf.output(str(path))
    return path


def _text_pdf(path: Path, text: str = "Art. 1.- Texto de prueba.") -> Path:
    from fpdf import FPDF

    pdf = FPDF()
    pdf.add_page()
    pdf.set_font("Helvetica", size=12)
    pdf.cell(0, 10, text)
    pdf.output(str(path))
    return path


def test_pdf_without_text_layer_suggests_ocr(tmp_path):
    path = _image_only_pdf(tmp_path / "escaneado.pdf")
    with pytest.raises(AmautaError, match=r"escaneado\.pdf: the PDF has no text layer.*OCR.*ocrmypdf") as err:
        load_document(path)
    assert "\n" not in str(err.value)


def test_encrypted_pdf_is_one_line_error_and_owner_only_pdf_opens(tmp_path):
    from pypdf import PdfReader, PdfWriter

    plain = _text_pdf(tmp_path / "plain.pdf")
    for user_password, name in (("secreto", "cifrado.pdf"), ("", "solo_propietario.pdf")):
        writer = PdfWriter()
        writer.append(PdfReader(str(plain)))
        writer.encrypt(user_password=user_password, owner_password="dueño", algorithm="RC4-128")
        with open(tmp_path / name, "wb") as handle:
            writer.write(handle)
    with pytest.raises(AmautaError, match=r"cifrado\.pdf: the PDF is encrypted.*qpdf --decrypt") as err:
        load_document(tmp_path / "cifrado.pdf")
    assert "\n" not in str(err.value)
    assert "Texto de prueba" in load_document(tmp_path / "solo_propietario.pdf").text


def test_truncated_pdf_is_a_clear_error(tmp_path):
    data = _text_pdf(tmp_path / "ok.pdf").read_bytes()
    broken = tmp_path / "cortado.pdf"
    broken.write_bytes(data[: len(data) // 3])
    with pytest.raises(AmautaError, match=r"cortado\.pdf: "):
        load_document(broken)


def test_bad_paths_and_types(tmp_path):
    (tmp_path / "notas.docx").write_bytes(b"PK")
    with pytest.raises(AmautaError, match=r"notas\.docx: unsupported document type '\.docx'"):
        list(iter_document_paths([tmp_path / "notas.docx"]))
    with pytest.raises(AmautaError, match="no such file or folder"):
        list(iter_document_paths([tmp_path / "falta.md"]))
    with pytest.raises(AmautaError, match="no documents found"):
        list(iter_document_paths([tmp_path]))
    (tmp_path / "vacio.md").write_text("  \n\n", encoding="utf-8")
    with pytest.raises(AmautaError, match=r"vacio\.md: the document has no text"):
        load_document(tmp_path / "vacio.md")


def test_folders_skip_hidden_and_unsupported_files(tmp_path):
    (tmp_path / "b.md").write_text("# B\ntexto", encoding="utf-8")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "a.txt").write_text("texto", encoding="utf-8")
    (tmp_path / ".oculto.md").write_text("x", encoding="utf-8")
    (tmp_path / "imagen.png").write_bytes(b"\x89PNG")
    found = [p.relative_to(tmp_path).as_posix() for p in iter_document_paths([tmp_path, tmp_path / "b.md"])]
    assert found == ["b.md", "sub/a.txt"]  # sorted, each once


def test_windows_1252_and_bom_text_is_decoded(tmp_path):
    (tmp_path / "ansi.txt").write_bytes("Art. 1.- La declaración del año.\r\n".encode("cp1252"))
    (tmp_path / "bom.md").write_bytes("\ufeff# Título\nAño".encode())
    assert load_document(tmp_path / "ansi.txt").text == "Art. 1.- La declaración del año."
    doc = load_document(tmp_path / "bom.md")
    assert doc.title == "Título" and doc.text.startswith("# Título")


def test_plain_html_fallback_keeps_headings_and_drops_scripts():
    text = _html_to_text("<html><head><title>t</title><script>var x=1;</script></head><body><h2>Capítulo I</h2>"
                         "<p>Art. 1.- Uno.</p><ul><li>a</li><li>b</li></ul><style>p{}</style></body></html>")
    assert text.startswith("## Capítulo I")
    assert "var x" not in text and "p{}" not in text and "Art. 1.- Uno." in text
