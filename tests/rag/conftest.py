"""Fixtures of the RAG tests: a private AMAUTA_HOME and a copy of the example law documents (the index of
them, `law_index`, lives in tests/conftest.py: the chat and serve tests use it too)."""

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
