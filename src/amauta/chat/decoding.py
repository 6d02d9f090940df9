"""Decoding settings: which strategy picks the next token, and the knobs each strategy reads.

`GenerationSettings` is the one object every caller passes to `amauta.chat.generate` (the terminal chat,
the server, the evaluation runners). `from_profile` starts from a registry profile's defaults (the thesis
found contrastive search best for every model, so most profiles default to it) and applies overrides.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field

from amauta.core.config import StageConfig
from amauta.core.errors import AmautaError, did_you_mean

Strategy = Literal["greedy", "sampling", "beam", "contrastive"]
STRATEGIES: tuple[str, ...] = ("greedy", "sampling", "beam", "contrastive")

# top_k means different things: the candidate pool of sampling, and the number of candidates contrastive
# search scores (4 in Su et al. 2022 and in the thesis). When unset, each strategy gets its usual value.
DEFAULT_TOP_K = {"sampling": 50, "contrastive": 4}


class GenerationSettings(StageConfig):
    """How to decode one answer."""

    strategy: Strategy = Field("greedy", description="greedy, sampling, beam or contrastive.")
    max_new_tokens: int = Field(256, ge=1, description="Most tokens to generate after the prompt.")
    temperature: float = Field(0.7, ge=0, description="Sampling only: divides the logits (lower = safer; 0 = greedy).")
    top_k: int | None = Field(None, ge=1, description="Sampling: keep the k likeliest tokens (default 50); "
                              "contrastive: candidates scored per step (default 4).")
    top_p: float = Field(1.0, gt=0, le=1, description="Sampling only: nucleus mass to keep (1.0 = off).")
    repetition_penalty: float = Field(1.0, gt=0, description="Divides logits of tokens already seen (1.0 = off).")
    num_beams: int = Field(4, ge=1, description="Beam search only: beams kept per step.")
    penalty_alpha: float = Field(0.6, ge=0, le=1, description="Contrastive only: weight of the degeneration penalty.")
    stop: list[str] = Field(default_factory=list, description="Extra stop strings (the profile's are always added).")
    seed: int | None = Field(None, description="Sampling only: makes the draw repeatable.")
    ignore_eos: bool = Field(False, description="Generate exactly max_new_tokens, past eos tokens (benchmarks).")

    @property
    def samples(self) -> bool:
        """Whether tokens are drawn at random (sampling at a temperature above 0)."""
        return self.strategy == "sampling" and self.temperature > 0

    @property
    def effective_top_k(self) -> int:
        """top_k, or the strategy's usual value when it was not set."""
        return self.top_k if self.top_k is not None else DEFAULT_TOP_K.get(self.strategy, 50)

    @classmethod
    def from_profile(cls, profile: Any, **overrides: Any) -> GenerationSettings:
        """The profile's default decoding (its `generation` block), with `overrides` (None = keep) on top."""
        defaults = getattr(profile, "generation", None) or {}
        if not isinstance(defaults, dict):  # a pydantic model or dataclass
            defaults = defaults.model_dump() if hasattr(defaults, "model_dump") else dict(vars(defaults))
        values = {k: v for k, v in defaults.items() if k in cls.model_fields and v is not None}
        for key, value in overrides.items():
            if key not in cls.model_fields:
                raise AmautaError(f"unknown generation setting '{key}'{did_you_mean(key, cls.model_fields)}")
            if value is not None:
                values[key] = value
        strategy = values.get("strategy")
        if strategy is not None and strategy not in STRATEGIES:
            raise AmautaError(f"unknown decoding strategy '{strategy}'{did_you_mean(str(strategy), STRATEGIES)}; "
                              f"choose one of {', '.join(STRATEGIES)}")
        # A profile's top_k is tuned for its default strategy; another strategy chosen by the user keeps its own.
        if "strategy" in overrides and overrides["strategy"] != defaults.get("strategy") and "top_k" not in overrides:
            values.pop("top_k", None)
        return cls.model_validate(values)


def check_strategy(name: str) -> str:
    """`name` if it is a strategy, else a one-line error with the closest ones."""
    if name not in STRATEGIES:
        raise AmautaError(f"unknown decoding strategy '{name}'{did_you_mean(name, STRATEGIES)}; "
                          f"choose one of {', '.join(STRATEGIES)}")
    return name


def logits_processors(settings: GenerationSettings):
    """transformers' logits processors for `settings` (what `generate()` would build for the same knobs).

    Greedy and contrastive only get the repetition penalty; sampling adds temperature, top-k and top-p, in
    the order transformers applies them.
    """
    from transformers import (
        LogitsProcessorList,
        RepetitionPenaltyLogitsProcessor,
        TemperatureLogitsWarper,
        TopKLogitsWarper,
        TopPLogitsWarper,
    )

    processors = LogitsProcessorList()
    if settings.repetition_penalty != 1.0:
        processors.append(RepetitionPenaltyLogitsProcessor(settings.repetition_penalty))
    if settings.samples:
        if settings.temperature != 1.0:
            processors.append(TemperatureLogitsWarper(settings.temperature))
        processors.append(TopKLogitsWarper(settings.effective_top_k))
        if settings.top_p < 1.0:
            processors.append(TopPLogitsWarper(settings.top_p))
    return processors
