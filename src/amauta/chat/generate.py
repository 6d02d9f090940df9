"""Generate an answer from a loaded model: whole (`generate`), as text deltas (`stream`), or in batches.

One decoding loop serves greedy, sampling and contrastive search: it runs the prompt once, keeps the KV
cache, and yields token ids; transformers' logits processors shape the scores (repetition penalty,
temperature, top-k, top-p). Beam search keeps whole hypotheses until the end, so it runs through
transformers' `generate` and arrives as one piece. Around the loop sit what every caller needs: the
profile's eos tokens and stop strings (plus the caller's), the context window, a `stop_event` to cancel,
and streaming deltas that never split a multi-byte character or show part of a stop string.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import torch

from amauta.chat.contrastive import contrastive_steps
from amauta.chat.decoding import GenerationSettings, logits_processors
from amauta.core.errors import AmautaError, ContextTooLongError

FinishReason = Literal["stop", "length", "cancelled"]
Prompt = str | Sequence[dict[str, str]]


@dataclass
class GenerationResult:
    """One answer.

    text: the answer, cut before the first stop string.
    token_ids: the generated ids (an eos token that ended the answer included).
    prompt_tokens: tokens in the prompt.
    new_tokens: tokens generated.
    seconds: wall time from prompt to last token.
    finish_reason: `stop` (eos or stop string), `length` (max_new_tokens or context full) or `cancelled`.
    """

    text: str
    token_ids: list[int] = field(default_factory=list)
    prompt_tokens: int = 0
    new_tokens: int = 0
    seconds: float = 0.0
    finish_reason: FinishReason = "length"

    @property
    def tokens_per_second(self) -> float:
        """Generated tokens per second of wall time."""
        return self.new_tokens / self.seconds if self.seconds > 0 else 0.0


# --- what the profile and tokenizer say ------------------------------------------------------------------

def _device(model) -> torch.device:
    return next(model.parameters()).device


def encode_prompt(loaded, prompt_or_messages: Prompt) -> torch.Tensor:
    """[1, S] prompt ids: messages go through the model's chat template; a string is used as it is."""
    from amauta.models.templates import apply_template

    if isinstance(prompt_or_messages, str):
        # A raw prompt (a base model, an already rendered template): the tokenizer adds its BOS as usual.
        text, special = prompt_or_messages, True
    else:
        # The template writes every special token itself (as transformers' apply_chat_template does).
        text, special = apply_template(loaded, list(prompt_or_messages)), False
    ids = loaded.tokenizer(text, add_special_tokens=special, return_tensors="pt").input_ids
    if ids.shape[1] == 0:
        raise AmautaError("the prompt is empty; write something for the model to answer")
    return ids.to(_device(loaded.model))


def eos_token_ids(loaded) -> set[int]:
    """Token ids that end the answer: the profile's eos tokens, the tokenizer's and the model's."""
    tokenizer, ids = loaded.tokenizer, set()
    vocab = tokenizer.get_vocab()
    for token in getattr(loaded.profile, "eos_tokens", None) or []:
        if token in vocab:
            ids.add(vocab[token])
    if tokenizer.eos_token_id is not None:
        ids.add(int(tokenizer.eos_token_id))
    config_eos = getattr(getattr(loaded.model, "generation_config", None), "eos_token_id", None)
    if config_eos is not None:
        ids.update(int(i) for i in (config_eos if isinstance(config_eos, (list, tuple)) else [config_eos]))
    return ids


def stop_strings(loaded, settings: GenerationSettings) -> list[str]:
    """The profile's stop strings followed by the caller's, without repeats or empty ones."""
    stops = list(getattr(loaded.profile, "stop_strings", None) or []) + list(settings.stop)
    return list(dict.fromkeys(s for s in stops if s))


