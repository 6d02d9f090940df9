"""A conversation with a loaded model: system prompt, history kept within the context window, save to JSON.

The history holds what the user typed and what the model answered. Before each answer the session renders
system prompt + history + new question with the model's template and, while that plus the room for the
answer exceeds the context window, drops the oldest exchange (the caller is told how many were dropped).
With a `RagAnswerer` (`amauta chat --rag INDEX`) the question is sent with retrieved passages instead, and
the hits are kept for showing the sources; the history still stores the plain question.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from amauta.chat.decoding import GenerationSettings
from amauta.chat.generate import Generation, GenerationResult
from amauta.core.errors import AmautaError
from amauta.core.files import atomic_write_json


class ChatSession:
    """A multi-turn chat.

    loaded: the `LoadedModel` that answers.
    settings: decoding settings (default: the profile's).
    system: system prompt: None = the profile's (`amauta models show NAME`, Spanish for the chat models),
        "" = none at all (not even a tokenizer template's own default), or the text to use.
    rag: an optional `amauta.rag.answer.RagAnswerer`: questions are answered from its index.
    context_length: tokens the prompt plus answer may use (default: the profile's context length).
    """

    def __init__(self, loaded, settings: GenerationSettings | None = None, system: str | None = None,
                 rag: Any = None, context_length: int | None = None):
        self.loaded = loaded
        self.settings = settings or GenerationSettings.from_profile(loaded.profile)
        self.system = system.strip() if system is not None else None
        self.rag = rag
        self.context_length = context_length or int(loaded.profile.context_length)
        self.history: list[dict[str, str]] = []
        self.last_result: GenerationResult | None = None
        self.last_hits: list[Any] = []
        self.dropped_turns = 0  # exchanges dropped to fit the window before the last answer
        self.dropped_total = 0  # exchanges dropped since the start (or the last reset)

    # --- the conversation ---------------------------------------------------------------------------

    def reset(self) -> None:
        """Forget the history (the system prompt and settings stay)."""
        self.history.clear()
        self.last_result, self.last_hits, self.dropped_turns, self.dropped_total = None, [], 0, 0

    def set_system(self, text: str | None) -> None:
        """Set the system prompt; None or empty removes it (no system prompt at all, not the profile's)."""
        self.system = (text or "").strip()

    @property
    def effective_system(self) -> str:
        """The system prompt the model gets ("" = none): the session's, else the profile's."""
        return self.system if self.system is not None else (getattr(self.loaded.profile, "system_prompt", "") or "")

    def set_strategy(self, strategy: str) -> None:
        """Switch the decoding strategy, with that strategy's defaults from the profile."""
        self.settings = GenerationSettings.from_profile(self.loaded.profile, strategy=strategy,
                                                        max_new_tokens=self.settings.max_new_tokens,
                                                        stop=self.settings.stop, seed=self.settings.seed)

    def _frame(self, question: str) -> tuple[list[dict[str, str]], dict[str, str]]:
        """The system message(s) and the last user message that surround the history."""
        if self.rag is None:
            # An explicit system message, even empty ("none"): the template adds nothing of its own.
            return [{"role": "system", "content": self.effective_system}], {"role": "user", "content": question}
        # Retrieve once per question; the passages ride in the last user turn, the RAG system prompt first.
        # Passages are shortened until they fit the window with room for the answer.
        messages, self.last_hits = self.rag.build_messages(question, history=[], system=self.system or None,
                                                           loaded=self.passage_fitting_model,
                                                           max_new_tokens=self.settings.max_new_tokens)
        return [m for m in messages[:-1] if m["role"] == "system"], messages[-1]

    @property
    def passage_fitting_model(self) -> Any:
        """The LoadedModel whose tokenizer RAG passages are shortened for (None: passages are not shortened)."""
        return self.loaded

    def _prompt_tokens(self, messages: list[dict[str, str]]) -> int:
        from amauta.models.templates import apply_template

        return len(self.loaded.tokenizer(apply_template(self.loaded, messages), add_special_tokens=False).input_ids)

    def build_messages(self, question: str) -> list[dict[str, str]]:
        """Messages for `question`, dropping the oldest exchanges until prompt + answer fit the window."""
        room = self.context_length - min(self.settings.max_new_tokens, self.context_length // 2)
        history = list(self.history)
        dropped = 0
        system, last = self._frame(question)
        while (tokens := self._prompt_tokens(system + history + [last])) > room:
            if not history:  # the question alone is too long: say so, and keep the conversation as it was
                raise AmautaError(f"this message makes a prompt of {tokens} tokens, but the model's context holds "
                                  f"{self.context_length} with room for the answer; shorten it")
            # Drop one exchange: the oldest user turn and every assistant turn up to the next user turn.
            history.pop(0)
            while history and history[0]["role"] != "user":
                history.pop(0)
            dropped += 1
        if dropped:
            self.history = history
        self.dropped_turns = dropped
        self.dropped_total += dropped
        return system + history + [last]

    def send(self, question: str, stop_event: threading.Event | None = None) -> Iterator[str]:
        """Stream the answer to `question`; the exchange joins the history when the answer ends (even cancelled)."""
        question = question.strip()
        if not question:
            raise AmautaError("empty message; type a question")
        messages = self.build_messages(question)
        run = self._start(messages, stop_event)
        yield from run
        self.last_result = run.result
        answer = run.result.text.strip() if run.result else ""
        self.history += [{"role": "user", "content": question}, {"role": "assistant", "content": answer}]

    def _start(self, messages: list[dict[str, str]], stop_event: threading.Event | None) -> Iterator[str]:
        """A run for `messages` (iterate it for text; `.result` afterwards). Another engine's session (the
        llama.cpp one of `amauta chat --backend llamacpp`) overrides this and `_prompt_tokens`."""
        return Generation(self.loaded, messages, self.settings, stop_event, context_length=self.context_length)

    def ask(self, question: str) -> str:
        """The whole answer to `question` (for scripts)."""
        return "".join(self.send(question)).strip()

    # --- saving ----------------------------------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        """What `save` writes: model, settings, system prompt and the messages."""
        system = self.effective_system
        messages = ([{"role": "system", "content": system}] if system else []) + self.history
        return {"model": self.loaded.profile.name, "source": str(self.loaded.source),
                "adapter": self.loaded.extra.get("adapter"), "saved": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                "settings": self.settings.model_dump(mode="json"), "messages": messages}

    def save(self, path: str | Path) -> Path:
        """Write the conversation as JSON (atomically); returns the path."""
        path = Path(path).expanduser()
        if path.is_dir():
            raise AmautaError(f"{path}: is a folder; give a file name such as {path / 'chat.json'}")
        if path.suffix.lower() != ".json":
            raise AmautaError(f"{path}: a saved chat is JSON; use a name ending in .json")
        return atomic_write_json(path, self.to_dict())
