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
