"""Fixtures of the RAG tests: a private AMAUTA_HOME, a copy of the example law documents, an index of them."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "docs"


@pytest.fixture()
def home(tmp_path, monkeypatch) -> Path:
    """An empty AMAUTA_HOME so named indexes land in the test's own folder."""
    root = tmp_path / "home"
    monkeypatch.setenv("AMAUTA_HOME", str(root))
    return root


@pytest.fixture()
def docs(tmp_path) -> Path:
    """A writable copy of examples/docs (Spanish tax-law guides: Markdown, HTML and a PDF)."""
    if not EXAMPLES.is_dir():
        pytest.skip(f"{EXAMPLES} is absent")
    folder = tmp_path / "docs"
    shutil.copytree(EXAMPLES, folder)
    return folder


@pytest.fixture(scope="session")
def law_index(tmp_path_factory):
    """An index of examples/docs built once per session with the default embedder (a folder path)."""
    from amauta.rag.index import IndexConfig, build

    if not EXAMPLES.is_dir():
        pytest.skip(f"{EXAMPLES} is absent")
    folder = tmp_path_factory.mktemp("rag") / "law-index"
    build(IndexConfig(docs=[str(EXAMPLES)], index=str(folder)), progress=False)
    return folder
