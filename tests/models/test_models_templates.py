"""Templates: golden strings from each model card's documented format, prefix consistency, apply_template."""

from __future__ import annotations

import pytest

from amauta.core.errors import AmautaError
from amauta.models.templates import RENDERERS, apply_template, render_messages
from amauta.models.types import LoadedModel

CHAT = [
    {"role": "system", "content": "Eres un asistente."},
    {"role": "user", "content": "Hola"},
    {"role": "assistant", "content": "¡Hola! ¿En qué te ayudo?"},
    {"role": "user", "content": "¿Qué es el IVA?"},
]

GOLDEN = {
    # Llama 2 chat (Meta's model card / reference `chat_completion`): system inside the first [INST].
    "llama2": "<s>[INST] <<SYS>>\nEres un asistente.\n<</SYS>>\n\nHola [/INST] ¡Hola! ¿En qué te ayudo? </s>"
              "<s>[INST] ¿Qué es el IVA? [/INST]",
    # Mistral-7B-Instruct-v0.1: "<s>[INST] {user} [/INST]{answer}</s>[INST] ..."
    "mistral": "<s>[INST] Eres un asistente.\n\nHola [/INST]¡Hola! ¿En qué te ayudo?</s>[INST] ¿Qué es el IVA? [/INST]",
    # Falcon chat format: "System: ...\nUser: ...\nFalcon: ..."
    "falcon": "System: Eres un asistente.\nUser: Hola\nFalcon: ¡Hola! ¿En qué te ayudo?\nUser: ¿Qué es el IVA?\nFalcon:",
    "chatml": "<|im_start|>system\nEres un asistente.<|im_end|>\n<|im_start|>user\nHola<|im_end|>\n"
              "<|im_start|>assistant\n¡Hola! ¿En qué te ayudo?<|im_end|>\n<|im_start|>user\n¿Qué es el IVA?<|im_end|>\n"
              "<|im_start|>assistant\n",
    # Gemma: roles user/model, the system prompt opens the first user turn.
    "gemma": "<bos><start_of_turn>user\nEres un asistente.\n\nHola<end_of_turn>\n<start_of_turn>model\n"
             "¡Hola! ¿En qué te ayudo?<end_of_turn>\n<start_of_turn>user\n¿Qué es el IVA?<end_of_turn>\n"
             "<start_of_turn>model\n",
    "llama3": "<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\nEres un asistente.<|eot_id|>"
              "<|start_header_id|>user<|end_header_id|>\n\nHola<|eot_id|>"
              "<|start_header_id|>assistant<|end_header_id|>\n\n¡Hola! ¿En qué te ayudo?<|eot_id|>"
              "<|start_header_id|>user<|end_header_id|>\n\n¿Qué es el IVA?<|eot_id|>"
              "<|start_header_id|>assistant<|end_header_id|>\n\n",
    # Alpaca: a system message replaces the preamble.
    "alpaca": "Eres un asistente.\n\n### Instruction:\nHola\n\n### Response:\n¡Hola! ¿En qué te ayudo?</s>\n\n"
              "### Instruction:\n¿Qué es el IVA?\n\n### Response:\n",
    "alpaca-es": "Eres un asistente.\n\n### Instrucción:\nHola\n\n### Respuesta:\n¡Hola! ¿En qué te ayudo?</s>\n\n"
                 "### Instrucción:\n¿Qué es el IVA?\n\n### Respuesta:\n",
}


@pytest.mark.parametrize("template", sorted(GOLDEN))
def test_golden_multi_turn_with_system(template):
    assert render_messages(CHAT, template, eos_token="</s>") == GOLDEN[template]


def test_golden_without_system():
    one = [{"role": "user", "content": "Hola"}]
    assert render_messages(one, "llama2") == "<s>[INST] Hola [/INST]"
    assert render_messages(one, "mistral") == "<s>[INST] Hola [/INST]"
    assert render_messages(one, "falcon") == "User: Hola\nFalcon:"
    assert render_messages(one, "gemma") == "<bos><start_of_turn>user\nHola<end_of_turn>\n<start_of_turn>model\n"
    assert render_messages(one, "alpaca") == (
        "Below is an instruction that describes a task. Write a response that appropriately completes the request."
        "\n\n### Instruction:\nHola\n\n### Response:\n")
    assert render_messages(one, "alpaca-es").startswith("A continuación hay una instrucción que describe una tarea.")
    assert render_messages(one, "chatml", add_generation_prompt=False) == "<|im_start|>user\nHola<|im_end|>\n"


