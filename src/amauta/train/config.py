"""The typed run config of `amauta train`, its presets, and how YAML plus CLI overrides become one.

A run config is a YAML file. It may start from a preset (`preset: thesis-mistral`) and change any key;
the preset's values fill in what the file leaves out. Every key is checked: a misspelt one is refused
with the closest valid name. `amauta train --list-presets` shows the shipped presets.
"""

from __future__ import annotations

import hashlib
import json
from importlib.resources import files
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import Field, ValidationInfo, field_validator, model_validator

from amauta.core.config import StageConfig, read_yaml, set_dotted, validate_config
from amauta.core.errors import AmautaError, did_you_mean
from amauta.models.types import DType, Quantization


class QuantizationConfig(StageConfig):
    """How the frozen base weights are stored (QLoRA = 4-bit here, LoRA on top)."""

    mode: Quantization = Field(
        "none", description="`4bit` (QLoRA, needs CUDA), `8bit`, or `none` (weights in `dtype`).")
    quant_type: Literal["nf4", "fp4"] = Field(
        "nf4", description="4-bit data type; NF4 is the QLoRA paper's (and the thesis's) choice.")
    double_quant: bool = Field(
        True, description="Quantize the quantization constants too (saves ~0.4 bit per weight).")
    compute_dtype: Literal["bfloat16", "float16", "float32"] = Field(
        "bfloat16", description="Data type the 4-bit weights are de-quantized to for each matrix product.")


class LoraConfig(StageConfig):
    """The low-rank adapter trained on top of the frozen base."""

    r: int = Field(16, gt=0, description="Rank of the update matrices.")
    alpha: float = Field(32, gt=0, description="Scale numerator: the update is multiplied by alpha / r.")
    dropout: float = Field(0.05, ge=0, lt=1, description="Dropout on the adapter's input.")
    targets: str | list[str] = Field(
        "attention", description="`attention` or `all-linear` (the model profile's presets), or a list of "
                                 "module names.")
    bias: Literal["none", "all", "lora_only"] = Field(
        "none", description="Which biases are trained along with the adapter.")
    modules_to_save: list[str] = Field(
        [], description="Whole modules trained and saved beside the adapter, e.g. `[embed_tokens, lm_head]` for "
                        "new vocabulary or continued pretraining (peft's `modules_to_save`). Tied input/output "
                        "embeddings (SmolLM2) stay tied: one trained copy serves both.")


class OptimizerConfig(StageConfig):
    """Optimizer and its hyper-parameters."""

    name: Literal["paged_adamw_8bit", "adamw_8bit", "adamw"] = Field(
        "paged_adamw_8bit", description="bitsandbytes' paged 8-bit AdamW on CUDA; on a CPU Amauta falls back "
                                        "to torch AdamW (and says so).")
    lr: float = Field(2e-4, gt=0, description="Peak learning rate.")
    weight_decay: float = Field(0.001, ge=0, description="Decoupled weight decay.")
    betas: tuple[float, float] = Field((0.9, 0.999), description="Adam's moment decay rates.")
    eps: float = Field(1e-8, gt=0, description="Adam's epsilon.")
    max_grad_norm: float = Field(
        1.0, ge=0, description="Clip the gradient's global norm to this (0 = no clipping).")


class GuardConfig(StageConfig):
    """The forgetting guard: score a Belebele-format Spanish sample while training."""

    enabled: bool = Field(False, description="Turn the guard on.")
    items: str | None = Field(
        None, description="Belebele items: a JSONL/Parquet file or folder, or a hub id "
                          "(`amauta.evaluate.belebele.load_items`).")
    every: int = Field(
        50, gt=0, description="Score every this many optimizer steps (and before the first one, as the "
                              "baseline).")
    sample: int = Field(
        60, gt=0, description="How many items to score each time (the same items every time).")
    formulation: Literal["cloze", "letter"] = Field(
        "cloze", description="Scoring formulation passed to the Belebele scorer.")
    margin: float = Field(
        0.05, ge=0, le=1, description="Allowed drop in accuracy below the baseline before acting.")
    action: Literal["warn", "stop"] = Field(
        "warn", description="What to do on a drop beyond the margin: log a warning, or checkpoint and stop.")


