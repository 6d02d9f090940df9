"""Log-likelihood of answer continuations, fast: every context runs through the model once.

A multiple-choice item has one long context (passage + question, often after few-shot examples) and
four short continuations. Scoring them as four separate sequences runs the context four times (what
lm-evaluation-harness does). Here each item becomes ONE row: its context followed by all four options
side by side, with an attention mask in which every option sees the context and itself but not the
other options, and position ids that restart each option where the context ends. So the context runs
once, the options run once, nothing is copied, and the vocabulary projection runs only at the
positions that predict an answer token. A token prefix shared by every context of a batch (the
few-shot examples) runs once for the whole batch and its KV cache is shared; pass a `SharedPrefix`
to keep that cache from one batch to the next.

Same numbers as the plain way up to float rounding (tests check it on every tiny architecture,
sliding-window attention included); `reuse_cache=False` keeps the plain way as the reference.

Tokenisation follows lm-evaluation-harness so that results are comparable: trailing spaces of the
context move to the continuation, and the continuation's tokens are those of `context + continuation`
after the context's own tokens.
"""

from __future__ import annotations

import copy
import weakref
from collections.abc import Sequence
from typing import Any

import torch

from amauta.core.errors import AmautaError

# A shared prefix shorter than this is not worth a separate forward pass and a cache copy.
MIN_SHARED_PREFIX = 32


class SharedPrefix:
    """The KV cache of a token prefix that batch after batch shares (the few-shot examples).

    It belongs to the model that computed it and starts afresh when another model uses it (it holds
    that model weakly, so a runner can free it). Within one model the weights must stay fixed: make a
    new one for each scoring run of a model that is being trained.
    """

    def __init__(self) -> None:
        self.tokens: list[int] = []
        self.cache = None
        self._model: Any = lambda: None

    def bind(self, model) -> None:
        """Use this memo for `model`: what another model computed is dropped."""
        if self._model() is not model:
            self.tokens, self.cache, self._model = [], None, weakref.ref(model)

    def covers(self, contexts: Sequence[list[int]]) -> bool:
        """Whether every context starts with the cached prefix and goes on past it."""
        n = len(self.tokens)
        return bool(n) and all(len(c) > n and c[:n] == self.tokens for c in contexts)


def encode_pair(tokenizer, context: str, continuation: str) -> tuple[list[int], list[int]]:
    """Token ids of `context` and of `continuation` as it follows the context (lm-eval's convention)."""
    spaces = len(context) - len(context.rstrip())
    if spaces:
        context, continuation = context[:-spaces], context[-spaces:] + continuation
    whole = tokenizer(context + continuation).input_ids
    ctx = tokenizer(context).input_ids
    cont = whole[len(ctx):]
    if not cont:
        raise AmautaError(f"the answer {continuation!r} encodes to no tokens after its context; check the prompt format")
    return ctx, cont


def _pad_id(tokenizer) -> int:
    for value in (tokenizer.pad_token_id, tokenizer.eos_token_id, 0):
        if value is not None:
            return int(value)
    return 0


@torch.inference_mode()
def score_continuations(model, tokenizer, contexts: Sequence[list[int]], continuations: Sequence[Sequence[list[int]]],
                        *, reuse_cache: bool = True, prefix: SharedPrefix | None = None
                        ) -> list[list[tuple[float, int, bool]]]:
    """Sum of log-probabilities of each continuation given its context.

    model: a causal LM (transformers or peft-wrapped).
    tokenizer: its tokenizer (for the pad id).
    contexts: token ids of each item's context.
    continuations: for each item, the token ids of each option.
    reuse_cache: run each context once for all its options (fast); False runs every
        context+continuation as its own sequence (the reference).
    prefix: keeps the KV cache of the few-shot prefix between calls (for one model at a time).
    Returns, per item and option, (sum log-prob, number of tokens, whether greedy decoding picks it).
    """
    if reuse_cache and _mask_style(model) is not None:
        return _score_packed(model, tokenizer, contexts, continuations, prefix)
    return _score_plain(model, tokenizer, contexts, continuations)