CONVERSATIONS = [
    CHAT + [{"role": "assistant", "content": "Es el impuesto al valor agregado."}],
    CHAT[1:] + [{"role": "assistant", "content": " Con espacios \n"}],
    [{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"}, {"role": "user", "content": "c"},
     {"role": "assistant", "content": "d"}],
]


@pytest.mark.parametrize("template", sorted(RENDERERS))
@pytest.mark.parametrize("conversation", range(len(CONVERSATIONS)))
def test_prefix_consistent(template, conversation):
    messages = CONVERSATIONS[conversation]
    for k in range(len(messages)):
        whole = render_messages(messages[: k + 1], template, add_generation_prompt=False, eos_token="</s>")
        assert whole.startswith(render_messages(messages[:k], template, add_generation_prompt=False, eos_token="</s>"))
        if messages[k]["role"] == "assistant":  # the cue for the reply is a prefix of the reply's rendering
            cue = render_messages(messages[:k], template, add_generation_prompt=True, eos_token="</s>")
            assert whole.startswith(cue)
            assert messages[k]["content"].strip() in whole[len(cue):]


@pytest.mark.parametrize("bad, match", [
    ([{"role": "bot", "content": "x"}], "message 1: role 'bot'"),
    ([{"role": "user"}], "message 1: expected an object"),
    ([{"role": "user", "content": 3}], "message 1: content must be text"),
    ([{"role": "user", "content": "a"}, {"role": "system", "content": "b"}], "message 2: a system message"),
    ("hola", "messages must be a list"),
])
def test_bad_messages(bad, match):
    with pytest.raises(AmautaError, match=match):
        render_messages(bad, "chatml")


def test_unknown_template_suggests():
    with pytest.raises(AmautaError, match="did you mean: llama2"):
        render_messages(CHAT, "llama-2")


@pytest.mark.parametrize("arch, template", [("llama", "llama2"), ("mistral", "mistral"), ("falcon", "falcon"),
                                            ("gemma3", "gemma")])
def test_apply_template_on_tiny_models(tiny, arch, template):
    loaded = tiny(arch)
    assert loaded.profile.template == template
    text = apply_template(loaded, CHAT)
    assert text == render_messages(CHAT, template, eos_token=loaded.tokenizer.eos_token)
    # Special tokens the template writes are single tokens, not spelled out piece by piece.
    ids = loaded.tokenizer(text, add_special_tokens=False)["input_ids"]
    assert loaded.tokenizer.decode(ids) == text
    for token in {"llama2": ["<s>", "</s>"], "mistral": ["<s>"], "falcon": [], "gemma": ["<start_of_turn>"]}[template]:
        assert loaded.tokenizer.convert_tokens_to_ids(token) in ids


def test_tokenizer_template_used_unless_profile_overrides(tiny):
    base = tiny("llama")
    from amauta.models.tiny import tiny_tokenizer

    own = tiny_tokenizer(chat_template="{% for m in messages %}<<{{ m['role'] }}:{{ m['content'] }}>>{% endfor %}"
                                       "{% if add_generation_prompt %}<<assistant:{% endif %}")
    uses_own = LoadedModel(base.model, own, base.profile.model_copy(update={"use_tokenizer_template": True}))
    assert apply_template(uses_own, CHAT[:2]) == "<<system:Eres un asistente.>><<user:Hola>><<assistant:"
    overridden = LoadedModel(base.model, own, base.profile)  # tiny-llama's profile: use_tokenizer_template false
    assert apply_template(overridden, CHAT[:2]).startswith("<s>[INST] <<SYS>>")


def test_tokenizer_template_that_refuses_is_one_line(tiny):
    from amauta.models.tiny import tiny_tokenizer

    base = tiny("gemma3")
    strict = tiny_tokenizer(chat_template="{% if messages[0]['role'] == 'system' %}"
                                          "{{ raise_exception('System role not supported') }}{% endif %}")
    loaded = LoadedModel(base.model, strict, base.profile.model_copy(update={"use_tokenizer_template": True}))
    with pytest.raises(AmautaError, match="System role not supported.*use_tokenizer_template: false"):
        apply_template(loaded, CHAT)


def test_template_tokens_the_tokenizer_lacks(tiny):
    base = tiny("llama")
    llama3 = LoadedModel(base.model, base.tokenizer, base.profile.model_copy(update={"template": "llama3"}))
    with pytest.raises(AmautaError, match="template 'llama3' writes <\\|begin_of_text\\|>"):
        apply_template(llama3, CHAT)
