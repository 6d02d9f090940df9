"""Greedy generation for the generative tasks (Belebele for chat models, XQuAD, MGSM).

Tasks ask for text through the chat room's `generate` / `generate_batch`, so that templates, stop
strings and decoding are the same as when a person chats with the model.
"""

from __future__ import annotations

from typing import Any


def greedy_settings(loaded: Any, max_new_tokens: int):
    """Greedy decoding with the profile's stop strings: what an evaluation should measure."""
    from amauta.chat.decoding import GenerationSettings

    profile = getattr(loaded, "profile", None)
    if profile is not None and hasattr(profile, "generation"):
        return GenerationSettings.from_profile(profile, strategy="greedy", max_new_tokens=max_new_tokens)
    return GenerationSettings(strategy="greedy", max_new_tokens=max_new_tokens)


def generate_texts(loaded: Any, conversations: list[list[dict[str, str]]], max_new_tokens: int) -> list[str]:
    """The model's greedy reply to each conversation (a list of chat messages), batched when possible."""
    from amauta.chat import generate as chat_generate

    settings = greedy_settings(loaded, max_new_tokens)
    if hasattr(chat_generate, "generate_batch"):
        return [r.text for r in chat_generate.generate_batch(loaded, conversations, settings)]
    return [chat_generate.generate(loaded, messages, settings).text for messages in conversations]


class GenerativeTask:
    """A runner task answered by generation: a fixed instruction per item, greedy replies, then a score.

    Subclasses set `name` and `instruction` and say how an item becomes chat messages (`messages`) and
    how a reply is graded (`score`); items, the cache key and batching are shared here.
    items: the task's items.
    max_new_tokens: tokens the model may write per reply.
    source: the data file's name (part of the cache key).
    """

    name = "generative"
    instruction = ""

    def __init__(self, items: list[dict], max_new_tokens: int, source: str = ""):
        self._items, self.max_new_tokens, self.source = items, max_new_tokens, source

    def config_key(self) -> dict[str, Any]:
        return {"prompt": self.instruction, "max_new_tokens": self.max_new_tokens, "source": self.source}

    def items(self) -> list[dict]:
        return self._items

    def length(self, item: dict) -> int:
        """The same for every item: replies are generated in file order, each batch the same items."""
        return 0

    def messages(self, item: dict) -> list[dict[str, str]]:
        """The chat messages the model answers for `item`."""
        raise NotImplementedError

    def score(self, item: dict, output: str) -> dict[str, Any]:
        """The result row for one reply (it must include `correct`)."""
        raise NotImplementedError

    def evaluate(self, loaded: Any, batch: list[dict]) -> list[dict]:
        outputs = generate_texts(loaded, [self.messages(item) for item in batch], self.max_new_tokens)
        return [self.score(item, output) for item, output in zip(batch, outputs, strict=True)]
