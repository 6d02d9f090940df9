"""System prompts: each profile's Spanish default reaches every rendering, and "none" is really none.

SmolLM2's tokenizer template writes "You are a helpful AI assistant named SmolLM, trained by Hugging Face"
whenever a conversation has no system message; these tests hold Amauta to its own prompt instead.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from amauta.cli import app
from amauta.core.errors import AmautaError
from amauta.models.load import load_tokenizer
from amauta.models.registry import get_profile, list_profiles
from amauta.models.templates import (
    apply_template,
    render_messages,
    template_default_system,
    tokenizer_default_system,
    with_system_prompt,
)
from amauta.models.types import LoadedModel

SPANISH = get_profile("smollm2-135m-instruct").system_prompt
ALPACA = Path(__file__).resolve().parents[2] / "examples" / "data" / "alpaca_es.jsonl"
CHAT = [{"role": "user", "content": "¿Qué es el IVA?"}, {"role": "assistant", "content": "Un impuesto al consumo."}]
runner = CliRunner()

# A ChatML template that, like SmolLM2's, writes its own English system prompt when none is given.
DEFAULTING = ("{% for m in messages %}{% if loop.first and m['role'] != 'system' %}<|im_start|>system\n"
              "You are a helpful bot<|im_end|>\n{% endif %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}"
              "<|im_end|>\n{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}")
# Like Llama 3.1's: a system block (with a date line) written either way; the user's prompt goes after it.
ALWAYS_DATED = ("{% if messages[0]['role'] == 'system' %}{% set sys = messages[0]['content'] %}"
                "{% set rest = messages[1:] %}{% else %}{% set sys = '' %}{% set rest = messages %}{% endif %}"
                "<|im_start|>system\nToday Date: 26 Jul 2024\n{{ sys }}<|im_end|>\n{% for m in rest %}"
                "<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
                "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}")


def _tiny_chatml(chat_template: str, system_prompt: str) -> LoadedModel:
    from amauta.models.tiny import tiny_tokenizer

    profile = get_profile("tiny-llama").model_copy(update={"template": "chatml", "use_tokenizer_template": True,
                                                           "system_prompt": system_prompt})
    return LoadedModel(model=None, tokenizer=tiny_tokenizer(chat_template), profile=profile)


def test_chat_profiles_have_a_spanish_default_and_the_rest_none():
    assert "español" in SPANISH
    spanish = {p.name for p in list_profiles() if p.system_prompt}
    assert spanish == {"llama2-7b-chat", "llama-3.1-8b-instruct", "qwen2.5-7b-instruct", "smollm2-135m-instruct"}
    for name in ("mistral-7b-instruct", "mixtral-8x7b", "falcon-7b", "gemma-3-270m", "tiny-llama"):
        assert get_profile(name).system_prompt == ""


def test_models_show_prints_the_system_prompt():
    result = runner.invoke(app, ["models", "show", "smollm2-135m-instruct"])
    assert result.exit_code == 0, result.output
    shown = json.loads(result.output)
    assert shown["system_prompt"] == SPANISH and shown["hub_id"] == "HuggingFaceTB/SmolLM2-135M-Instruct"


def test_with_system_prompt_rule():
    user = [{"role": "user", "content": "Hola"}]
    assert with_system_prompt(user, "Sé breve.") == [{"role": "system", "content": "Sé breve."}, *user]
    assert with_system_prompt(user, "") == user
    own = [{"role": "system", "content": "Mío."}, *user]
    assert with_system_prompt(own, "Sé breve.") == own  # the conversation's own wins
    assert with_system_prompt([{"role": "system", "content": ""}, *user], "Sé breve.") == user  # "" = none


def test_default_inserting_template_is_detected_and_bypassed():
    loaded = _tiny_chatml(DEFAULTING, "")
    assert tokenizer_default_system(loaded.tokenizer) == "You are a helpful bot"
    text = apply_template(loaded, CHAT, add_generation_prompt=False)
    assert "helpful bot" not in text and "system" not in text
    assert text == render_messages(CHAT, "chatml", add_generation_prompt=False)
    spanish = apply_template(_tiny_chatml(DEFAULTING, "Responde en español."), CHAT)
    assert spanish.startswith("<|im_start|>system\nResponde en español.<|im_end|>\n") and "helpful bot" not in spanish


def test_format_text_written_either_way_is_not_a_default():
    # The date line is written with or without a system prompt: it is the format, not an inserted prompt.
    assert template_default_system(ALWAYS_DATED, lambda m, gen: _render(ALWAYS_DATED, m, gen)) == ""
    loaded = _tiny_chatml(ALWAYS_DATED, "")
    assert "Today Date" in apply_template(loaded, CHAT)


def _render(template: str, messages, gen: bool) -> str:
    from amauta.models.tiny import tiny_tokenizer

    return tiny_tokenizer(template).apply_chat_template(messages, tokenize=False, add_generation_prompt=gen)


def test_a_format_amauta_cannot_write_gets_an_empty_system_message():
    # A default-inserting template whose format is not the profile's: its own render, with an empty system turn.
    odd = DEFAULTING.replace("<|im_start|>{{ m['role'] }}\n", "<|im_start|>{{ m['role'] }}:\n")
    text = apply_template(_tiny_chatml(odd, ""), CHAT, add_generation_prompt=False)
    assert "helpful bot" not in text and text.startswith("<|im_start|>system:\n<|im_end|>\n<|im_start|>user:\n")


@pytest.mark.integration
def test_smollm2_renders_the_spanish_prompt_not_its_own_english_one(smollm2):
    assert "SmolLM" in tokenizer_default_system(smollm2.tokenizer)
    text = apply_template(smollm2, CHAT)
    assert text.startswith(f"<|im_start|>system\n{SPANISH}<|im_end|>\n") and "SmolLM" not in text
    tokenizer, profile = load_tokenizer("smollm2-135m-instruct", system_prompt="")
    none = apply_template(LoadedModel(model=None, tokenizer=tokenizer, profile=profile), CHAT)
    assert none == render_messages(CHAT, "chatml") and "system" not in none and "SmolLM" not in none


@pytest.mark.integration
def test_data_show_mask_of_a_smollm2_dataset(tmp_path):
    from amauta.core.config import validate_config
    from amauta.data.prepare import PrepareConfig, run

    config = validate_config(PrepareConfig, {"sources": [{"path": str(ALPACA), "cap": 4}], "clean": {"language": None},
                                             "model": "smollm2-135m-instruct"})
    folder = run(config, out=tmp_path / "ds", quiet=True)
    assert json.loads((folder / "manifest.json").read_text(encoding="utf-8"))["system_prompt"] == SPANISH
    shown = runner.invoke(app, ["data", "show", str(folder), "-n", "0", "--mask"], terminal_width=400)
    assert shown.exit_code == 0, shown.output
    mask = shown.output.split("mask with")[-1]
    assert "SmolLM" not in mask and "español" in mask and "system" in mask
    none = runner.invoke(app, ["data", "show", str(folder), "-n", "0", "--mask", "--system", ""], terminal_width=400)
    assert none.exit_code == 0, none.output
    mask = none.output.split("mask with")[-1]
    assert "SmolLM" not in mask and "español" not in mask and "system" not in mask.split("\n", 2)[-1]


@pytest.mark.integration
def test_chat_and_generate_without_system_use_the_spanish_default(smollm2):
    from amauta.chat.generate import encode_prompt
    from amauta.chat.session import ChatSession

    session = ChatSession(smollm2)
    text = apply_template(smollm2, session.build_messages("¿Qué es el impuesto al valor agregado?"))
    assert SPANISH in text and "SmolLM" not in text
    prompt = smollm2.tokenizer.decode(encode_prompt(smollm2, [{"role": "user", "content": "Hola"}])[0])
    assert SPANISH in prompt and "SmolLM" not in prompt
    session.set_system(None)  # `/system` alone: no system prompt at all
    text = apply_template(smollm2, session.build_messages("Hola"))
    assert "system" not in text and "SmolLM" not in text and SPANISH not in text


def test_unknown_template_flag_is_one_line():
    result = runner.invoke(app, ["generate", "--model", "tiny-llama", "--template", "chatm", "-n", "2", "Hola"])
    assert isinstance(result.exception, AmautaError) and "did you mean: chatml" in str(result.exception)
    assert "\n" not in str(result.exception)


def test_template_flag_renders_with_that_template():
    from amauta.models.load import load_model

    loaded = load_model("tiny-llama", template="chatml", system_prompt="Sé breve.")
    assert loaded.profile.template == "chatml" and not loaded.profile.use_tokenizer_template
    assert apply_template(loaded, [{"role": "user", "content": "Hola"}]).startswith(
        "<|im_start|>system\nSé breve.<|im_end|>\n<|im_start|>user\nHola")
    result = runner.invoke(app, ["generate", "--model", "tiny-llama", "--template", "chatml", "-s", "greedy", "-n", "2",
                                 "--json", "Hola"])
    assert result.exit_code == 0, result.output
