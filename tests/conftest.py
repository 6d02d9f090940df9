"""Shared fixtures: tiny random models (fast, every architecture), the embedded SmolLM2, shared data."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

# Two cores: keep torch from oversubscribing them when pytest runs alongside other work; with pytest-xdist's
# two workers (`make test`), one thread each.
os.environ.setdefault("OMP_NUM_THREADS", "1" if os.environ.get("PYTEST_XDIST_WORKER") else "2")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"
EXAMPLE_DOCS = REPO / "examples" / "docs"


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """`../shared/data` beside the checkout; tests that need it skip cleanly where it is absent."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"real data folder {SHARED_DATA} is absent (a fresh clone has no ../shared)")
    return SHARED_DATA


@pytest.fixture(scope="session")
def tiny():
    """A factory: `tiny("llama")` → a LoadedModel with random weights (llama, mistral, falcon, gemma3)."""
    from amauta.models.load import load_model

    cache = {}

    def make(arch: str = "llama"):
        if arch not in cache:
            cache[arch] = load_model(f"tiny-{arch}")
        return cache[arch]

    return make


@pytest.fixture(scope="session")
def smollm2():
    """The embedded SmolLM2-135M-Instruct (converted once to a cached folder, then loads in ~1 s)."""
    from amauta.models.load import load_model

    return load_model("smollm2-135m-instruct", dtype="float32")


@pytest.fixture(scope="session")
def law_index(tmp_path_factory):
    """An index of examples/docs (Spanish tax-law guides) built once per session with the default embedder."""
    from amauta.rag.index import IndexConfig, build

    if not EXAMPLE_DOCS.is_dir():
        pytest.skip(f"{EXAMPLE_DOCS} is absent")
    folder = tmp_path_factory.mktemp("rag") / "law-index"
    build(IndexConfig(docs=[str(EXAMPLE_DOCS)], index=str(folder)), progress=False)
    return folder
