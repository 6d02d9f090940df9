"""Contrastive search (Su et al. 2022, "A Contrastive Framework for Neural Text Generation"), our own.

transformers 5.x moved contrastive search out of its core (it would fetch it from the Hub at run time,
which fails offline), and the thesis found it the best strategy for every model, so Amauta carries it.

At each step the model's k likeliest next tokens are candidates. Each candidate is scored by

    (1 - alpha) * p(candidate)  -  alpha * max_j cos(h_candidate, h_j)

where h_j are the last-layer hidden states of every token so far (prompt included): a candidate whose
representation repeats something already said is penalised, which keeps greedy's coherence without its
loops. The k candidates run as **one batched forward step over the KV cache expanded k times** (no
recomputation of the prefix); the selected row of the cache is kept. Arithmetic follows transformers
4.55's `_contrastive_search` step for step, so the token ids match it exactly
(`tests/chat/fixtures/contrastive_reference.json`, made by `scripts/contrastive_reference.py`).
"""

from __future__ import annotations

from collections.abc import Iterator

import torch


def rank_candidates(context_hidden: torch.Tensor, candidate_hidden: torch.Tensor, top_probs: torch.Tensor,
                    penalty_alpha: float) -> int:
    """Index of the best of k candidates.

    context_hidden: [1, S, H] last-layer hidden states of the tokens so far.
    candidate_hidden: [k, 1, H] last-layer hidden state of each candidate.
    top_probs: [1, k] the model's probability of each candidate.
    penalty_alpha: weight of the degeneration penalty (0 = greedy).
    """
    k = candidate_hidden.shape[0]
    # Same operation order as transformers' `_ranking_fast` (normalise, batched matmul, max): equal bits.
    context = context_hidden.expand(k, -1, -1)
    norm_context = context / context.norm(dim=2, keepdim=True)
    norm_next = candidate_hidden / candidate_hidden.norm(dim=2, keepdim=True)
    cosine = torch.matmul(norm_context, norm_next.transpose(1, 2)).squeeze(-1)  # [k, S]
    degeneration_penalty, _ = torch.max(cosine, dim=-1)  # [k]
    score = (1.0 - penalty_alpha) * top_probs.view(-1) - penalty_alpha * degeneration_penalty
    _, selected = score.view(1, k).max(dim=-1)
    return int(selected[0])


def _expand_cache(cache, k: int) -> None:
    """Make every layer of the cache k rows tall without copying (the next forward's concat copies once)."""
    for layer in cache.layers:
        if getattr(layer, "keys", None) is not None and layer.keys.numel():
            layer.keys = layer.keys.expand(k, *layer.keys.shape[1:])
            layer.values = layer.values.expand(k, *layer.values.shape[1:])


def _select_cache(cache, row: int) -> None:
    """Keep only the selected candidate's row of every layer (a view: no copy)."""
    for layer in cache.layers:
        if getattr(layer, "keys", None) is not None and layer.keys.numel():
            layer.keys = layer.keys[row:row + 1]
            layer.values = layer.values[row:row + 1]


@torch.inference_mode()
def contrastive_steps(model, input_ids: torch.Tensor, *, top_k: int = 4, penalty_alpha: float = 0.6,
                      max_new_tokens: int = 256, logits_processor=None) -> Iterator[int]:
    """Yield contrastive search's next token ids, one per step, until `max_new_tokens` or the caller stops.

    model: a transformers causal LM (peft-wrapped is fine) whose cache is a `DynamicCache`.
    input_ids: [1, S] prompt ids on the model's device (batch 1).
    top_k: candidates scored per step.
    penalty_alpha: weight of the degeneration penalty (0 = greedy search).
    max_new_tokens: most tokens to yield.
    logits_processor: optional transformers `LogitsProcessorList` (e.g. a repetition penalty).
    """
    from transformers import DynamicCache

    if input_ids.shape[0] != 1:
        raise ValueError("contrastive_steps decodes one sequence at a time (batch 1)")
    config = model.config.get_text_config() if hasattr(model.config, "get_text_config") else model.config
    cache = DynamicCache(config=config)
    # The prompt, once: its hidden states are the context every candidate is compared with.
    out = model(input_ids=input_ids, cache=cache, use_cache=True, output_hidden_states=True,
                logits_to_keep=1)
    context = out.hidden_states[-1]
    logits = out.logits[:, -1, :].to(dtype=torch.float32, copy=True)
    ids = input_ids
    del out
    for _ in range(max_new_tokens):
        scores = logits_processor(ids, logits) if logits_processor else logits
        probs = torch.nn.functional.softmax(scores, dim=-1)
        top_probs, top_ids = torch.topk(probs, dim=-1, k=top_k)
        # All k candidates in one forward step over the cache expanded to k rows.
        _expand_cache(cache, top_k)
        out = model(input_ids=top_ids.view(-1, 1), cache=cache, use_cache=True,
                    output_hidden_states=True, logits_to_keep=1)
        candidate_hidden = out.hidden_states[-1]  # [k, 1, H]
        row = rank_candidates(context, candidate_hidden, top_probs, penalty_alpha)
        _select_cache(cache, row)
        context = torch.cat([context, candidate_hidden[row:row + 1]], dim=1)
        logits = out.logits[row:row + 1, -1, :].float()
        token = top_ids[0, row].view(1, 1)
        ids = torch.cat([ids, token], dim=1)
        del out
        yield int(token)

