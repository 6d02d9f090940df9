"""generate / stream / generate_batch on tiny models: every strategy, stops, eos, streaming, cancel, context."""

from __future__ import annotations

import dataclasses
import threading

import pytest

from amauta.chat import generate as gen
from amauta.chat.decoding import STRATEGIES, GenerationSettings
from amauta.core.errors import ContextTooLongError

MESSAGES = [{"role": "system", "content": "Responde en español."},
            {"role": "user", "content": "¿Cuál es la tarifa del IVA en Ecuador?"}]


def settings(strategy="greedy", **kw):
    return GenerationSettings(strategy=strategy, max_new_tokens=kw.pop("max_new_tokens", 12), seed=0, **kw)


def with_profile(loaded, **changes):
    """The same model under a profile with other eos tokens / stop strings / context."""
    return dataclasses.replace(loaded, profile=loaded.profile.model_copy(update=changes))


@pytest.mark.parametrize("arch", ["llama", "mistral", "falcon", "gemma3"])
@pytest.mark.parametrize("strategy", STRATEGIES)
def test_every_strategy_runs_and_stream_matches(tiny, arch, strategy):
    loaded = with_profile(tiny(arch), eos_tokens=[], stop_strings=[])
    s = settings(strategy)
    result = gen.generate(loaded, MESSAGES, s)
    assert 1 <= result.new_tokens <= 12 and result.finish_reason in ("stop", "length")
    assert result.prompt_tokens == gen.encode_prompt(loaded, MESSAGES).shape[1]
    assert "".join(gen.stream(loaded, MESSAGES, s)) == result.text
    assert result.seconds > 0 and result.tokens_per_second > 0


def test_greedy_matches_transformers_generate(tiny):
    loaded = with_profile(tiny("llama"), eos_tokens=[])
    ids = gen.encode_prompt(loaded, MESSAGES)
    ours = gen.generate(loaded, MESSAGES, settings("greedy", max_new_tokens=10)).token_ids
    theirs = loaded.model.generate(ids, do_sample=False, max_new_tokens=10, eos_token_id=2)[0, ids.shape[1]:].tolist()
    assert ours == theirs[:len(ours)]


def test_sampling_is_repeatable_with_a_seed_and_varies_without(tiny):
    loaded = tiny("mistral")
    a = gen.generate(loaded, MESSAGES, settings("sampling", temperature=1.5))
    b = gen.generate(loaded, MESSAGES, settings("sampling", temperature=1.5))
    assert a.token_ids == b.token_ids
    draws = {tuple(gen.generate(loaded, MESSAGES, settings("sampling", temperature=1.5).model_copy(
        update={"seed": seed})).token_ids) for seed in range(4)}
    assert len(draws) > 1


def test_sampling_at_temperature_zero_is_greedy(tiny):
    loaded = tiny("llama")
    assert gen.generate(loaded, MESSAGES, settings("sampling", temperature=0.0)).token_ids == \
        gen.generate(loaded, MESSAGES, settings("greedy")).token_ids


