"""Read documents (PDF, HTML, Markdown, plain text) into pages of text.

One reader for every stage that consumes documents: `amauta data build-qa` and `amauta rag index`.
PDF pages keep their numbers so answers can cite them; HTML goes through trafilatura (boilerplate
removed, headings kept as Markdown) with a plain tag-stripper as fallback; Markdown and text are read
as they are. Problems a person can fix (a scanned PDF, a password, a wrong file type) raise
`AmautaError` with one line naming the file and the fix.
"""

from __future__ import annotations

import hashlib
import html
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from html.parser import HTMLParser
from pathlib import Path

from amauta.core.errors import AmautaError

PDF_SUFFIXES = (".pdf",)
HTML_SUFFIXES = (".html", ".htm", ".xhtml")
TEXT_SUFFIXES = (".md", ".markdown", ".txt", ".text")
SUFFIXES = PDF_SUFFIXES + HTML_SUFFIXES + TEXT_SUFFIXES


@dataclass(frozen=True)
class Page:
    """One page of text.

    number: 1-based page number (PDFs); Markdown, HTML and text files are a single page 1.
    text: the page's text, lines separated by "\\n".
    """

    number: int
    text: str


@dataclass
class Document:
    """A document read from disk.

    path: the file it came from.
    title: the PDF title, HTML <title>, first Markdown heading, or the file name.
    pages: the pages in order.
    sha256: hash of the file's bytes (caches and manifests key on it).
    kind: "pdf", "html", "markdown" or "text".
    """

    path: Path
    title: str
    pages: list[Page]
    sha256: str
    kind: str = "text"
    metadata: dict = field(default_factory=dict)

    @property
    def text(self) -> str:
        """All pages joined by blank lines."""
        return "\n\n".join(page.text for page in self.pages)


def iter_document_paths(paths: Iterable[str | Path]) -> Iterator[Path]:
    """Expand files and folders (recursively, sorted) into the supported document files.

    A missing path or a file with an unsupported suffix is an error; inside folders, unsupported files
    and hidden files are skipped so a folder of mixed material can be passed as is.
    """
    seen: set[Path] = set()
    for item in paths:
        path = Path(item)
        if path.is_dir():
            found = sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in SUFFIXES
                           and not any(part.startswith(".") for part in p.relative_to(path).parts))
            if not found:
                raise AmautaError(f"{path}: no documents found (looked for {', '.join(SUFFIXES)})")
        elif path.is_file():
            if path.suffix.lower() not in SUFFIXES:
                raise AmautaError(f"{path}: unsupported document type '{path.suffix or '(none)'}'; "
                                  f"use one of {', '.join(SUFFIXES)}")
            found = [path]
        else:
            raise AmautaError(f"{path}: no such file or folder")
        for p in found:
            if p.resolve() not in seen:
                seen.add(p.resolve())
                yield p


def load_document(path: str | Path) -> Document:
    """Read one document; the reader is chosen by the file suffix."""
    path = Path(path)
    if not path.is_file():
        raise AmautaError(f"{path}: file not found")
    data = path.read_bytes()
    digest = hashlib.sha256(data).hexdigest()
    suffix = path.suffix.lower()
    if suffix in PDF_SUFFIXES:
        title, pages, meta = _read_pdf(path)
        kind = "pdf"
    elif suffix in HTML_SUFFIXES:
        title, text = _read_html(path, _decode(path, data))
        pages, meta, kind = [Page(1, text)], {}, "html"
    elif suffix in TEXT_SUFFIXES:
        text = _normalize(_decode(path, data))
        heading = re.search(r"^#{1,6}\s+(.+?)\s*#*\s*$", text, re.M)
        title = heading.group(1).strip() if heading else path.stem
        pages, meta = [Page(1, text)], {}
        kind = "markdown" if suffix in (".md", ".markdown") else "text"
    else:
        raise AmautaError(f"{path}: unsupported document type '{path.suffix or '(none)'}'; use one of {', '.join(SUFFIXES)}")
    if not any(page.text.strip() for page in pages):
        raise AmautaError(f"{path}: the document has no text; check that it is the right file")
    return Document(path=path, title=title, pages=pages, sha256=digest, kind=kind, metadata=meta)


def _decode(path: Path, data: bytes) -> str:
    """UTF-8 (BOM or not); Windows-1252 as fallback, since many Spanish documents are exported that way."""
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        try:
            return data.decode("cp1252")
        except UnicodeDecodeError:
            raise AmautaError(f"{path}: byte {exc.start} is neither UTF-8 nor Windows-1252; "
                              "re-save the file as UTF-8") from None


def _normalize(text: str) -> str:
    """Unify line endings, drop NULs and trailing spaces, and collapse runs of blank lines."""
    import unicodedata

    text = unicodedata.normalize("NFC", text.replace("\r\n", "\n").replace("\r", "\n").replace("\x00", ""))
    text = re.sub(r"[ \t\u00a0]+\n", "\n", text)
    return re.sub(r"\n{3,}", "\n\n", text).strip()


