"""Per-example attention for packed rows gives the same loss and gradients as the block-diagonal mask."""

from __future__ import annotations

import pytest
import torch

from amauta.train.recipe import PACKED_ATTENTION, answer_loss, pack, pad, use_packed_attention
from conftest import conversations


def _examples(loaded, n):
    from amauta.data.tokenize import tokenize_messages

    out = []
    for messages in conversations(n):
        enc = tokenize_messages(loaded.tokenizer, loaded.profile, messages)
        out.append({"input_ids": list(map(int, enc["input_ids"])), "labels": list(map(int, enc["labels"]))})
    return out


def _loss_and_grads(model, batch):
    model.zero_grad(set_to_none=True)
    loss = answer_loss(model, batch, 1.0)
    loss.backward()
    return loss.item(), [p.grad.clone() for p in model.parameters() if p.grad is not None]


@pytest.mark.parametrize("arch", ["llama", "mistral", "falcon", "gemma3"])
def test_packed_attention_matches_the_mask(arch):
    from amauta.models.load import load_model

    loaded = load_model(f"tiny-{arch}")  # a fresh model: the switch below must not leak into other tests
    model, cpu = loaded.model, torch.device("cpu")
    model.config.use_cache = False
    examples = _examples(loaded, 5)
    masked = _loss_and_grads(model, pack(examples, cpu))
    switched = use_packed_attention(model)
    if arch != "falcon":  # transformers' Falcon has its own attention code; it keeps its mask
        assert switched and model.config._attn_implementation == PACKED_ATTENTION
    packed = _loss_and_grads(model, pack(examples, cpu))
    assert packed[0] == pytest.approx(masked[0], rel=1e-5)
    assert len(packed[1]) == len(masked[1]) > 0
    for got, want in zip(packed[1], masked[1], strict=True):
        torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-5)
    # Rows without example bounds (padded batches) still get their mask.
    with torch.no_grad():
        padded = model(**pad(examples, loaded.tokenizer.pad_token_id, cpu), num_items_in_batch=1).loss.item()
        alone = sum(answer_loss(model, pack([ex], cpu), 1.0).item() for ex in examples)
    assert padded == pytest.approx(alone, rel=1e-5)