def test_stop_string_cuts_text_and_is_never_streamed(tiny):
    loaded = with_profile(tiny("llama"), eos_tokens=[], stop_strings=[])
    free = gen.generate(loaded, MESSAGES, settings("contrastive", max_new_tokens=16)).text
    stop = free[len(free) // 2:len(free) // 2 + 2]
    assert stop.strip()
    cut = gen.generate(loaded, MESSAGES, settings("contrastive", max_new_tokens=16, stop=[stop]))
    assert cut.finish_reason == "stop" and cut.text == free[:free.index(stop)]
    deltas = list(gen.stream(loaded, MESSAGES, settings("contrastive", max_new_tokens=16, stop=[stop])))
    assert "".join(deltas) == cut.text
    # The profile's stop strings apply as well as the caller's.
    profiled = gen.generate(with_profile(loaded, stop_strings=[stop]), MESSAGES, settings("contrastive", max_new_tokens=16))
    assert profiled.text == cut.text


def test_profile_eos_token_ends_the_answer(tiny):
    loaded = with_profile(tiny("falcon"), eos_tokens=[], stop_strings=[])
    free = gen.generate(loaded, MESSAGES, settings("greedy", max_new_tokens=8))
    token = loaded.tokenizer.convert_ids_to_tokens(free.token_ids[2])
    ended = gen.generate(with_profile(loaded, eos_tokens=[token]), MESSAGES, settings("greedy", max_new_tokens=8))
    first = free.token_ids.index(free.token_ids[2])
    assert ended.finish_reason == "stop" and ended.token_ids == free.token_ids[:first + 1]


def test_streaming_never_splits_a_multibyte_character(tiny, monkeypatch):
    loaded = with_profile(tiny("llama"), eos_tokens=[], stop_strings=[])
    tok = loaded.tokenizer
    # "ñá" as four byte-level tokens (each a lone UTF-8 byte), between plain words.
    pieces = ["h", "o", "Ã", "±", "Ã", "¡", "l", "a"]
    ids = [tok.convert_tokens_to_ids(p) for p in pieces]
    assert tok.decode(ids) == "hoñála"
    monkeypatch.setattr(gen, "token_steps", lambda *a, **k: iter(ids))
    deltas = list(gen.stream(loaded, "x", settings("greedy", max_new_tokens=len(ids))))
    assert "".join(deltas) == "hoñála"
    assert all("\ufffd" not in d for d in deltas) and "ñ" in deltas and "á" in deltas


def _half_character_ids(tokenizer) -> list[int]:
    """ "ho" and the first of the two byte-level tokens of "ñ": an answer cut there ends inside a character."""
    ids = [tokenizer.convert_tokens_to_ids(p) for p in ["h", "o", "Ã"]]
    assert tokenizer.decode(ids) == "ho\ufffd"
    return ids


def test_an_answer_cut_inside_a_multibyte_character_drops_the_half(tiny, monkeypatch):
    loaded = with_profile(tiny("llama"), eos_tokens=[], stop_strings=[])
    ids = _half_character_ids(loaded.tokenizer)
    monkeypatch.setattr(gen, "token_steps", lambda *a, **k: iter(ids))
    run = gen.Generation(loaded, "x", settings("greedy", max_new_tokens=len(ids)))
    deltas = list(run)
    assert "".join(deltas) == run.result.text == "ho"
    assert run.result.finish_reason == "length" and run.result.token_ids == ids


def test_a_batch_answer_cut_inside_a_multibyte_character_drops_the_half(tiny, monkeypatch):
    import torch

    loaded = with_profile(tiny("llama"), eos_tokens=[], stop_strings=[])
    ids = _half_character_ids(loaded.tokenizer)

    def fixed_answers(input_ids, **kwargs):  # every row answers the same three tokens
        return torch.cat([input_ids, torch.tensor([ids] * input_ids.shape[0])], dim=1)

    monkeypatch.setattr(loaded.model, "generate", fixed_answers)
    results = gen.generate_batch(loaded, ["x", "una pregunta"], settings("greedy", max_new_tokens=3), batch_size=2)
    assert [r.text for r in results] == ["ho", "ho"]


def test_safe_length_holds_back_partial_stops():
    assert gen._safe_length("hola\nUs", ["\nUser:"]) == 4
    assert gen._safe_length("hola \ufffd", []) == 5
    assert gen._safe_length("hola", ["\nUser:"]) == 4


def test_stop_event_cancels(tiny):
    loaded = with_profile(tiny("gemma3"), eos_tokens=[], stop_strings=[])
    event = threading.Event()
    run = gen.Generation(loaded, MESSAGES, settings("contrastive", max_new_tokens=40), stop_event=event)
    for _ in run:
        event.set()
    assert run.result.finish_reason == "cancelled" and run.result.new_tokens < 40
    event.set()
    beam = gen.generate(loaded, MESSAGES, settings("beam", max_new_tokens=40), stop_event=event)
    assert beam.finish_reason == "cancelled" and beam.new_tokens < 40


def test_context_window(tiny):
    loaded = with_profile(tiny("llama"), context_length=40, eos_tokens=[])
    short = [{"role": "user", "content": "Hola"}]
    n = gen.encode_prompt(loaded, short).shape[1]
    result = gen.generate(loaded, short, settings("greedy", max_new_tokens=100))
    assert result.new_tokens == 40 - n and result.finish_reason == "length"
    with pytest.raises(ContextTooLongError, match="the prompt has .* tokens but the model's context holds 40") as info:
        gen.generate(loaded, "palabra " * 60, settings("greedy"))
    assert info.value.context == 40 and info.value.prompt_tokens > 40  # the numbers, for callers (serve: a 400)


def test_raw_prompt_skips_the_template(tiny):
    loaded = tiny("llama")
    ids = gen.encode_prompt(loaded, "Hola")[0].tolist()
    assert loaded.tokenizer.decode(ids, skip_special_tokens=True) == "Hola"
    assert "[INST]" in loaded.tokenizer.decode(gen.encode_prompt(loaded, [{"role": "user", "content": "Hola"}])[0])


@pytest.mark.parametrize("strategy", ["greedy", "beam", "contrastive"])
def test_batch_equals_one_by_one(tiny, strategy):
    loaded = with_profile(tiny("mistral"), eos_tokens=[], stop_strings=[])
    prompts = ["Hola", MESSAGES, "¿Cuál es la tarifa del IVA? La declaración del impuesto a la renta"]
    batched = gen.generate_batch(loaded, prompts, settings(strategy, max_new_tokens=6), batch_size=8)
    single = [gen.generate(loaded, p, settings(strategy, max_new_tokens=6)) for p in prompts]
    assert [r.token_ids for r in batched] == [r.token_ids for r in single]
    assert [r.text for r in batched] == [r.text for r in single]
