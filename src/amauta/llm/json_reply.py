"""Get JSON out of a language model's reply, however it was wrapped.

Models answer "Claro, aquí tienes: ```json [...] ```", use single quotes, leave a trailing comma, or stop
before closing their brackets when they hit the token limit. `extract_json` finds the JSON value in the
reply and repairs these common faults; `ask_json` asks again with a corrective message (in Spanish, the
language of our prompts) when that still fails, and after `retries` more tries returns the failure with
every raw reply so the caller can record it instead of losing it.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

_FENCE_RE = re.compile(r"```(?:json|JSON)?\s*\n?(.*?)(?:```|$)", re.S)


class JsonExtractionError(ValueError):
    """No JSON value could be read from a reply (the message says why)."""


@dataclass
class JsonReply:
    """What `ask_json` got.

    value: the parsed (and validated) JSON value, or None when every try failed.
    raw_replies: every reply the model gave, in order (for the failure log and debugging).
    error: why the last try failed, or None on success.
    """

    value: Any
    raw_replies: list[str] = field(default_factory=list)
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.error is None


def extract_json(text: str) -> Any:
    """The first JSON object or array in `text`, repaired if needed; `JsonExtractionError` when none."""
    if not text or not text.strip():
        raise JsonExtractionError("the reply is empty")
    candidates = [m.group(1) for m in _FENCE_RE.finditer(text) if m.group(1).strip()]
    candidates.append(text)
    last_error = "no '{' or '[' found in the reply"
    for candidate in candidates:
        start = _first_opening(candidate)
        if start < 0:
            continue
        span = _balanced_span(candidate, start)
        try:
            return json.loads(span)
        except json.JSONDecodeError:
            pass
        try:
            return json.loads(repair_json(span))
        except json.JSONDecodeError as exc:
            last_error = f"invalid JSON after repair ({exc.msg} at character {exc.pos})"
        # A reply cut off by the token limit: keep the complete elements before the last commas.
        for cut in _comma_positions(span)[::-1][:20]:
            try:
                return json.loads(repair_json(span[:cut]))
            except json.JSONDecodeError:
                continue
    raise JsonExtractionError(last_error)


def _outside_strings(text: str, start: int = 0):
    """Yield (offset, char) for the characters of `text` from `start` that are outside JSON-ish strings.

    Both quote kinds open strings, backslashes escape, and a single quote inside a word ("d'Artagnan")
    does not open a string.
    """
    in_string, quote, escaped = False, "", False
    for i in range(start, len(text)):
        ch = text[i]
        if in_string:
            if escaped:
                escaped = False
            elif ch == "\\":
                escaped = True
            elif ch == quote:
                in_string = False
        elif ch in "\"'" and not (ch == "'" and i > 0 and text[i - 1].isalnum()):
            in_string, quote = True, ch
        else:
            yield i, ch


def _comma_positions(text: str) -> list[int]:
    """Offsets of the commas outside strings."""
    return [i for i, ch in _outside_strings(text) if ch == ","]


def _first_opening(text: str) -> int:
    positions = [p for p in (text.find("{"), text.find("[")) if p >= 0]
    return min(positions) if positions else -1


def _balanced_span(text: str, start: int) -> str:
    """From `start` to the bracket that closes it (string-aware), or to the end when it never closes."""
    depth = 0
    for i, ch in _outside_strings(text, start):
        if ch in "{[":
            depth += 1
        elif ch in "}]":
            depth -= 1
            if depth == 0:
                return text[start:i + 1]
    return text[start:]


def repair_json(text: str) -> str:
    """Fix what models commonly get wrong: smart and single quotes, trailing commas, Python literals,
    comments, raw newlines inside strings, and brackets or strings left open at the end."""
    text = text.strip().replace("\u201c", '"').replace("\u201d", '"').replace("\u2018", "'").replace("\u2019", "'")
    out: list[str] = []
    stack: list[str] = []
    in_string, quote, escaped = False, "", False
    i = 0
    while i < len(text):
        ch = text[i]
        if in_string:
            if escaped:
                escaped = False
                if ch == "'":  # \' is valid in a single-quoted string, not in JSON
                    out[-1] = "'"
                else:
                    out.append(ch)
            elif ch == "\\":
                escaped = True
                out.append(ch)
            elif ch == quote:
                in_string = False
                out.append('"')
            elif ch == '"':  # a double quote inside a single-quoted string
                out.append('\\"')
            elif ch == "\n":
                out.append("\\n")
            else:
                out.append(ch)
        elif ch in "\"'":
            in_string, quote = True, ch
            out.append('"')
        elif ch == "/" and text[i:i + 2] == "//":
            while i < len(text) and text[i] != "\n":
                i += 1
            continue
        elif ch in "{[":
            stack.append("}" if ch == "{" else "]")
            out.append(ch)
        elif ch in "}]":
            _drop_trailing_comma(out)
            if stack:
                stack.pop()
            out.append(ch)
        else:
            word = re.match(r"True|False|None", text[i:])
            if word and not (out and (out[-1][-1:].isalnum())):
                out.append({"True": "true", "False": "false", "None": "null"}[word.group(0)])
                i += len(word.group(0))
                continue
            out.append(ch)
        i += 1
    if in_string:
        out.append('"')
    _drop_trailing_comma(out)
    # A reply cut off after a key ("a": ) or a colon gets a null so the object can still close.
    tail = "".join(out).rstrip()
    if tail.endswith(":"):
        out.append(" null")
    while stack:
        _drop_trailing_comma(out)
        out.append(stack.pop())
    return "".join(out)


def _drop_trailing_comma(out: list[str]) -> None:
    """Remove a comma (and the whitespace after it) at the end of what was written so far."""
    j = len(out) - 1
    while j >= 0 and out[j].isspace():
        j -= 1
    if j >= 0 and out[j] == ",":
        del out[j:]


CORRECTION = ("Tu respuesta anterior no se pudo usar: {error}. Responde de nuevo solo con JSON válido, "
              "sin texto antes ni después, sin comentarios y con comillas dobles.")


def ask_json(llm, messages: list[dict], *, retries: int = 3, validate: Callable[[Any], Any] | None = None,
             max_tokens: int = 1024, temperature: float = 0.0) -> JsonReply:
    """Ask `llm` for JSON; on a bad reply, ask again up to `retries` times with a corrective message.

    llm: any object with `complete(messages, max_tokens=, temperature=) -> str` (see `amauta.llm.client`).
    messages: the conversation that asks for JSON.
    retries: how many extra tries after the first bad reply.
    validate: optional check of the parsed value; it raises ValueError with a reason (sent back to the
        model in the corrective message) or returns the value to keep (a normalized form, say).
    Endpoint errors (`AmautaError`) are not retried here; the client already retried them.
    """
    conversation = list(messages)
    raw: list[str] = []
    error = "no reply"
    for _ in range(retries + 1):
        reply = llm.complete(conversation, max_tokens=max_tokens, temperature=temperature)
        raw.append(reply)
        try:
            value = extract_json(reply)
            if validate is not None:
                checked = validate(value)
                value = value if checked is None else checked
            return JsonReply(value=value, raw_replies=raw, error=None)
        except (JsonExtractionError, ValueError, TypeError, KeyError) as exc:
            error = str(exc) or type(exc).__name__
        conversation = conversation + [
            {"role": "assistant", "content": reply},
            {"role": "user", "content": CORRECTION.format(error=error)},
        ]
    return JsonReply(value=None, raw_replies=raw, error=f"{len(raw)} tries failed; last: {error}")