class EarlyStoppingConfig(StageConfig):
    """Stop when a held-out score stops improving, and keep the best weights (Gekhman et al. 2024: new
    facts are learned late and with them hallucination; stopping on a dev set helps)."""

    enabled: bool = Field(False, description="Turn early stopping on.")
    metric: Literal["mc_acc", "mc_acc_norm", "val_loss"] = Field(
        "mc_acc", description="`mc_acc`/`mc_acc_norm`: the exam's multiple-choice accuracy by log-likelihood "
                              "(`amauta eval exam`'s scorer, closed-book); `val_loss`: the validation loss (no "
                              "exam needed).")
    exam: Path | None = Field(
        None, description="Exam JSONL for the `mc_*` metrics (docs/evaluate.md, 'The document exam').")
    split: Literal["train", "dev"] = Field(
        "dev", description="Exam split scored; `test` is refused: it is read once, at the end.")
    every: int = Field(50, gt=0, description="Evaluate every this many optimizer steps (and at the last step).")
    patience: int = Field(
        3, gt=0, description="Stop after this many evaluations in a row without an improvement.")
    min_delta: float = Field(0.0, ge=0, description="An improvement must beat the best score by more than this.")
    limit: int | None = Field(
        None, gt=0, description="Score only the first N items of the split (faster evaluations).")
    prompt_format: Literal["chat", "plain"] = Field(
        "chat", description="How the exam asks (as `amauta eval exam --prompt-format`).")

    @model_validator(mode="after")
    def _needs_an_exam(self) -> EarlyStoppingConfig:
        if self.enabled and self.metric != "val_loss" and self.exam is None:
            raise ValueError(f"early_stopping.metric {self.metric} needs early_stopping.exam (an exam JSONL); "
                             "or use metric: val_loss")
        return self


class PreferenceConfig(StageConfig):
    """Preference tuning (`method: dpo | orpo | kto`): the knobs of TRL's losses."""

    beta: float = Field(
        0.1, gt=0, description="DPO/KTO: strength of the pull towards the reference model; ORPO: weight of the "
                               "odds-ratio term (λ).")
    loss_type: Literal["sigmoid", "hinge", "ipo", "exo_pair", "nca_pair", "robust", "bco_pair", "sppo_hard", "aot",
                       "aot_unpaired", "apo_zero", "apo_down", "discopop", "sft", "sigmoid_norm"] = Field(
        "sigmoid", description="DPO's loss as TRL names it: sigmoid (the DPO paper), ipo, hinge, robust, ...")
    desirable_weight: float = Field(
        1.0, gt=0, description="KTO: weight of the desirable examples' loss (raise it when they are fewer).")
    undesirable_weight: float = Field(1.0, gt=0, description="KTO: weight of the undesirable examples' loss.")
    precompute_ref: bool | Literal["auto"] = Field(
        "auto", description="DPO: compute the reference's log-probs of every pair once, before training (kept in "
                            "the run folder's ref_logps.json, reused on resume), instead of one extra forward pass "
                            "per pair each time it is seen. `auto`: for the training pairs when the run passes over "
                            "them more than once, for the validation pairs when they are scored more than once.")


