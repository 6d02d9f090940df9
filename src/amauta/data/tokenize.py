"""Tokenization for training: the model's template, labels on the assistant's replies only, packing.

`tokenize_messages` renders the whole conversation once with the model's template and tokenizes it
once. Which characters belong to the assistant is found by rendering prefixes: the text up to the
assistant's cue (`add_generation_prompt=True`) and the text through its reply. Amauta's templates are
prefix-consistent (`amauta.models.templates`), so those lengths are character offsets into the full
text; a fast tokenizer's offset mapping then says which tokens produce reply characters. Only those
tokens (the reply and its end-of-turn marker) keep their label; all others get -100, so the loss
teaches the model to answer, not to repeat the user's question. Multi-turn conversations get every
assistant turn labelled.

`pack_examples` concatenates tokenized examples into fixed-size rows with `position_ids` restarting at
each example (what padding-free attention in transformers reads to keep examples apart) and the first
label of each example masked, so no example learns to predict across a boundary.

Completion records (raw text, continued pretraining) take the other road: `tokenize_text` tokenizes a
document as plain text (no template, the tokenizer's own BOS if it adds one) and ends it with EOS, and
`pack_documents` lays the documents end to end and cuts the stream into blocks of the run's length, every
token labelled (run_clm's `group_texts`, with an EOS between documents so the model learns where one ends).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from amauta.core.errors import AmautaError

IGNORE = -100


def render(tokenizer: Any, profile: Any, messages: Sequence[dict], add_generation_prompt: bool) -> str:
    """Render with the model's template exactly as chat does (the tokenizer's own, unless the profile overrides),
    with the profile's system prompt for a conversation that brings none."""
    from amauta.models.templates import apply_template
    from amauta.models.types import LoadedModel

    return apply_template(LoadedModel(model=None, tokenizer=tokenizer, profile=profile), list(messages),
                          add_generation_prompt=add_generation_prompt)


def _end_tokens(tokenizer: Any, profile: Any) -> list[str]:
    return [t for t in [*getattr(profile, "eos_tokens", []), tokenizer.eos_token] if t]


def assistant_spans(tokenizer: Any, profile: Any, messages: Sequence[dict]) -> tuple[str, list[tuple[int, int]]]:
    """The rendered conversation and the [start, end) character spans of each assistant reply.

    A reply's span runs from the end of its cue to the end of the rendering through that reply, so it
    holds the template's end-of-turn marker too. When the final text ends without any end token (the
    Falcon format), the tokenizer's eos token is appended to the last reply so the model learns to stop.
    """
    messages = list(messages)
    full = render(tokenizer, profile, messages, add_generation_prompt=False)
    spans = []
    for i, message in enumerate(messages):
        if message["role"] != "assistant":
            continue
        before = render(tokenizer, profile, messages[:i], add_generation_prompt=True)
        through = render(tokenizer, profile, messages[: i + 1], add_generation_prompt=False)
        if not (full.startswith(before) and full.startswith(through) and len(through) >= len(before)):
            raise AmautaError(f"{profile.name}: the chat template is not prefix-consistent (rendering the first {i} "
                              "messages is not a prefix of the whole conversation), so replies cannot be masked; "
                              "set use_tokenizer_template: false in the profile to use Amauta's template")
        spans.append((len(before), len(through)))
    ends = _end_tokens(tokenizer, profile)
    if spans and messages[-1]["role"] == "assistant" and not any(full.rstrip().endswith(t) for t in ends):
        if tokenizer.eos_token:
            full += tokenizer.eos_token
            spans[-1] = (spans[-1][0], len(full))
    return full, spans


def tokenize_messages(tokenizer: Any, profile: Any, messages: Sequence[dict], max_length: int | None = None) -> dict:
    """Token ids, labels (-100 outside the assistant's replies) and attention mask of one conversation.

    tokenizer: the model's tokenizer (a fast tokenizer: offsets tell tokens from characters).
    profile: the model's registry profile (its template and eos tokens).
    messages: the conversation, ending with the assistant's reply.
    max_length: cut to this many tokens (from the end of the conversation's start); None keeps all.
    """
    text, spans = assistant_spans(tokenizer, profile, messages)
    if not getattr(tokenizer, "is_fast", False):
        return _tokenize_by_segments(tokenizer, text, spans, max_length)
    enc = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True, verbose=False)
    ids, offsets = enc["input_ids"], enc["offset_mapping"]
    labels = [IGNORE] * len(ids)
    k = 0
    for t, (start, end) in enumerate(offsets):
        while k < len(spans) and spans[k][1] <= start:
            k += 1
        # A token is the assistant's when it produces at least one character of a reply.
        if k < len(spans) and end > spans[k][0] and start < spans[k][1] and end > start:
            labels[t] = ids[t]
    if max_length is not None:
        ids, labels = ids[:max_length], labels[:max_length]
    return {"input_ids": ids, "labels": labels, "attention_mask": [1] * len(ids)}


def _tokenize_by_segments(tokenizer: Any, text: str, spans: list[tuple[int, int]], max_length: int | None) -> dict:
    """For slow tokenizers (no offsets): tokenize prompt and reply pieces separately and concatenate."""
    ids: list[int] = []
    labels: list[int] = []
    cursor = 0
    for start, end in [*spans, (len(text), len(text))]:
        prompt = tokenizer.encode(text[cursor:start], add_special_tokens=False) if start > cursor else []
        reply = tokenizer.encode(text[start:end], add_special_tokens=False) if end > start else []
        ids += prompt + reply
        labels += [IGNORE] * len(prompt) + list(reply)
        cursor = end
    if max_length is not None:
        ids, labels = ids[:max_length], labels[:max_length]
    return {"input_ids": ids, "labels": labels, "attention_mask": [1] * len(ids)}


