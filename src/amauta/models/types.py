"""What loading a model returns: the model, its tokenizer and the registry profile that describes it."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

Quantization = Literal["none", "8bit", "4bit"]
"""How the base weights are held: as they are, or 8-/4-bit through bitsandbytes (a CUDA GPU)."""
DType = Literal["auto", "float32", "bfloat16", "float16"]
"""The compute dtype; `auto` is bf16 on GPUs and bf16-capable CPUs, float32 otherwise."""
Device = Literal["auto", "cpu", "cuda"]
"""Where the model runs; `auto` is cuda when there is one."""

MODEL_INFO_FILE = "amauta_model.json"
"""Written beside exported weights: the profile, template and system prompt to talk to them with."""

if TYPE_CHECKING:
    from amauta.models.registry import Profile


@dataclass
class LoadedModel:
    """A ready-to-use model.

    model: a transformers causal LM (possibly wrapped by peft when an adapter is loaded).
    tokenizer: its tokenizer, with a pad token set.
    profile: the registry profile (template, stops, LoRA targets, defaults).
    source: where the weights came from (folder, GGUF file, hub id, or "tiny").
    extra: free-form facts (quantization, dtype, adapter path) recorded in manifests.
    """

    model: Any
    tokenizer: Any
    profile: Profile
    source: str | Path = ""
    extra: dict[str, Any] = field(default_factory=dict)