def budget(loaded, prompt_tokens: int, settings: GenerationSettings, context_length: int | None = None) -> int:
    """max_new_tokens, shortened so the answer fits the context window; an error when the prompt alone does not."""
    context = context_length or int(getattr(loaded.profile, "context_length", 0) or 0) or int(
        getattr(loaded.model.config, "max_position_embeddings", 0) or 1 << 30)
    if prompt_tokens >= context:
        raise ContextTooLongError(f"{loaded.profile.name}: the prompt has {prompt_tokens} tokens but the model's "
                                  f"context holds {context}; shorten the prompt (or /reset the chat history)",
                                  prompt_tokens=prompt_tokens, context=context)
    return min(settings.max_new_tokens, context - prompt_tokens)


def _find_stop(text: str, stops: list[str]) -> int | None:
    """Where the earliest stop string starts in `text`, or None."""
    found = [i for i in (text.find(s) for s in stops) if i >= 0]
    return min(found) if found else None


def complete_characters(text: str) -> str:
    """`text` without a trailing unfinished UTF-8 character.

    A byte-level tokenizer spells a multi-byte character (ñ, an emoji) with several tokens; decoding only some
    of them gives U+FFFD. While streaming the rest may still come; once the answer has ended (max_new_tokens,
    a full context, a cancel) it never will, so the half character is dropped instead of shown as "\ufffd".
    """
    return text.rstrip("\ufffd")


def _safe_length(text: str, stops: list[str]) -> int:
    """How much of `text` can be shown now: not an unfinished UTF-8 character, not the start of a stop string."""
    end = len(complete_characters(text))
    for stop in stops:
        for n in range(min(len(stop) - 1, end), 0, -1):
            if text[:end].endswith(stop[:n]):
                end -= n
                break
    return end


# --- the decoding loops ----------------------------------------------------------------------------------

@torch.inference_mode()
def _greedy_or_sampling_steps(model, input_ids: torch.Tensor, settings: GenerationSettings,
                              max_new_tokens: int) -> Iterator[int]:
    """Yield next-token ids from greedy search or sampling over the KV cache (batch 1)."""
    from transformers import DynamicCache

    processors = logits_processors(settings)
    sampling = settings.samples
    generator = None
    if sampling and settings.seed is not None:
        generator = torch.Generator(device=input_ids.device).manual_seed(settings.seed)
    config = model.config.get_text_config() if hasattr(model.config, "get_text_config") else model.config
    cache = DynamicCache(config=config)
    out = model(input_ids=input_ids, cache=cache, use_cache=True, logits_to_keep=1)
    ids = input_ids
    for step in range(max_new_tokens):
        scores = processors(ids, out.logits[:, -1, :].float())
        if sampling:
            token = torch.multinomial(torch.softmax(scores, dim=-1), 1, generator=generator)
        else:
            token = scores.argmax(dim=-1, keepdim=True)
        ids = torch.cat([ids, token], dim=1)
        yield int(token)
        if step + 1 < max_new_tokens:  # no forward pass for a token nobody will read
            out = model(input_ids=token, cache=cache, use_cache=True, logits_to_keep=1)


def token_steps(loaded, input_ids: torch.Tensor, settings: GenerationSettings, max_new_tokens: int) -> Iterator[int]:
    """Next-token ids, one at a time, for greedy, sampling or contrastive search."""
    if settings.strategy == "contrastive":
        processors = logits_processors(settings)
        return contrastive_steps(loaded.model, input_ids, top_k=settings.effective_top_k,
                                 penalty_alpha=settings.penalty_alpha, max_new_tokens=max_new_tokens,
                                 logits_processor=processors or None)
    if settings.strategy in ("greedy", "sampling"):
        return _greedy_or_sampling_steps(loaded.model, input_ids, settings, max_new_tokens)
    raise AmautaError(f"strategy '{settings.strategy}' does not decode token by token")


def _hf_generation_config(loaded, settings: GenerationSettings, max_new_tokens: int, eos: set[int]):
    """A fresh transformers GenerationConfig for `settings` (nothing inherited from the model's defaults)."""
    from transformers import GenerationConfig

    pad = loaded.tokenizer.pad_token_id
    options: dict[str, Any] = dict(max_new_tokens=max_new_tokens, eos_token_id=sorted(eos),
                                   pad_token_id=pad if pad is not None else min(eos, default=0),
                                   repetition_penalty=settings.repetition_penalty)
    if settings.ignore_eos:  # transformers suppresses eos until this many tokens exist
        options.update(min_new_tokens=max_new_tokens)
    if settings.strategy == "beam":
        options.update(num_beams=settings.num_beams, do_sample=False, early_stopping=True)
    elif settings.samples:
        options.update(do_sample=True, temperature=settings.temperature, top_k=settings.effective_top_k,
                       top_p=settings.top_p)
    else:
        options.update(do_sample=False)
    return GenerationConfig(**options)


