"""Contrastive search: ours (KV cache, candidates batched) equals a naive re-implementation on every architecture.

Ours is run the way every caller runs it: `generate` with strategy contrastive.
"""

from __future__ import annotations

import dataclasses

import pytest
import torch

from amauta.chat.contrastive import rank_candidates
from amauta.chat.decoding import GenerationSettings
from amauta.chat.generate import generate

PROMPT = "¿Cuál es la tarifa del IVA? La declaración se presenta cada año."


def contrastive_ids(loaded, prompt: str, *, top_k: int = 4, alpha: float = 0.6, max_new_tokens: int,
                    eos_tokens: list[str] | None = None) -> list[int]:
    """The token ids `generate` gives with contrastive search: past eos and with no stop strings unless
    `eos_tokens` are given (then only those, with the tokenizer's own eos, end the answer)."""
    loaded = dataclasses.replace(loaded, profile=loaded.profile.model_copy(
        update={"eos_tokens": eos_tokens or [], "stop_strings": []}))
    settings = GenerationSettings(strategy="contrastive", top_k=top_k, penalty_alpha=alpha,
                                  max_new_tokens=max_new_tokens, ignore_eos=eos_tokens is None)
    return generate(loaded, prompt, settings).token_ids


@torch.no_grad()
def naive_contrastive(model, ids: torch.Tensor, top_k: int, alpha: float, steps: int) -> list[int]:
    """Su et al. (2022) read literally: recompute the whole sequence for the context and for every candidate."""
    out = []
    for _ in range(steps):
        full = model(input_ids=ids, output_hidden_states=True)
        context = full.hidden_states[-1][0]  # [S, H]
        probs = torch.softmax(full.logits[0, -1].float(), dim=-1)
        top_probs, top_ids = probs.topk(top_k)
        scores = []
        for p, token in zip(top_probs, top_ids, strict=True):
            h = model(input_ids=torch.cat([ids, token.view(1, 1)], dim=1), output_hidden_states=True).hidden_states[-1][0, -1]
            penalty = torch.nn.functional.cosine_similarity(context, h[None], dim=-1).max()
            scores.append(float((1 - alpha) * p - alpha * penalty))
        best = int(top_ids[max(range(top_k), key=scores.__getitem__)])
        out.append(best)
        ids = torch.cat([ids, torch.tensor([[best]])], dim=1)
    return out


@pytest.mark.parametrize("arch, top_k, alpha", [("llama", 4, 0.6), ("mistral", 4, 0.6), ("falcon", 4, 0.6),
                                                  ("gemma3", 4, 0.6), ("llama", 3, 0.3)])
def test_cached_batched_equals_naive(tiny, arch, top_k, alpha):
    loaded = tiny(arch)
    ids = loaded.tokenizer(PROMPT, return_tensors="pt").input_ids
    ours = contrastive_ids(loaded, PROMPT, top_k=top_k, alpha=alpha, max_new_tokens=12)
    assert ours == naive_contrastive(loaded.model, ids, top_k, alpha, 12)
    assert len(ours) == 12


def test_gemma3_past_its_sliding_window(tiny):
    # tiny-gemma3's sliding window is 64 tokens: the cached path must stay right once it is full.
    loaded = tiny("gemma3")
    ids = loaded.tokenizer(PROMPT * 6, return_tensors="pt").input_ids
    assert ids.shape[1] > 64
    assert contrastive_ids(loaded, PROMPT * 6, max_new_tokens=8) == naive_contrastive(loaded.model, ids, 4, 0.6, 8)


def test_alpha_zero_is_greedy(tiny):
    loaded = tiny("llama")
    ids = loaded.tokenizer(PROMPT, return_tensors="pt").input_ids
    ours = contrastive_ids(loaded, PROMPT, top_k=4, alpha=0.0, max_new_tokens=10)
    greedy = loaded.model.generate(ids, attention_mask=torch.ones_like(ids), do_sample=False, max_new_tokens=10,
                                   min_new_tokens=10)[0, ids.shape[1]:].tolist()
    assert ours == greedy


def test_stops_at_eos(tiny):
    loaded = tiny("mistral")
    free = contrastive_ids(loaded, PROMPT, max_new_tokens=10)
    assert loaded.tokenizer.eos_token_id not in free[:4]  # so the token made an eos is what stops it
    eos = loaded.tokenizer.convert_ids_to_tokens(free[3])
    stopped = contrastive_ids(loaded, PROMPT, max_new_tokens=10, eos_tokens=[eos])
    assert stopped == free[:free.index(free[3]) + 1]


def test_rank_prefers_confident_and_novel():
    context = torch.tensor([[[1.0, 0.0], [0.0, 1.0]]])
    candidates = torch.tensor([[[1.0, 0.0]], [[1.0, -1.0]]])  # the first repeats context token 0 exactly
    probs = torch.tensor([[0.5, 0.4]])
    assert rank_candidates(context, candidates, probs, penalty_alpha=0.6) == 1  # the novel one wins
    assert rank_candidates(context, candidates, probs, penalty_alpha=0.0) == 0  # alpha 0: the likeliest