class TrainConfig(StageConfig):
    """A LoRA/QLoRA fine-tuning run: what to train, on what, how, and where to write it."""

    preset: str | None = Field(
        None, description="Start from this shipped preset (thesis-llama2, thesis-mistral, thesis-falcon, "
                          "cpu-quick, knowledge-cpu).")
    model: str = Field(
        description="Base model: a registry profile name, a hub id, a local folder or a .gguf file.")
    dataset: Path = Field(
        description="Dataset folder written by `amauta data prepare` (train.jsonl, val.jsonl, "
                    "manifest.json).")
    output_dir: Path = Field(
        description="Run folder: adapter/, checkpoints/, log.jsonl, loss.png, config.yaml, manifest.json.")
    system_prompt: str | None = Field(
        None, description="System prompt of every training conversation that brings none: None = the model "
                          "profile's (`amauta models show MODEL`), \"\" = none. The dataset must have been "
                          "prepared with the same one.")
    quantization: QuantizationConfig = Field(
        QuantizationConfig(), description="Base-weight quantization (4-bit for QLoRA).")
    dtype: DType = Field(
        "auto", description="Data type of non-quantized base weights (`auto`: bfloat16 where the hardware "
                            "supports it).")
    lora: LoraConfig = Field(LoraConfig(), description="The adapter.")
    optimizer: OptimizerConfig = Field(OptimizerConfig(), description="The optimizer.")
    scheduler: Literal["cosine", "linear", "constant_with_warmup"] = Field(
        "cosine", description="Learning-rate schedule after warmup (transformers' schedules).")
    warmup_ratio: float = Field(
        0.03, ge=0, le=1, description="Fraction of the optimizer steps spent warming the learning rate up "
                                      "from 0.")
    epochs: float = Field(1.0, gt=0, description="Passes over the training set (fractions allowed).")
    max_steps: int | None = Field(
        None, gt=0, description="Stop after this many optimizer steps (overrides epochs).")
    max_examples: int | None = Field(
        None, gt=0, description="Use only the first N training records (quick demos).")
    batch_size: int = Field(
        8, gt=0, description="Effective batch: examples per optimizer step, across all processes.")
    micro_batch_size: int | Literal["auto"] = Field(
        "auto", description="Examples per forward pass; `auto` fits it to memory (on CUDA an out-of-memory "
                            "halves it).")
    max_length: int = Field(1024, gt=8, description="Longest example in tokens; longer ones are cut.")
    packing: bool = Field(
        True, description="Padding-free batches: a micro-batch's examples are concatenated with per-example "
                          "positions.")
    gradient_checkpointing: bool | Literal["auto"] = Field(
        "auto", description="Recompute activations in the backward pass (`auto`: on for GPUs, off on a CPU).")
    log_every: int = Field(1, gt=0, description="Write a log.jsonl row every N steps.")
    eval_every: int = Field(
        50, gt=0, description="Compute the validation loss every N steps (and at the end).")
    eval_max_examples: int = Field(200, gt=0, description="Validation records used for the validation loss.")
    checkpoint_every: int = Field(
        50, gt=0, description="Write a resumable checkpoint every N steps (and at the end).")
    keep_checkpoints: int = Field(2, gt=0, description="How many recent checkpoints to keep.")
    seed: int = Field(42, description="Seed for adapter initialisation, data order and dropout.")
    guard: GuardConfig = Field(GuardConfig(), description="The optional forgetting guard.")
    finetuning: Literal["lora", "full"] = Field(
        "lora", description="`lora`: train an adapter over the frozen base (adapter/); `full`: train every weight "
                            "(model/ holds the whole model; cheap at 135M, learns more and forgets more than LoRA: "
                            "Biderman et al. 2024).")
    early_stopping: EarlyStoppingConfig = Field(
        EarlyStoppingConfig(), description="Optional early stopping on the exam's dev split (or the validation "
                                           "loss), best weights restored.")
    method: Literal["sft", "dpo", "orpo", "kto"] = Field(
        "sft", description="`sft` (instruction tuning), or preference tuning on a folder from "
                           "`amauta data preferences`.")
    preference: PreferenceConfig = Field(
        PreferenceConfig(), description="DPO/ORPO/KTO settings (used only with those methods).")

    @model_validator(mode="before")
    @classmethod
    def _apply_preset(cls, data: Any) -> Any:
        """`preset: NAME` fills in every key the data leaves out (also when validated directly, as the
        pipeline runner does)."""
        if isinstance(data, dict) and data.get("preset"):
            return _merge(read_preset(data["preset"]), data)
        return data

    @field_validator("finetuning", mode="after")
    @classmethod
    def _full_finetuning_fits(cls, value: str, info: ValidationInfo) -> str:
        quantization, lora = info.data.get("quantization"), info.data.get("lora")
        if value == "full" and quantization is not None and quantization.mode != "none":
            raise ValueError(f"full fine-tuning cannot train {quantization.mode} weights; set quantization.mode none, "
                             "or use finetuning lora (QLoRA)")
        if value == "full" and lora is not None and lora.modules_to_save:
            raise ValueError("lora.modules_to_save is for LoRA runs; full fine-tuning already trains every module")
        return value

    @model_validator(mode="after")
    def _precompute_ref_is_for_dpo(self) -> TrainConfig:
        if self.preference.precompute_ref is True and self.method != "dpo":
            raise ValueError(f"preference.precompute_ref is for method dpo (method {self.method}: KTO's reference also "
                             "scores each step's mismatched pairs, ORPO has none); remove it or set it to auto")
        return self

    @field_validator("lora", mode="after")
    @classmethod
    def _targets_not_empty(cls, value: LoraConfig) -> LoraConfig:
        if isinstance(value.targets, list) and not value.targets:
            raise ValueError("lora.targets is empty; use 'attention', 'all-linear' or module names")
        return value