class _StopOnEvent:
    """A transformers stopping criterion that ends generation when a threading.Event is set."""

    def __init__(self, event: threading.Event | None):
        self.event = event

    def __call__(self, input_ids, scores, **kwargs) -> torch.BoolTensor:
        stop = bool(self.event is not None and self.event.is_set())
        return torch.full((input_ids.shape[0],), stop, dtype=torch.bool, device=input_ids.device)


@torch.inference_mode()
def _beam_tokens(loaded, input_ids: torch.Tensor, settings: GenerationSettings, max_new_tokens: int,
                 eos: set[int], stop_event: threading.Event | None) -> list[int]:
    """The best beam's new token ids (transformers' beam search)."""
    from transformers import StoppingCriteriaList

    out = loaded.model.generate(input_ids=input_ids, attention_mask=torch.ones_like(input_ids),
                                generation_config=_hf_generation_config(loaded, settings, max_new_tokens, eos),
                                stopping_criteria=StoppingCriteriaList([_StopOnEvent(stop_event)]))
    new = out[0, input_ids.shape[1]:].tolist()
    pad = loaded.tokenizer.pad_token_id
    while new and new[-1] == pad and pad not in eos:  # right padding of a beam that ended early
        new.pop()
    return new


# --- one answer, streamed ----------------------------------------------------------------------------------

class Generation:
    """Iterate for text deltas; `.result` holds the `GenerationResult` once the iteration ends.

    loaded: the `LoadedModel`.
    prompt_or_messages: a raw prompt string, or chat messages rendered with the model's template.
    settings: decoding settings (default: the profile's).
    stop_event: set it (from another thread or a signal handler) to end the answer after the current token.
    context_length: the window to respect (default: the profile's context length).
    """

    def __init__(self, loaded, prompt_or_messages: Prompt, settings: GenerationSettings | None = None,
                 stop_event: threading.Event | None = None, context_length: int | None = None):
        self.loaded = loaded
        self.settings = settings or GenerationSettings.from_profile(loaded.profile)
        self.stop_event = stop_event
        self.input_ids = encode_prompt(loaded, prompt_or_messages)
        self.max_new_tokens = budget(loaded, self.input_ids.shape[1], self.settings, context_length)
        self.result: GenerationResult | None = None

    def _decode(self, ids: list[int]) -> str:
        # No clean-up of spaces: the text of a prefix must stay a prefix of the text of the whole.
        return self.loaded.tokenizer.decode(ids, skip_special_tokens=True, clean_up_tokenization_spaces=False)

    def __iter__(self) -> Iterator[str]:
        eos = set() if self.settings.ignore_eos else eos_token_ids(self.loaded)
        stops = stop_strings(self.loaded, self.settings)
        started = time.perf_counter()
        new: list[int] = []
        shown, finish = 0, "length"
        window = max(map(len, stops), default=0)  # a stop string can only start this far before the shown text
        if self.settings.strategy == "beam":
            new = _beam_tokens(self.loaded, self.input_ids, self.settings, self.max_new_tokens,
                               eos or eos_token_ids(self.loaded), self.stop_event)
            steps: Iterator[int] = iter(())
            if new and new[-1] in eos:
                finish = "stop"
            elif self.stop_event is not None and self.stop_event.is_set():
                finish = "cancelled"
        else:
            steps = token_steps(self.loaded, self.input_ids, self.settings, self.max_new_tokens)
        try:
            for token in steps:
                new.append(token)
                if token in eos:
                    finish = "stop"
                    break
                text = self._decode(new)
                if _find_stop(text[max(0, shown - window):], stops) is not None:
                    finish = "stop"
                    break
                end = _safe_length(text, stops)
                if end > shown:
                    yield text[shown:end]
                    shown = end
                if self.stop_event is not None and self.stop_event.is_set():
                    finish = "cancelled"
                    break
        finally:
            close = getattr(steps, "close", None)
            if close:
                close()
        body = [t for t in new if t not in eos]
        text = complete_characters(self._decode(body))
        stop_at = _find_stop(text, stops)
        if stop_at is not None:
            text, finish = text[:stop_at], "stop"
        if len(text) > shown:
            yield text[shown:]
        self.result = GenerationResult(text=text, token_ids=new, prompt_tokens=int(self.input_ids.shape[1]),
                                       new_tokens=len(new), seconds=time.perf_counter() - started,
                                       finish_reason=finish)


