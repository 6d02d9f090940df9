"""`ServeConfig`: how `amauta serve` listens and what it allows.

Apart from the app (`serve/app.py`, which imports FastAPI) so that `amauta serve`'s options, derived from
it (core/cli_options.py), cost no FastAPI import when the CLI starts.
"""

from __future__ import annotations

from pydantic import Field

from amauta.core.config import StageConfig
from amauta.models.types import DType, Quantization


class ServeConfig(StageConfig):
    """How `amauta serve` listens and what it allows."""

    host: str = Field("127.0.0.1", description="Address to bind; anything but localhost needs --api-key or --insecure.")
    port: int = Field(8000, ge=0, le=65535, description="TCP port (0 = any free port).")
    api_key: str | None = Field(None, description="Bearer token every /v1 request (and a detailed /health) must "
                                "carry (default: $AMAUTA_SERVER_API_KEY, $AMAUTA_API_KEY, $OPENAI_API_KEY; "
                                "prefer the environment: a --api-key flag shows in `ps`).")
    insecure: bool = Field(False, description="Allow a non-local address without an API key.")
    max_tokens_limit: int = Field(2048, ge=1, description="Largest max_tokens a request may ask for.")
    max_body_bytes: int = Field(1_000_000, ge=1024, description="Largest request body, in bytes.")
    max_queue: int = Field(64, ge=1, description="Requests waiting or running per model before 503s.")
    rag: str | None = Field(None, description="RAG index name or folder: chat answers cite its documents.")
    rag_top_k: int = Field(4, ge=1, description="Passages given to the model per RAG answer.")
    dtype: DType = Field("auto", description="transformers backend: the weights' data type (auto: bf16 where "
                                             "supported).")
    quantization: Quantization = Field("none", description="transformers backend: 8bit or 4bit through "
                                                           "bitsandbytes (a CUDA GPU).")