# Keys that do not change what is computed: a checkpoint stays valid when only these differ.
NON_MATH_KEYS = {"output_dir", "log_every", "eval_every", "eval_max_examples", "checkpoint_every",
                 "keep_checkpoints", "micro_batch_size", "guard", "preset"}


def fingerprint_fields(config: TrainConfig) -> dict[str, Any]:
    """The config values that shape the trained weights (what a checkpoint must agree on)."""
    data = config.model_dump(mode="json")
    if data.get("system_prompt") is None:  # the profile's, as before the field existed: old checkpoints match
        data.pop("system_prompt", None)
    # Newer keys at their defaults are left out for the same reason.
    if data.get("finetuning") == "lora":
        data.pop("finetuning")
    if not (data.get("lora") or {}).get("modules_to_save"):
        (data.get("lora") or {}).pop("modules_to_save", None)
    if not (data.get("early_stopping") or {}).get("enabled"):
        data.pop("early_stopping", None)
    if data.get("method") == "sft":  # as before preference tuning existed: old SFT checkpoints still match
        data.pop("method", None)
        data.pop("preference", None)
    # Precomputed or not, the reference log-probs are the same numbers (up to float rounding, as a changed
    # micro_batch_size): a resumed run may switch it, and checkpoints from before the key still match.
    (data.get("preference") or {}).pop("precompute_ref", None)
    return {k: v for k, v in data.items() if k not in NON_MATH_KEYS}


def fingerprint(config: TrainConfig) -> str:
    """A short hash of `fingerprint_fields`."""
    text = json.dumps(fingerprint_fields(config), sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def preset_names() -> list[str]:
    """The presets shipped in `amauta/train/presets/`."""
    folder = files("amauta.train").joinpath("presets")
    return sorted(p.name[:-5] for p in folder.iterdir() if p.name.endswith(".yaml"))


def read_preset(name: str) -> dict[str, Any]:
    """A preset's raw mapping; an unknown name gets suggestions."""
    if name not in preset_names():
        raise AmautaError(f"unknown preset '{name}'{did_you_mean(name, preset_names())}; "
                          f"presets: {', '.join(preset_names())}")
    text = files("amauta.train").joinpath("presets", f"{name}.yaml").read_text(encoding="utf-8")
    return yaml.safe_load(text) or {}


def _merge(base: dict[str, Any], top: dict[str, Any]) -> dict[str, Any]:
    """`top` over `base`, recursing into nested mappings (so `lora: {r: 8}` keeps the preset's alpha)."""
    out = dict(base)
    for key, value in top.items():
        out[key] = _merge(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
    return out


def build_config(path: str | Path | None = None, overrides: dict[str, Any] | None = None,
                 preset: str | None = None) -> TrainConfig:
    """Preset ← YAML file ← dotted overrides, validated as a `TrainConfig`.

    path: the run's YAML file (optional when a preset and the required keys come as overrides).
    overrides: dotted keys to values, e.g. {"optimizer.lr": 1e-4}; None values are ignored.
    preset: a preset name that wins over the file's `preset:` key.
    """
    data = read_yaml(path) if path else {}
    source = str(path) if path else "command line"
    preset = preset or data.get("preset")
    if preset:
        data = _merge(read_preset(preset), data)
        data["preset"] = preset
    for dotted, value in (overrides or {}).items():
        if value is not None:
            set_dotted(data, dotted, value)
    for required in ("model", "dataset", "output_dir"):
        if required not in data:
            raise AmautaError(f"{source}: missing '{required}'; set it in the YAML or pass --{required.replace('_', '-')}")
    return validate_config(TrainConfig, data, source=source)