def stream(loaded, prompt_or_messages: Prompt, settings: GenerationSettings | None = None,
           stop_event: threading.Event | None = None) -> Iterator[str]:
    """Text deltas of the answer as they are decoded (setting `stop_event` ends it after the current token)."""
    yield from Generation(loaded, prompt_or_messages, settings, stop_event)


def generate(loaded, prompt_or_messages: Prompt, settings: GenerationSettings | None = None,
             stop_event: threading.Event | None = None) -> GenerationResult:
    """The whole answer to a prompt (a string used as is) or to messages (rendered with the chat template)."""
    run = Generation(loaded, prompt_or_messages, settings, stop_event)
    for _ in run:
        pass
    assert run.result is not None
    return run.result


# --- many answers at once ----------------------------------------------------------------------------------

@torch.inference_mode()
def generate_batch(loaded, prompts: Sequence[Prompt], settings: GenerationSettings | None = None,
                   batch_size: int = 8) -> list[GenerationResult]:
    """Answers to many prompts, `batch_size` at a time (left-padded, transformers' `generate`).

    Greedy, sampling and beam search run batched; contrastive search runs one prompt at a time (our
    implementation is batch 1). Each result's `seconds` is its batch's wall time.
    """
    settings = settings or GenerationSettings.from_profile(loaded.profile)
    if settings.strategy == "contrastive" or batch_size <= 1:
        return [generate(loaded, p, settings) for p in prompts]
    tokenizer, model = loaded.tokenizer, loaded.model
    eos, stops = eos_token_ids(loaded), stop_strings(loaded, settings)
    ending = set() if settings.ignore_eos else eos
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else min(eos, default=0)
    if settings.seed is not None:
        torch.manual_seed(settings.seed)
    results: list[GenerationResult] = []
    for start in range(0, len(prompts), batch_size):
        encoded = [encode_prompt(loaded, p)[0] for p in prompts[start:start + batch_size]]
        width = max(len(e) for e in encoded)
        max_new = min(budget(loaded, len(e), settings) for e in encoded)
        input_ids = torch.full((len(encoded), width), pad, dtype=torch.long, device=encoded[0].device)
        mask = torch.zeros_like(input_ids)
        for row, ids in enumerate(encoded):  # left padding: every prompt ends where generation starts
            input_ids[row, width - len(ids):] = ids
            mask[row, width - len(ids):] = 1
        started = time.perf_counter()
        out = model.generate(input_ids=input_ids, attention_mask=mask,
                             generation_config=_hf_generation_config(loaded, settings, max_new, eos))
        seconds = time.perf_counter() - started
        for row, ids in enumerate(encoded):
            new = out[row, width:].tolist()
            finish: FinishReason = "length"
            for i, token in enumerate(new):
                if token in ending:
                    new, finish = new[:i + 1], "stop"
                    break
            body = [t for t in new if t not in ending]
            text = complete_characters(tokenizer.decode(body, skip_special_tokens=True,
                                                        clean_up_tokenization_spaces=False))
            stop_at = _find_stop(text, stops)
            if stop_at is not None:
                text, finish = text[:stop_at], "stop"
            results.append(GenerationResult(text=text, token_ids=new, prompt_tokens=len(ids), new_tokens=len(new),
                                            seconds=seconds, finish_reason=finish))
    return results
