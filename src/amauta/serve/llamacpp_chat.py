"""`amauta chat --backend llamacpp [--adapter RUN]`: the terminal chat on a GGUF through llama.cpp.

The chat room cannot import the llama.cpp engine (it lives here, beside the adapter conversion it needs from
the train room), so `amauta.serve.commands.register` lends `llamacpp_chat_session` to `amauta chat` through
`amauta.chat.commands.CHAT_BACKENDS`. The session is `ChatSession` with its two engine hooks (how many tokens
a prompt has, and a run) answered by `LlamaCppBackend`: history trimming, /commands and saving stay the same.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from amauta.chat.session import ChatSession
from amauta.core.errors import AmautaError
from amauta.serve.backends import LlamaCppBackend


@dataclass
class EngineModel:
    """What the chat shows of a model it does not hold itself (a `LoadedModel`'s profile, source, extra)."""

    profile: Any
    source: str
    extra: dict[str, Any] = field(default_factory=dict)


class LlamaCppChatSession(ChatSession):
    """A `ChatSession` answered by `backend` for `model_id` (a base GGUF or an adapter on it)."""

    def __init__(self, backend: LlamaCppBackend, model_id: str, settings: Any = None, system: str | None = None,
                 rag: Any = None, adapter: str | None = None):
        self.backend, self.model_id = backend, model_id
        entry = backend.entries[backend.base_of(model_id)]
        context = entry.llama.n_ctx()
        # A GGUF without a registry profile: its own chat template, no system prompt, llama.cpp's decoding.
        profile = entry.profile or SimpleNamespace(name=backend.base_of(model_id), context_length=context,
                                                   system_prompt="", generation=None)
        view = EngineModel(profile, entry.llama.model_path, {"adapter": adapter, "backend": backend.name})
        super().__init__(view, settings or backend.settings(model_id), system=system, rag=rag,
                         context_length=context)

    @property
    def passage_fitting_model(self) -> Any:
        return None  # as `amauta serve --backend llamacpp --rag`: passages keep the index's length limit

    def _prompt_tokens(self, messages: list[dict[str, str]]) -> int:
        entry = self.backend.entries[self.backend.base_of(self.model_id)]
        return len(entry.llama.tokenize(entry.render(messages).encode("utf-8"), add_bos=True, special=True))

    def _start(self, messages: list[dict[str, str]], stop_event: threading.Event | None) -> Iterator[str]:
        return self.backend.start(self.model_id, messages, self.settings, stop_event)


def adapter_name(adapter: Path) -> str:
    """The model id an adapter gets in the chat: its run's name (`runs/sri/adapter` → sri), a GGUF LoRA's stem."""
    adapter = Path(adapter)
    if adapter.suffix.lower() == ".gguf":
        return adapter.stem
    return adapter.parent.name if adapter.name == "adapter" else adapter.name


def llamacpp_chat_session(model: str, adapter: Path | None, *, system: str | None, template: str | None,
                          threads: int | None, decoding: dict[str, Any], rag: Any = None) -> ChatSession:
    """`amauta chat --backend llamacpp`: load the GGUF (and the adapter, checked and converted once) and
    return the session."""
    adapters = {}
    if adapter is not None:
        name = adapter_name(adapter)
        adapters[name if name != model else f"{name}-lora"] = adapter
    backend = LlamaCppBackend([model], adapters=adapters, threads=threads, template=template)
    model_id = next(iter(adapters), None) or next(iter(backend.entries))
    settings = backend.settings(model_id, **decoding)
    if settings.strategy not in ("greedy", "sampling"):
        raise AmautaError(f"--strategy {settings.strategy} is not available with --backend llamacpp (greedy and "
                          "sampling are); use --backend transformers for contrastive and beam search")
    return LlamaCppChatSession(backend, model_id, settings, system=system, rag=rag,
                               adapter=str(adapter) if adapter is not None else None)
