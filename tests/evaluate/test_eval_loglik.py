"""The packed scorer (one row per item, shared few-shot prefix cached) gives the same log-likelihoods as scoring every option on its own."""

from __future__ import annotations

import pytest

from amauta.evaluate.loglik import SharedPrefix, _shared_prefix, encode_pair, score_continuations

CONTEXTS = [
    "Pasaje: El Servicio de Rentas Internas administra los impuestos en Ecuador.\nRespuesta:",
    "Pasaje: " + "La declaración del impuesto a la renta se presenta cada año. " * 5 + "\nRespuesta:",  # > sliding window
    "Hola, ¿cómo estás?\nRespuesta:",
]
OPTIONS = [" la opción B", " muy bien, gracias", " Ecuador", " 7"]


# Few-shot examples every context starts with: scored once per batch and shared through the KV cache.
SHOTS = "Pasaje: El IVA grava la venta de bienes.\nRespuesta: sí\n\n" * 6


def _encode(tok, prefix=""):
    contexts, continuations = [], []
    for context in (prefix + c for c in CONTEXTS):
        pairs = [encode_pair(tok, context, option) for option in OPTIONS]
        contexts.append(pairs[0][0])
        continuations.append([cont for _, cont in pairs])
    return contexts, continuations


@pytest.mark.parametrize("attention", ["sdpa", "eager"])
@pytest.mark.parametrize("prefix", ["", SHOTS], ids=["zero-shot", "shared-prefix"])
@pytest.mark.parametrize("arch", ["llama", "mistral", "falcon", "gemma3"])
def test_cached_scores_equal_plain_scores(tiny, arch, prefix, attention):
    loaded = tiny(arch)
    original = loaded.model.config._attn_implementation
    loaded.model.set_attn_implementation(attention)
    try:
        _check_packed_equals_plain(loaded, prefix)
    finally:
        loaded.model.set_attn_implementation(original)  # the tiny models are shared by the whole session


def _check_packed_equals_plain(loaded, prefix):
    contexts, continuations = _encode(loaded.tokenizer, prefix)
    if prefix:  # the shared part is long enough to be cached, and longer than gemma3's sliding window
        assert _shared_prefix(contexts) > 64
    cached = score_continuations(loaded.model, loaded.tokenizer, contexts, continuations, reuse_cache=True)
    plain = score_continuations(loaded.model, loaded.tokenizer, contexts, continuations, reuse_cache=False)
    # and each item alone (no padding at all): batching must not change a score
    alone = [score_continuations(loaded.model, loaded.tokenizer, [c], [o], reuse_cache=False)[0]
             for c, o in zip(contexts, continuations, strict=True)]
    for got, ref, single in zip(cached, plain, alone, strict=True):
        for (s1, n1, _), (s2, n2, _), (s3, _, _) in zip(got, ref, single, strict=True):
            assert n1 == n2
            assert s1 == pytest.approx(s2, abs=1e-4)
            assert s2 == pytest.approx(s3, abs=1e-4)
    assert any(n > 1 for item in cached for _, n, _ in item)  # the multi-token path ran


def test_encode_pair_moves_trailing_space_to_the_answer(tiny):
    tok = tiny("llama").tokenizer
    ctx, cont = encode_pair(tok, "Respuesta: ", "B")
    ctx2, cont2 = encode_pair(tok, "Respuesta:", " B")
    assert (ctx, cont) == (ctx2, cont2)
    assert tok.decode(cont) == " B"


@pytest.mark.parametrize("arch", ["llama", "gemma3"])
def test_shared_prefix_carries_the_shots_cache_across_batches(tiny, arch):
    loaded = tiny(arch)
    contexts, continuations = _encode(loaded.tokenizer, SHOTS)
    memo = SharedPrefix()
    first = score_continuations(loaded.model, loaded.tokenizer, contexts[:2], continuations[:2], prefix=memo)
    # both first contexts go on with "Pasaje:" after the shots, so the memo holds a little more than the shots
    assert memo.tokens and not memo.covers(contexts)
    second = score_continuations(loaded.model, loaded.tokenizer, contexts[1:], continuations[1:], prefix=memo)
    assert memo.covers(contexts)  # shrunk to what every context shares
    cached = memo.cache
    third = score_continuations(loaded.model, loaded.tokenizer, contexts[2:], continuations[2:], prefix=memo)
    assert memo.cache is cached  # a single item has no prefix of its own to find: the memo's serves
    plain = score_continuations(loaded.model, loaded.tokenizer, contexts, continuations, reuse_cache=False)
    for got, ref in zip(first + second[1:] + third, plain + plain[2:], strict=True):
        assert [s for s, _, _ in got] == pytest.approx([s for s, _, _ in ref], abs=1e-4)
    # a context without the prefix is scored on its own, and the memo keeps the shots
    other, _ = _encode(loaded.tokenizer)
    assert not memo.covers(other)


def test_training_packed_attention_still_gets_the_packed_scorer(tiny):
    """The forgetting guard scores the model mid-training, when it runs Amauta's packed SDPA."""
    from amauta.evaluate.loglik import _mask_style
    from amauta.train.recipe import use_packed_attention

    loaded = tiny("llama")
    contexts, continuations = _encode(loaded.tokenizer, SHOTS)
    before = score_continuations(loaded.model, loaded.tokenizer, contexts, continuations)
    original = loaded.model.config._attn_implementation
    assert use_packed_attention(loaded.model)
    try:
        assert _mask_style(loaded.model) == "bool"
        after = score_continuations(loaded.model, loaded.tokenizer, contexts, continuations)
    finally:
        loaded.model.set_attn_implementation(original)
    for got, ref in zip(after, before, strict=True):
        assert [s for s, _, _ in got] == pytest.approx([s for s, _, _ in ref], abs=1e-4)


def test_shared_prefix_starts_afresh_for_another_model(tiny):
    llama, mistral = tiny("llama"), tiny("mistral")
    contexts, continuations = _encode(llama.tokenizer, SHOTS)
    memo = SharedPrefix()
    score_continuations(llama.model, llama.tokenizer, contexts, continuations, prefix=memo)
    llama_cache = memo.cache
    got = score_continuations(mistral.model, mistral.tokenizer, contexts, continuations, prefix=memo)
    assert memo.cache is not llama_cache  # mistral's scores never use llama's keys and values
    plain = score_continuations(mistral.model, mistral.tokenizer, contexts, continuations, reuse_cache=False)
    for row, ref in zip(got, plain, strict=True):
        assert [s for s, _, _ in row] == pytest.approx([s for s, _, _ in ref], abs=1e-4)
