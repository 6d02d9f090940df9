"""Fixtures of the serve tests: a tiny model behind the transformers backend, and a server factory."""

from __future__ import annotations

import contextlib
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "docs"


class RecordingBackend:
    """Wraps a backend and keeps every run it started, so tests can see how each one ended."""

    def __init__(self, inner):
        self.inner, self.runs = inner, []
        self.name = inner.name

    def __getattr__(self, attr):
        return getattr(self.inner, attr)

    def start(self, model_id, prompt_or_messages, settings, stop_event):
        run = self.inner.start(model_id, prompt_or_messages, settings, stop_event)
        self.runs.append(run)
        return run


@pytest.fixture(scope="session")
def tiny_backend(tiny):
    from amauta.serve.backends import TransformersBackend

    return RecordingBackend(TransformersBackend({"tiny-llama": tiny("llama")}))


@pytest.fixture()
def serve():
    """A factory: `serve(backend, rag=None, **config)` → base URL of a uvicorn server on a free local port."""
    from amauta.serve.app import ServeConfig, create_app
    from amauta.serve.server import BackgroundServer

    with contextlib.ExitStack() as stack:
        def start(backend, rag=None, **config):
            return stack.enter_context(BackgroundServer(create_app(backend, ServeConfig(**config), rag)))

        yield start


@pytest.fixture(scope="session")
def serve_law_index(tmp_path_factory) -> Path:
    """An index of examples/docs (default embedder), built once per session."""
    from amauta.rag.index import IndexConfig, build

    if not EXAMPLES.is_dir():
        pytest.skip(f"{EXAMPLES} is absent")
    folder = tmp_path_factory.mktemp("serve-rag") / "leyes"
    build(IndexConfig(docs=[str(EXAMPLES)], index=str(folder)), progress=False)
    return folder
