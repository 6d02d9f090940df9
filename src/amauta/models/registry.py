"""The model registry: one profile per model, read from `profiles.yaml` (data, not code).

A profile says where a model's weights come from, how to talk to it (template, stops, eos tokens),
which modules LoRA adapts (`attention`: the thesis's choice; `all-linear`), its default learning rate
and decoding. `get_profile("mistral-7b")` returns one; an unknown name gets close-match suggestions.
Models outside the registry (any folder, hub id or GGUF) get a profile guessed from their
architecture by `profile_for_architecture`. Your own profiles go in `$AMAUTA_PROFILES` or
`amauta_home()/profiles.yaml` (same shape; `extends: falcon-7b` copies a profile and overrides fields).
"""

from __future__ import annotations

import os
from functools import lru_cache
from importlib.resources import files
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from amauta.core.errors import AmautaError, did_you_mean
from amauta.core.files import read_text
from amauta.core.paths import amauta_home

TEMPLATES = ("llama2", "mistral", "falcon", "chatml", "gemma", "llama3", "alpaca", "alpaca-es")


class GenerationDefaults(BaseModel):
    """A profile's default decoding (the chat room's `GenerationSettings.from_profile` reads it)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    strategy: Literal["greedy", "sampling", "beam", "contrastive"] = "contrastive"
    """Decoding strategy; the thesis found contrastive search best for every model."""
    max_new_tokens: int = Field(256, gt=0)
    """Most tokens to generate per answer."""
    temperature: float = Field(0.7, ge=0)
    """Sampling temperature (sampling only)."""
    top_p: float = Field(0.9, gt=0, le=1)
    """Nucleus mass kept when sampling."""
    top_k: int = Field(4, ge=0)
    """Candidates per step (contrastive search) or top-k cut (sampling)."""
    penalty_alpha: float = Field(0.6, ge=0, le=1)
    """Degeneration penalty of contrastive search (Su et al. 2022)."""
    repetition_penalty: float = Field(1.0, gt=0)
    """Penalty on tokens already generated (1.0 = none)."""


class Profile(BaseModel):
    """Everything Amauta knows about one model."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str
    """Registry name (`amauta models` lists them)."""
    source: str
    """Hub id, `embedded:<pip package>`, `tiny:<arch>`, or a local path for models outside the registry."""
    architecture: str
    """transformers `model_type` of the weights (llama, mistral, falcon, mixtral, qwen2, gemma3_text)."""
    template: Literal["llama2", "mistral", "falcon", "chatml", "gemma", "llama3", "alpaca", "alpaca-es"]
    """Amauta's prompt template for this model."""
    use_tokenizer_template: bool = True
    """Prefer the tokenizer's own chat_template when it ships one."""
    system_prompt: str = ""
    """The system prompt Amauta gives every conversation that brings none ("" = none at all: a tokenizer
    template's own default, such as SmolLM2's English one, is never inserted). `--system` / `system_prompt`
    change it per run; see `amauta.models.templates.apply_template`."""
    stop_strings: list[str] = Field(default_factory=list)
    """Text that ends the model's turn."""
    eos_tokens: list[str] = Field(default_factory=list)
    """Special tokens that end the model's turn."""
    lora_targets: dict[str, list[str]]
    """LoRA target presets: `attention` and `all-linear`, as module-name suffixes."""
    learning_rate: float = Field(gt=0)
    """Default LoRA learning rate."""
    generation: GenerationDefaults = GenerationDefaults()
    """Default decoding settings."""
    context_length: int = Field(gt=0)
    """Tokens the model can attend to."""
    params_billion: float = Field(gt=0)
    """Parameter count in billions (for the will-it-fit estimate before loading)."""
    description: str = ""
    """One line for `amauta models`."""
    hub_id: str | None = None
    """The model's hub id when `source` is not one (an embedded GGUF): what model cards name as `base_model`."""

    @property
    def kind(self) -> str:
        """`hub`, `embedded`, `tiny` or `local`, from the source."""
        if self.source.startswith("embedded:"):
            return "embedded"
        if self.source.startswith("tiny:"):
            return "tiny"
        return "local" if self.source.startswith(("/", ".", "~")) else "hub"

    @property
    def base_model_id(self) -> str:
        """The hub id model cards name as `base_model`: `hub_id`, the source of a hub profile, else the name."""
        return self.hub_id or (self.source if self.kind == "hub" else self.name)


def _parse(text: str, where: str, base: dict[str, Profile]) -> dict[str, Profile]:
    """Profiles from YAML text (`profiles: {name: {fields}}`); a user profile may `extends:` another one."""
    try:
        raw = yaml.safe_load(text) or {}
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        raise AmautaError(f"{where}{f':{mark.line + 1}' if mark else ''}: invalid YAML ({getattr(exc, 'problem', exc)})") from None
    if not isinstance(raw, dict) or not isinstance(raw.get("profiles"), dict):
        raise AmautaError(f"{where}: expected a top-level 'profiles:' mapping of name → fields")
    profiles = dict(base)
    for name, fields in raw["profiles"].items():
        fields = dict(fields or {})
        parent = fields.pop("extends", None)
        if parent is not None:
            if parent not in profiles:
                raise AmautaError(f"{where}: profile '{name}' extends unknown '{parent}'{did_you_mean(parent, profiles)}")
            fields = {**profiles[parent].model_dump(exclude={"name"}), **fields}
        try:
            profiles[name] = Profile(name=name, **fields)
        except ValidationError as exc:
            err = exc.errors()[0]
            key = ".".join(map(str, err["loc"])) or "(profile)"
            hint = did_you_mean(str(err["loc"][-1]), Profile.model_fields) if err["type"] == "extra_forbidden" else ""
            raise AmautaError(f"{where}: profile '{name}': '{key}': {err['msg']}{hint}") from None
    return profiles


