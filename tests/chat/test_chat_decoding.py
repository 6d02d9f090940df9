"""GenerationSettings: per-profile defaults, overrides, validation."""

from __future__ import annotations

import pytest

from amauta.chat.decoding import GenerationSettings, check_strategy, logits_processors
from amauta.core.errors import AmautaError
from amauta.models.registry import get_profile


def test_from_profile_takes_the_profile_defaults():
    s = GenerationSettings.from_profile(get_profile("smollm2-135m-instruct"))
    assert (s.strategy, s.effective_top_k, s.penalty_alpha, s.max_new_tokens) == ("contrastive", 4, 0.6, 256)


def test_overrides_and_strategy_defaults():
    profile = get_profile("falcon-7b-instruct")
    s = GenerationSettings.from_profile(profile, strategy="sampling", max_new_tokens=10, top_p=None)
    assert s.strategy == "sampling" and s.max_new_tokens == 10
    assert s.effective_top_k == 50  # the profile's top_k 4 is contrastive's, not sampling's
    assert GenerationSettings.from_profile(profile, strategy="sampling", top_k=7).effective_top_k == 7
    assert GenerationSettings(strategy="contrastive").effective_top_k == 4


def test_bad_settings_are_one_line_errors():
    profile = get_profile("smollm2-135m-instruct")
    with pytest.raises(AmautaError, match="unknown decoding strategy 'gredy' \\(did you mean: greedy"):
        GenerationSettings.from_profile(profile, strategy="gredy")
    with pytest.raises(AmautaError, match="unknown generation setting 'temperatura'"):
        GenerationSettings.from_profile(profile, temperatura=0.5)
    with pytest.raises(AmautaError, match="choose one of greedy, sampling, beam, contrastive"):
        check_strategy("nucleus")


def test_logits_processors_follow_the_strategy():
    names = lambda s: [type(p).__name__ for p in logits_processors(s)]  # noqa: E731
    assert names(GenerationSettings(strategy="greedy")) == []
    assert names(GenerationSettings(strategy="contrastive", repetition_penalty=1.2)) == ["RepetitionPenaltyLogitsProcessor"]
    assert names(GenerationSettings(strategy="sampling", temperature=0.5, top_p=0.9)) == [
        "TemperatureLogitsWarper", "TopKLogitsWarper", "TopPLogitsWarper"]
