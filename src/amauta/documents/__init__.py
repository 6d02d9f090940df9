"""Documents: read PDF/HTML/Markdown/text (`ingest`) and cut them along legal structure (`chunk`).

One implementation shared by `amauta data build-qa` and `amauta rag index`.
"""

from amauta.documents.chunk import Chunk, article_label, chunk_document
from amauta.documents.ingest import SUFFIXES, Document, Page, iter_document_paths, load_document

__all__ = ["SUFFIXES", "Chunk", "Document", "Page", "article_label", "chunk_document", "iter_document_paths",
           "load_document"]