@lru_cache(maxsize=8)
def _load(user_file: str | None, version: tuple[int, int] | None) -> dict[str, Profile]:
    builtin = _parse(files("amauta.models").joinpath("profiles.yaml").read_text(encoding="utf-8"), "profiles.yaml", {})
    if user_file is None:
        return builtin
    return _parse(read_text(user_file), user_file, builtin)  # not UTF-8: one line naming the byte


def user_profiles_file() -> Path | None:
    """Your own profiles: `$AMAUTA_PROFILES`, else `amauta_home()/profiles.yaml` when it exists."""
    env = os.environ.get("AMAUTA_PROFILES")
    if env:
        path = Path(env).expanduser()
        if not path.is_file():
            raise AmautaError(f"{path}: AMAUTA_PROFILES points to a file that does not exist")
        return path
    path = amauta_home() / "profiles.yaml"
    return path if path.is_file() else None


def _registry() -> dict[str, Profile]:
    user = user_profiles_file()
    stat = user.stat() if user else None
    return _load(str(user) if user else None, (stat.st_mtime_ns, stat.st_size) if stat else None)


def list_profiles(include_tiny: bool = True) -> list[Profile]:
    """All registry profiles, in file order (`include_tiny=False` hides the test models)."""
    return [p for p in _registry().values() if include_tiny or p.kind != "tiny"]


def profile_names() -> list[str]:
    """The registry's profile names."""
    return list(_registry())


def get_profile(name: str) -> Profile:
    """The profile called `name`; an unknown name raises `AmautaError` with close matches."""
    registry = _registry()
    if name in registry:
        return registry[name]
    lowered = {k.lower(): k for k in registry}
    if name.lower() in lowered:
        return registry[lowered[name.lower()]]
    hint = did_you_mean(name.lower(), registry) or f" (known models: {', '.join(p.name for p in list_profiles(False))})"
    raise AmautaError(f"unknown model '{name}'{hint}; or pass a hub id (org/name), a local folder or a .gguf file")


def find_profile_by_source(source: str) -> Profile | None:
    """The registry profile whose hub id is `source` (case-insensitive), if any."""
    for profile in _registry().values():
        if profile.source.lower() == source.lower():
            return profile
    return None


# Family defaults for models outside the registry: template, stops and LoRA targets by model_type.
_FAMILY = {
    "llama": "llama2-7b-chat", "mistral": "mistral-7b-instruct", "falcon": "falcon-7b-instruct",
    "mixtral": "mixtral-8x7b", "qwen2": "qwen2.5-7b-instruct", "gemma3_text": "gemma-3-270m",
    "gemma3": "gemma-3-270m", "gemma2": "gemma-3-270m", "gemma": "gemma-3-270m",
}


def profile_for_architecture(architecture: str, *, name: str, source: str, params_billion: float = 1.0,
                             context_length: int | None = None, has_chat_template: bool = False) -> Profile:
    """A profile for a model outside the registry, borrowing its family's template, stops and targets.

    An unknown architecture gets ChatML (when the tokenizer ships a chat template it is used instead)
    and the Llama-style target names; `resolve_lora_targets` will say if they do not exist.
    """
    family = _registry().get(_FAMILY.get(architecture, "smollm2-135m-instruct"))
    fields = family.model_dump(exclude={"name", "source", "architecture", "params_billion", "context_length",
                                        "description", "use_tokenizer_template", "hub_id"})
    return Profile(name=name, source=source, architecture=architecture, params_billion=max(params_billion, 1e-6),
                   context_length=context_length or family.context_length, use_tokenizer_template=has_chat_template,
                   description=f"{architecture} model from {source} (profile guessed from its architecture)", **fields)


# transformers 5 fuses each MoE layer's experts into 3-D parameters; the thesis's (and checkpoints')
# per-expert Linear names map onto them: w1 (gate) and w3 (up) → gate_up_proj, w2 (down) → down_proj.
_FUSED_EXPERTS = {"w1": "experts.gate_up_proj", "w3": "experts.gate_up_proj", "w2": "experts.down_proj"}


def resolve_lora_targets(model: Any, targets: Profile | list[str], preset: str = "attention") -> dict[str, list[str]]:
    """Map a preset's names to what exists in `model`: `{"target_modules": [...], "target_parameters": [...]}`.

    Pass both keys to `peft.LoraConfig`. A name found nowhere in the model raises `AmautaError` (a wrong
    profile for these weights), so a LoRA run never silently trains nothing.
    """
    if isinstance(targets, Profile):
        if preset not in targets.lora_targets:
            raise AmautaError(f"profile '{targets.name}': no LoRA preset '{preset}'{did_you_mean(preset, targets.lora_targets)}")
        names = targets.lora_targets[preset]
    else:
        names = list(targets)
    module_names = [n for n, _ in model.named_modules()]
    param_names = [n for n, _ in model.named_parameters()]
    modules: list[str] = []
    parameters: list[str] = []
    for target in names:
        if any(n == target or n.endswith("." + target) for n in module_names):
            modules.append(target)
        elif target in _FUSED_EXPERTS and any(n.endswith(_FUSED_EXPERTS[target]) for n in param_names):
            if _FUSED_EXPERTS[target] not in parameters:
                parameters.append(_FUSED_EXPERTS[target])
        else:
            leaves = sorted({n.rsplit(".", 1)[-1] for n in module_names if n})
            raise AmautaError(f"LoRA target '{target}' is not a module of this {type(model).__name__}"
                              f"{did_you_mean(target, leaves)}; fix the profile's lora_targets")
    return {"target_modules": modules, "target_parameters": parameters}