def _read_pdf(path: Path) -> tuple[str, list[Page], dict]:
    from pypdf import PdfReader
    from pypdf.errors import DependencyError, FileNotDecryptedError, PdfReadError

    try:
        reader = PdfReader(str(path))
    except (PdfReadError, OSError, ValueError) as exc:
        raise AmautaError(f"{path}: not a readable PDF ({exc}); check that the file is complete") from None
    if reader.is_encrypted:
        # An owner password alone (printing/copy restrictions) still opens with an empty user password.
        try:
            opened = reader.decrypt("")
        except (DependencyError, NotImplementedError, FileNotDecryptedError):
            opened = 0
        if not opened:
            raise AmautaError(f"{path}: the PDF is encrypted with a password; save a decrypted copy first "
                              "(e.g. `qpdf --decrypt --password=PASSWORD in.pdf out.pdf`)")
    pages = []
    try:
        for number, page in enumerate(reader.pages, start=1):
            # Justified PDF text extracts with runs of spaces between words; one space reads the same.
            text = re.sub(r"(?<=\S) {2,}(?=\S)", " ", page.extract_text() or "")
            pages.append(Page(number, _strip_page_numbers(_normalize(text))))
    except (PdfReadError, FileNotDecryptedError, ValueError, KeyError) as exc:
        raise AmautaError(f"{path}: page {len(pages) + 1} cannot be read ({exc}); try re-saving the PDF") from None
    if not pages:
        raise AmautaError(f"{path}: the PDF has no pages")
    if not any(page.text.strip() for page in pages):
        raise AmautaError(f"{path}: the PDF has no text layer (a scanned image?); run OCR first, "
                          "e.g. `ocrmypdf -l spa in.pdf out.pdf`")
    meta = {}
    try:
        info = reader.metadata
        title = str(info.title).strip() if info and info.title else ""
    except Exception:  # malformed metadata must not stop the text from being read
        title = ""
    meta["pages"] = len(pages)
    return title or path.stem, pages, meta


_PAGE_NUMBER_RE = re.compile(r"^\W*(?:p[áa]g(?:ina)?\.?\s*)?\d{1,4}(?:\s*(?:de|/)\s*\d{1,4})?\W*$", re.I)


def _strip_page_numbers(text: str) -> str:
    """Drop a page-number header or footer ("Página 3", "- 3 -", "3 de 10") so it does not end an article."""
    lines = text.split("\n")
    if lines and _PAGE_NUMBER_RE.match(lines[-1].strip()):
        lines.pop()
    if lines and _PAGE_NUMBER_RE.match(lines[0].strip()):
        lines.pop(0)
    return "\n".join(lines).strip()


def _read_html(path: Path, source: str) -> tuple[str, str]:
    """Main text of a page as Markdown-ish text (headings kept for chunking), and its title."""
    title_match = re.search(r"<title[^>]*>(.*?)</title>", source, re.I | re.S)
    title = html.unescape(title_match.group(1)).strip() if title_match else ""
    plain = _html_to_text(source)
    text = ""
    try:
        import trafilatura

        text = trafilatura.extract(source, output_format="markdown", include_tables=True,
                                   include_comments=False, favor_recall=True) or ""
    except Exception:  # trafilatura gives up on some odd markup; the plain stripper below still works
        text = ""
    if len(text.strip()) < 0.3 * len(plain):
        # trafilatura keeps only what it thinks is the main article; on short legal pages it can drop
        # most of the body, so fall back to all visible text when it kept too little.
        text = plain
    text = _normalize(text)
    return title or path.stem, text


class _TextExtractor(HTMLParser):
    """Visible text of an HTML page: block tags become line breaks, headings become Markdown headings."""

    BLOCKS = {"p", "div", "br", "li", "tr", "section", "article", "table", "ul", "ol", "blockquote", "pre"}
    SKIP = {"script", "style", "noscript", "template", "head"}

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self.skip_depth = 0

    def handle_starttag(self, tag, attrs):
        if tag in self.SKIP:
            self.skip_depth += 1
        elif re.fullmatch(r"h[1-6]", tag):
            self.parts.append("\n\n" + "#" * int(tag[1]) + " ")
        elif tag in self.BLOCKS:
            self.parts.append("\n")
        elif tag in ("td", "th"):
            self.parts.append(" | ")

    def handle_endtag(self, tag):
        if tag in self.SKIP:
            self.skip_depth = max(0, self.skip_depth - 1)
        elif re.fullmatch(r"h[1-6]", tag) or tag in self.BLOCKS:
            self.parts.append("\n")

    def handle_data(self, data):
        if not self.skip_depth:
            self.parts.append(re.sub(r"\s+", " ", data))


def _html_to_text(source: str) -> str:
    parser = _TextExtractor()
    parser.feed(source)
    parser.close()
    lines = (line.strip() for line in "".join(parser.parts).split("\n"))
    return re.sub(r"\n{3,}", "\n\n", "\n".join(lines)).strip()