def tokenize_text(tokenizer: Any, text: str) -> list[int]:
    """Token ids of a completion record's raw text: no chat template, the tokenizer's own special tokens
    (a BOS for Llama-style tokenizers, nothing for GPT-2-style ones), then one EOS (not doubled)."""
    ids = list(map(int, tokenizer(text, verbose=False)["input_ids"]))
    eos = tokenizer.eos_token_id
    if eos is not None and (not ids or ids[-1] != eos):
        ids.append(int(eos))
    return ids


def pack_documents(documents: Sequence[Sequence[int]], block_size: int) -> list[dict[str, list[int]]]:
    """Documents' token ids laid end to end and cut into blocks of `block_size` tokens, labels = ids.

    Nothing is dropped: a document longer than a block continues in the next one, and the last block may be
    shorter (a block of one token teaches nothing and is left out). Within a block, tokens attend to the
    documents before them as in pretraining; the EOS `tokenize_text` puts after each document marks the seam.
    """
    if block_size <= 1:
        raise AmautaError(f"pack_documents: block_size must be at least 2, got {block_size}")
    stream = [token for document in documents for token in document]
    blocks = [stream[i: i + block_size] for i in range(0, len(stream), block_size)]
    return [{"input_ids": list(block), "labels": list(block)} for block in blocks if len(block) > 1]


def conversation_lengths(tokenizer: Any, profile: Any, conversations: Sequence[Sequence[dict]],
                         template: str | None = None, batch_size: int = 512) -> list[int]:
    """Token count of each whole conversation with the model's template (or the named `template`).

    Renders each conversation once and tokenizes in batches (a fast tokenizer runs them in Rust), which
    is what the length filter and the length statistics need; no labels are built. Either way a
    conversation without a system message gets the profile's system prompt, as in training.
    """
    from amauta.models.templates import render_messages, with_system_prompt

    lengths: list[int] = []
    for i in range(0, len(conversations), batch_size):
        batch = conversations[i: i + batch_size]
        if template is None:
            texts = [render(tokenizer, profile, m, add_generation_prompt=False) for m in batch]
        else:
            texts = [render_messages(with_system_prompt(m, profile.system_prompt), template, add_generation_prompt=False,
                                     eos_token=tokenizer.eos_token or "") for m in batch]
        enc = tokenizer(texts, add_special_tokens=False, verbose=False)  # lengths past model_max_length are the point
        lengths += [len(x) for x in enc["input_ids"]]
    return lengths


def pack_examples(examples: Sequence[dict], seq_len: int, *, drop_unlabelled: bool = True) -> list[dict]:
    """Concatenate tokenized examples into rows of at most `seq_len` tokens, in order.

    Each row has `input_ids`, `labels`, `attention_mask` (ones), `position_ids` (restarting at 0 for
    every example, which transformers' padding-free attention uses to keep examples apart) and
    `seq_lengths` (the examples' lengths in the row). The first label of each example is -100 so no
    token learns to predict across a boundary. An example longer than `seq_len` is cut to it; with
    `drop_unlabelled` an example left with no labelled token is dropped.
    """
    if seq_len <= 0:
        raise AmautaError(f"pack_examples: seq_len must be positive, got {seq_len}")
    rows: list[dict] = []
    current: dict[str, list] = {"input_ids": [], "labels": [], "position_ids": [], "seq_lengths": []}

    def flush() -> None:
        if current["input_ids"]:
            rows.append({**{k: list(v) for k, v in current.items()}, "attention_mask": [1] * len(current["input_ids"])})
            for v in current.values():
                v.clear()

    for example in examples:
        ids = list(example["input_ids"][:seq_len])
        labels = list(example["labels"][:seq_len])
        if labels:
            labels[0] = IGNORE
        if drop_unlabelled and all(x == IGNORE for x in labels):
            continue
        if len(current["input_ids"]) + len(ids) > seq_len:
            flush()
        current["input_ids"] += ids
        current["labels"] += labels
        current["position_ids"] += list(range(len(ids)))
        current["seq_lengths"].append(len(ids))
    flush()
    return rows


def pad_batch(examples: Sequence[dict], pad_token_id: int, *, pad_to_multiple_of: int | None = None) -> dict:
    """Right-pad tokenized examples to one length: lists of `input_ids`, `labels` (-100), `attention_mask` (0)."""
    longest = max(len(e["input_ids"]) for e in examples)
    if pad_to_multiple_of:
        longest = -(-longest // pad_to_multiple_of) * pad_to_multiple_of
    batch: dict[str, list] = {"input_ids": [], "labels": [], "attention_mask": []}
    for e in examples:
        pad = longest - len(e["input_ids"])
        batch["input_ids"].append(list(e["input_ids"]) + [pad_token_id] * pad)
        batch["labels"].append(list(e["labels"]) + [IGNORE] * pad)
        batch["attention_mask"].append(list(e.get("attention_mask", [1] * len(e["input_ids"]))) + [0] * pad)
    return batch