def _gather(logits: torch.Tensor, targets: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Log-probabilities of `targets` under `logits`, and whether each target is the argmax."""
    logp = torch.log_softmax(logits.float(), dim=-1)
    picked = logp.gather(-1, targets.unsqueeze(-1)).squeeze(-1)
    greedy = logp.argmax(-1) == targets
    return picked, greedy


def _config(model):
    return getattr(model, "config", None)


def _mask_style(model) -> str | None:
    """'bool' or 'float': the kind of 4D mask the model's attention takes (by the mask function its
    implementation is registered with, so training's packed SDPA counts as SDPA); None where a custom
    mask cannot be passed (flash attention, flex)."""
    from transformers.masking_utils import ALL_MASK_ATTENTION_FUNCTIONS, eager_mask, sdpa_mask

    impl = getattr(_config(model), "_attn_implementation", None) or "eager"
    maker = ALL_MASK_ATTENTION_FUNCTIONS.get(impl)
    return "bool" if maker is sdpa_mask else "float" if maker is eager_mask else None


def _shared_prefix(contexts: Sequence[list[int]]) -> int:
    """Length of the token prefix every context shares, keeping at least one own token per context."""
    if len(contexts) < 2:
        return 0
    first, n = contexts[0], min(len(c) for c in contexts) - 1
    for ctx in contexts[1:]:
        k = 0
        while k < n and ctx[k] == first[k]:
            k += 1
        n = k
    return n if n >= MIN_SHARED_PREFIX else 0


def _prefix_cache(model, contexts, memo: SharedPrefix | None):
    """(length of the prefix every context shares, its KV cache copied once per context) or (0, None)."""
    if memo is not None:
        memo.bind(model)
    if memo is None or not memo.covers(contexts):
        # With a memo, the new prefix is also common to the old one: a first batch whose items happen
        # to share a word after the shots shrinks to the shots at the first batch that differs.
        remembered = [memo.tokens + [-1]] if memo is not None and memo.tokens else []  # -1: never a token
        shared = _shared_prefix([*contexts, *remembered])
        if not shared:
            return 0, None
        # A plain DynamicCache keeps every key, also for sliding-window layers: the window is applied
        # by the mask, so one cache layout serves every layer type.
        from transformers import DynamicCache

        cache = DynamicCache()
        device = next(model.parameters()).device
        model(input_ids=torch.tensor([contexts[0][:shared]], device=device), cache=cache, use_cache=True,
              logits_to_keep=1)
        if memo is None:
            cache.batch_repeat_interleave(len(contexts))
            return shared, cache
        memo.tokens, memo.cache = list(contexts[0][:shared]), cache
    cache = copy.deepcopy(memo.cache)  # the forward pass appends to the cache it is given
    cache.batch_repeat_interleave(len(contexts))
    return len(memo.tokens), cache


def _score_packed(model, tokenizer, contexts, continuations, memo):
    device = next(model.parameters()).device
    batch = len(contexts)
    shared, cache = _prefix_cache(model, contexts, memo)

    # A row is [left padding | own context | option 1 | option 2 | ...]: right-aligned, so rows of
    # different context and option lengths pad only to the longest whole row. An option of n tokens
    # feeds its first n-1 (the last context token predicts its first token).
    own = [ctx[shared:] for ctx in contexts]
    fed = [sum(len(c) - 1 for c in opts) for opts in continuations]
    width = max(len(c) + n for c, n in zip(own, fed, strict=True))
    keep = max(fed) + 1  # logits only for the last `keep` columns: they hold every answer prediction
    pad = _pad_id(tokenizer)
    ids = torch.full((batch, width), pad, dtype=torch.long)
    pos = torch.zeros((batch, width), dtype=torch.long)
    segment = torch.full((batch, width), -1, dtype=torch.long)  # -1 padding, 0 context, j+1 option j
    targets = torch.zeros((batch, keep), dtype=torch.long)
    last_ctx = []  # per row, the kept column of the last context token
    for row, (ctx, opts) in enumerate(zip(own, continuations, strict=True)):
        col = width - len(ctx) - fed[row]
        ids[row, col:col + len(ctx)] = torch.tensor(ctx)
        pos[row, col:col + len(ctx)] = torch.arange(shared, shared + len(ctx))
        segment[row, col:col + len(ctx)] = 0
        col, after = col + len(ctx), shared + len(ctx)
        last_ctx.append(keep - 1 - fed[row])
        for j, cont in enumerate(opts):
            n = len(cont) - 1
            ids[row, col:col + n] = torch.tensor(cont[:-1])
            pos[row, col:col + n] = torch.arange(after, after + n)
            segment[row, col:col + n] = j + 1
            kept = col - (width - keep)
            targets[row, kept:kept + n] = torch.tensor(cont[1:])
            col += n
    mask = _attention_mask(model, pos, segment, shared)
    out = model(input_ids=ids.to(device), position_ids=pos.to(device), attention_mask=_to(mask, device),
                cache=cache, use_cache=cache is not None, logits_to_keep=keep)
    logp, greedy = (t.cpu() for t in _gather(out.logits, targets.to(device)))
    # The last context column predicts every option's first token.
    rows = torch.arange(batch, device=out.logits.device)
    first_logp = torch.log_softmax(out.logits[rows, torch.tensor(last_ctx, device=rows.device)].float(), -1).cpu()
    first_best = first_logp.argmax(-1)
    sums, picks = [], []
    for row, opts in enumerate(continuations):
        col = last_ctx[row] + 1
        for cont in opts:
            n = len(cont) - 1
            sums.append(float(first_logp[row, cont[0]]) + float(logp[row, col:col + n].sum()))
            picks.append(int(first_best[row]) == cont[0] and bool(greedy[row, col:col + n].all()))
            col += n
    return _regroup(continuations, sums, picks)


def _to(mask, device):
    return {k: v.to(device) for k, v in mask.items()} if isinstance(mask, dict) else mask.to(device)


def _attention_mask(model, pos: torch.Tensor, segment: torch.Tensor, shared: int):
    """Who may attend to whom: (batch, 1, width, shared + width), or one dict entry per layer type.

    A token sees the shared prefix, its own context, and, if it belongs to an option, the earlier
    tokens of that same option; never padding or the other options. Padding sees only itself, so no
    softmax row is empty. Sliding-window layers also drop keys `window` or more positions back.
    """
    batch, width = segment.shape
    q_seg, k_seg = segment[:, :, None], segment[:, None, :]
    q_pos, k_pos = pos[:, :, None], pos[:, None, :]
    own = (k_seg >= 0) & (q_seg >= 0) & ((k_seg == 0) | (k_seg == q_seg)) & (k_pos <= q_pos)
    own |= torch.eye(width, dtype=torch.bool).expand(batch, width, width)
    prefix = (q_seg >= 0).expand(batch, width, shared)
    prefix_pos = torch.arange(shared)[None, None, :]

    def build(window: int | None) -> torch.Tensor:
        keep_own, keep_prefix = own, prefix
        if window:
            keep_own = own & ((q_pos - k_pos < window) | torch.eye(width, dtype=torch.bool))
            keep_prefix = prefix & (q_pos - prefix_pos < window)
        allowed = torch.cat([keep_prefix, keep_own], dim=-1)[:, None]
        if _mask_style(model) == "bool":
            return allowed
        # the activations' dtype (a 4-bit model's first parameters are packed integers)
        dtype = next(p.dtype for p in model.parameters() if p.dtype.is_floating_point)
        return torch.zeros(allowed.shape, dtype=dtype).masked_fill(~allowed, torch.finfo(dtype).min)

    config = _config(model)
    window = getattr(config, "sliding_window", None)
    layer_types = set(getattr(config, "layer_types", None) or ())
    if "sliding_attention" in layer_types:  # Gemma 3, Qwen2 with windows: one mask per layer type
        return {"full_attention": build(None), "sliding_attention": build(window)}
    if window and not layer_types:  # Mistral: every layer uses the window
        return build(window)
    return build(None)


def _score_plain(model, tokenizer, contexts, continuations):
    device = next(model.parameters()).device
    pad = _pad_id(tokenizer)
    seqs, spans = [], []
    for ctx, opts in zip(contexts, continuations, strict=True):
        for cont in opts:
            seqs.append((ctx + cont)[:-1])
            spans.append((len(ctx) - 1, cont))
    width = max(len(s) for s in seqs)
    ids = torch.full((len(seqs), width), pad, dtype=torch.long)
    mask = torch.zeros((len(seqs), width), dtype=torch.long)
    for row, seq in enumerate(seqs):
        ids[row, :len(seq)] = torch.tensor(seq)
        mask[row, :len(seq)] = 1
    logits = model(input_ids=ids.to(device), attention_mask=mask.to(device)).logits
    sums, greedy = [], []
    for row, (start, cont) in enumerate(spans):
        lp, gr = _gather(logits[row, start:start + len(cont)], torch.tensor(cont, device=device))
        sums.append(float(lp.sum()))
        greedy.append(bool(gr.all()))
    return _regroup(continuations, sums, greedy)


def _regroup(continuations, sums: list[float], greedy: list[bool]) -> list[list[tuple[float, int, bool]]]:
    result, k = [], 0
    for opts in continuations:
        result.append([(sums[k + j], len(cont), bool(greedy[k + j])) for j, cont in enumerate(opts)])
        k += len(opts)
    return result
