"""The one record every reader produces and every later step consumes.

A record is a conversation (`messages`), or a completion record (`text`: raw text, no chat template,
loss on every token: continued pretraining on documents), plus where it came from (`source`), what kind
of task it is (`category`) and an `id` that is the hash of its source and content: the same input gives
the same id on every run and every machine, so the train/validation split (decided by the id) never drifts.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from typing import Any

from amauta.core.errors import AmautaError

ROLES = ("system", "user", "assistant")


def record_id(source: str, messages: list[dict[str, str]], text: str = "") -> str:
    """16 hex digits of SHA-256 over the source name and the messages or text (stable across runs)."""
    content: Any = [[m["role"], m["content"]] for m in messages] if messages else {"text": text}
    payload = json.dumps([source, content], ensure_ascii=False)
    return hashlib.sha256(payload.encode("utf-8")).hexdigest()[:16]


@dataclass
class Record:
    """One training example: a conversation, or a completion record's raw text.

    messages: [{"role": "system"|"user"|"assistant", "content": str}, ...], ending with an assistant reply;
        empty for a completion record.
    source: the name of the source it was read from (as given in the prepare config).
    category: the task type ("open_qa", "creative_writing", "qa", ...) or "" when unknown.
    id: the content hash (see `record_id`); set automatically when left empty.
    text: a completion record's raw text (trained on every token, no template); "" for a conversation.
    """

    messages: list[dict[str, str]]
    source: str
    category: str = ""
    id: str = ""
    where: str = field(default="", compare=False)
    text: str = ""

    def __post_init__(self) -> None:
        if bool(self.messages) == bool(self.text):
            raise AmautaError(f"{self.where or self.source}: a record holds either 'messages' or 'text', not "
                              f"{'both' if self.text else 'neither'}")
        if not self.id:
            self.id = record_id(self.source, self.messages, self.text)

    @property
    def is_completion(self) -> bool:
        """Raw text trained on every token (continued pretraining), not a conversation."""
        return bool(self.text)

    def to_json(self) -> dict[str, Any]:
        """The record as written to train.jsonl/val.jsonl (the contract's four keys)."""
        body: dict[str, Any] = {"text": self.text} if self.text else {"messages": [dict(m) for m in self.messages]}
        return {"id": self.id, **body, "source": self.source, "category": self.category}

    def user_text(self) -> str:
        """All non-assistant text joined (system and user turns); "" for a completion record."""
        return "\n".join(m["content"] for m in self.messages if m["role"] != "assistant")

    def assistant_text(self) -> str:
        """All assistant replies joined; a completion record's whole text (all of it is learned)."""
        return self.text or "\n".join(m["content"] for m in self.messages if m["role"] == "assistant")


def check_messages(messages: Any, where: str) -> list[dict[str, str]]:
    """Validate a messages list (roles, string contents, ends with the assistant) or raise one clear line."""
    if not isinstance(messages, list) or not messages:
        raise AmautaError(f"{where}: 'messages' must be a non-empty list of {{role, content}} objects, "
                          f"got {type(messages).__name__}")
    clean = []
    for i, message in enumerate(messages):
        if not isinstance(message, dict):
            raise AmautaError(f"{where}: message {i} must be an object with 'role' and 'content', got {type(message).__name__}")
        role, content = message.get("role"), message.get("content")
        if role not in ROLES:
            raise AmautaError(f"{where}: message {i} has role {role!r}; use one of {', '.join(ROLES)}")
        if not isinstance(content, str):
            raise AmautaError(f"{where}: message {i} ('{role}') content must be a string, got {type(content).__name__}")
        clean.append({"role": role, "content": content})
    if not any(m["role"] == "assistant" for m in clean):
        raise AmautaError(f"{where}: conversation has no 'assistant' reply to learn from; add one or drop the record")
    if clean[-1]["role"] != "assistant":
        raise AmautaError(f"{where}: conversation ends with a '{clean[-1]['role']}' turn; it must end with the "
                          "assistant's reply (drop the trailing turn)")
    return clean


def record_from_json(obj: Any, where: str) -> Record:
    """Rebuild a record from a dataset folder's JSONL line, validating its shape."""
    if not isinstance(obj, dict):
        raise AmautaError(f"{where}: expected a JSON object, found {type(obj).__name__}")
    missing = [k for k in ("id", "source") if k not in obj] + ([] if "text" in obj else ["messages"] * ("messages" not in obj))
    if missing:
        raise AmautaError(f"{where}: record lacks {', '.join(repr(k) for k in missing)}; "
                          "was this file written by `amauta data prepare`?")
    if "text" in obj and "messages" in obj:
        raise AmautaError(f"{where}: record has both 'messages' and 'text'; a record is a conversation or raw "
                          "text, not both")
    for key in ("id", "source"):
        if not isinstance(obj[key], str):
            raise AmautaError(f"{where}: '{key}' must be a string, got {type(obj[key]).__name__}")
    category = obj.get("category") or ""
    if not isinstance(category, str):
        raise AmautaError(f"{where}: 'category' must be a string, got {type(category).__name__}")
    if "text" in obj:
        if not isinstance(obj["text"], str) or not obj["text"].strip():
            raise AmautaError(f"{where}: 'text' must be a non-empty string (a completion record's raw text)")
        return Record(messages=[], text=obj["text"], source=obj["source"], category=category, id=obj["id"], where=where)
    return Record(messages=check_messages(obj["messages"], where), source=obj["source"], category=category,
                  id=obj["id"], where=where)
