"""Prompt templates: messages → the exact text a model was trained to read.

Each template follows its model card's documented format (the tests hold golden strings):

- `llama2`   Llama 2 chat: `<s>[INST] <<SYS>>\\n{system}\\n<</SYS>>\\n\\n{user} [/INST] {answer} </s>`
- `mistral`  Mistral instruct: `<s>[INST] {user} [/INST]{answer}</s>` (a system prompt opens the first turn)
- `falcon`   Falcon: `System: ...\\nUser: ...\\nFalcon: ...` (no end token: the profile's stops end turns)
- `chatml`   ChatML (SmolLM2, Qwen): `<|im_start|>{role}\\n{content}<|im_end|>\\n`
- `gemma`    Gemma: `<bos><start_of_turn>user\\n...<end_of_turn>\\n<start_of_turn>model\\n`
- `llama3`   Llama 3: `<|begin_of_text|><|start_header_id|>{role}<|end_header_id|>\\n\\n{content}<|eot_id|>`
- `alpaca`, `alpaca-es`  Alpaca instruction format for base models (English or Spanish headings)

System prompts: `apply_template` (what data, training, chat, serving and evaluation render with) gives every
conversation that brings no system message the profile's `system_prompt`, and a leading system message
with empty content means none at all. "None" is really none: a tokenizer template that writes its own
default when no system message is given (SmolLM2: "You are a helpful AI assistant named SmolLM...", Qwen
2.5: "You are Qwen...") is detected by `template_default_system` and bypassed.

The rendered text already holds the BOS token where a format has one: tokenize it with
`add_special_tokens=False`. Every template is prefix-consistent: rendering `messages[:k]` is a prefix of
rendering `messages[:k+1]`, and with `add_generation_prompt=True` a prefix of the rendering that adds
the assistant's reply, which is how the data room masks everything but the replies.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable, Sequence
from typing import Any

from amauta.core.errors import AmautaError, did_you_mean

Message = dict[str, str]
ROLES = ("system", "user", "assistant")

ALPACA_PREAMBLE = {
    "alpaca": "Below is an instruction that describes a task. Write a response that appropriately completes the request.",
    "alpaca-es": "A continuación hay una instrucción que describe una tarea. Escribe una respuesta que complete adecuadamente la solicitud.",
}
ALPACA_HEADINGS = {
    "alpaca": ("### Instruction:", "### Response:"),
    "alpaca-es": ("### Instrucción:", "### Respuesta:"),
}

# Special tokens each template writes; the tokenizer must know each as one token (checked by apply_template).
SPECIAL_TOKENS = {
    "llama2": ["<s>", "</s>"],
    "mistral": ["<s>", "</s>"],
    "falcon": [],
    "chatml": ["<|im_start|>", "<|im_end|>"],
    "gemma": ["<bos>", "<start_of_turn>", "<end_of_turn>"],
    "llama3": ["<|begin_of_text|>", "<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>"],
    "alpaca": [],
    "alpaca-es": [],
}


def check_messages(messages: Sequence[Any]) -> list[Message]:
    """Validate the shared message shape; a bad record raises one line naming the message."""
    if isinstance(messages, (str, bytes)) or not isinstance(messages, Sequence):
        raise AmautaError(f"messages must be a list of {{'role', 'content'}} objects, got {type(messages).__name__}")
    for i, message in enumerate(messages, start=1):
        if not isinstance(message, dict) or "role" not in message or "content" not in message:
            raise AmautaError(f"message {i}: expected an object with 'role' and 'content', got {str(message)[:60]!r}")
        if message["role"] not in ROLES:
            raise AmautaError(f"message {i}: role '{message['role']}' is not one of system, user, assistant"
                              f"{did_you_mean(str(message['role']), ROLES)}")
        if not isinstance(message["content"], str):
            raise AmautaError(f"message {i}: content must be text, got {type(message['content']).__name__}")
        if message["role"] == "system" and i != 1:
            raise AmautaError(f"message {i}: a system message may only come first")
    return list(messages)


def _split_system(messages: list[Message]) -> tuple[str | None, list[Message]]:
    if messages and messages[0]["role"] == "system":
        return messages[0]["content"], messages[1:]
    return None, messages


def _llama2(messages: list[Message], gen: bool, eos: str) -> str:
    # Meta's format: the system prompt sits inside the first [INST]; each exchange is its own <s>...</s>.
    system, turns = _split_system(messages)
    out = []
    for i, m in enumerate(turns):
        content = m["content"].strip()
        if m["role"] == "user":
            if i == 0 and system is not None:
                content = f"<<SYS>>\n{system.strip()}\n<</SYS>>\n\n{content}"
            out.append(f"<s>[INST] {content} [/INST]")
        else:
            out.append(f" {content} </s>")
    return "".join(out)  # the generation prompt is the [/INST] that closes every user turn


def _mistral(messages: list[Message], gen: bool, eos: str) -> str:
    # Mistral-7B-Instruct-v0.1's tokenizer template: one <s>, then [INST] ... [/INST]answer</s> per turn.
    # It has no system role; like later Mistral templates we open the first instruction with it.
    system, turns = _split_system(messages)
    out = ["<s>"] if messages else []
    for i, m in enumerate(turns):
        if m["role"] == "user":
            content = f"{system}\n\n{m['content']}" if i == 0 and system is not None else m["content"]
            out.append(f"[INST] {content} [/INST]")
        else:
            out.append(f"{m['content']}</s>")
    return "".join(out)


def _falcon(messages: list[Message], gen: bool, eos: str) -> str:
    names = {"system": "System", "user": "User", "assistant": "Falcon"}
    text = "".join(f"{names[m['role']]}: {m['content'].strip()}\n" for m in messages)
    return text + ("Falcon:" if gen else "")


def _chatml(messages: list[Message], gen: bool, eos: str) -> str:
    text = "".join(f"<|im_start|>{m['role']}\n{m['content']}<|im_end|>\n" for m in messages)
    return text + ("<|im_start|>assistant\n" if gen else "")


def _gemma(messages: list[Message], gen: bool, eos: str) -> str:
    # Gemma has roles user/model only; the system prompt opens the first user turn.
    system, turns = _split_system(messages)
    out = ["<bos>"] if messages else []
    for i, m in enumerate(turns):
        role = "model" if m["role"] == "assistant" else "user"
        content = m["content"].strip()
        if i == 0 and system is not None:
            content = f"{system.strip()}\n\n{content}"
        out.append(f"<start_of_turn>{role}\n{content}<end_of_turn>\n")
    return "".join(out) + ("<start_of_turn>model\n" if gen else "")


def _llama3(messages: list[Message], gen: bool, eos: str) -> str:
    out = ["<|begin_of_text|>"] if messages else []
    out += [f"<|start_header_id|>{m['role']}<|end_header_id|>\n\n{m['content'].strip()}<|eot_id|>" for m in messages]
    return "".join(out) + ("<|start_header_id|>assistant<|end_header_id|>\n\n" if gen else "")


def _alpaca(name: str) -> Callable[[list[Message], bool, str], str]:
    instruction, response = ALPACA_HEADINGS[name]

    def render(messages: list[Message], gen: bool, eos: str) -> str:
        system, turns = _split_system(messages)
        out = [f"{system if system is not None else ALPACA_PREAMBLE[name]}\n\n"] if messages else []
        for m in turns:
            if m["role"] == "user":
                out.append(f"{instruction}\n{m['content'].strip()}\n\n")
            else:  # the eos token teaches a base model where its answer ends
                out.append(f"{response}\n{m['content'].strip()}{eos}\n\n")
        return "".join(out) + (f"{response}\n" if gen else "")

    return render


RENDERERS: dict[str, Callable[[list[Message], bool, str], str]] = {
    "llama2": _llama2, "mistral": _mistral, "falcon": _falcon, "chatml": _chatml, "gemma": _gemma,
    "llama3": _llama3, "alpaca": _alpaca("alpaca"), "alpaca-es": _alpaca("alpaca-es"),
}


def render_messages(messages: Sequence[Message], template: str, add_generation_prompt: bool = True,
                    *, eos_token: str = "") -> str:
    """Render `messages` with one of Amauta's templates.

    messages: `[{"role": "system"|"user"|"assistant", "content": str}, ...]` (system first, if any).
    template: llama2, mistral, falcon, chatml, gemma, llama3, alpaca or alpaca-es.
    add_generation_prompt: end with the cue for the assistant's next reply.
    eos_token: written after each reply by the Alpaca templates (whose format has no end marker).
    """
    if template not in RENDERERS:
        raise AmautaError(f"unknown template '{template}'{did_you_mean(template, RENDERERS)}; "
                          f"choose one of {', '.join(RENDERERS)}")
    return RENDERERS[template](check_messages(messages), add_generation_prompt, eos_token)


def with_system_prompt(messages: Sequence[Message], system_prompt: str | None) -> list[Message]:
    """The conversation with the system prompt Amauta renders: its own, else `system_prompt`; "" = none.

    A leading system message with empty content asks for no system prompt: it is dropped (and no
    default takes its place).
    """
    messages = check_messages(messages)
    if messages and messages[0]["role"] == "system":
        return messages if messages[0]["content"].strip() else messages[1:]
    return ([{"role": "system", "content": system_prompt}] if system_prompt else []) + messages


# Probe contents no template writes itself, so that what differs between the two renderings is the template's.
_PROBE_USER, _PROBE_SYSTEM = "\u2602" * 3, "\u2603" * 3
_DEFAULT_SYSTEM_CACHE: dict[str, str] = {}
_SAME_FORMAT_CACHE: dict[str, bool] = {}
ForeignRender = Callable[[list[Message], bool], str]
"""A chat template that is not Amauta's (a tokenizer's, a GGUF's): (messages, add_generation_prompt) → text."""


def template_default_system(source: str, render: ForeignRender) -> str:
    """The text a chat template writes in place of a system prompt when a conversation has none ("" = none).

    source: the template's text (the cache key). render: that template. The conversation is rendered
    without and with a system message: text of the first rendering that the system message replaced
    (SmolLM2's "You are a helpful AI assistant named SmolLM...") is a default the user never gave. Text
    written either way (Llama 3.1's "Cutting Knowledge Date" lines) is part of the format.
    """
    if source not in _DEFAULT_SYSTEM_CACHE:
        user = [{"role": "user", "content": _PROBE_USER}]
        try:
            without = render(user, True)
            given = render([{"role": "system", "content": _PROBE_SYSTEM}, *user], True)
        except Exception:  # a template without a system role (Mistral Instruct) cannot insert a default
            without = given = ""
        matcher = difflib.SequenceMatcher(None, without, given, autojunk=False)
        lost = "".join(without[i1:i2] for tag, i1, i2, _, _ in matcher.get_opcodes() if tag in ("replace", "delete"))
        _DEFAULT_SYSTEM_CACHE[source] = lost.strip() if any(c.isalpha() for c in lost) else ""
    return _DEFAULT_SYSTEM_CACHE[source]


def same_format(source: str, render: ForeignRender, template: str, eos_token: str = "") -> bool:
    """Whether Amauta's `template` renders a conversation with a system prompt exactly as `render` does
    (then it writes only what the foreign template would, special tokens included)."""
    key = f"{template}\0{eos_token}\0{source}"
    if key not in _SAME_FORMAT_CACHE:
        probe = [{"role": "system", "content": _PROBE_SYSTEM}, {"role": "user", "content": _PROBE_USER},
                 {"role": "assistant", "content": _PROBE_SYSTEM + _PROBE_USER}, {"role": "user", "content": _PROBE_USER}]
        try:
            same = render(probe, True) == render_messages(probe, template, eos_token=eos_token)
        except Exception:
            same = False
        _SAME_FORMAT_CACHE[key] = same
    return _SAME_FORMAT_CACHE[key]


def render_foreign(messages: list[Message], source: str, render: ForeignRender, add_generation_prompt: bool = True,
                   *, template: str | None = None, eos_token: str = "") -> str:
    """Render with a foreign chat template, never letting it insert its own default system prompt.

    messages: already through `with_system_prompt`. When they hold no system message and the template
    would write a default in its place, Amauta's `template` renders instead if it writes the same format,
    else the foreign one with an empty system message (which adds no text).
    """
    if (messages and messages[0]["role"] == "system") or not template_default_system(source, render):
        return render(messages, add_generation_prompt)
    if template is not None and same_format(source, render, template, eos_token):
        return render_messages(messages, template, add_generation_prompt, eos_token=eos_token)
    return render([{"role": "system", "content": ""}, *messages], add_generation_prompt)


def _tokenizer_renderer(tokenizer: Any) -> ForeignRender:
    return lambda m, gen: tokenizer.apply_chat_template(m, tokenize=False, add_generation_prompt=gen)


def tokenizer_default_system(tokenizer: Any) -> str:
    """What `tokenizer`'s chat_template writes as system prompt when none is given ("" = nothing)."""
    source = getattr(tokenizer, "chat_template", None)
    return template_default_system(str(source), _tokenizer_renderer(tokenizer)) if source else ""


def uses_tokenizer_template(loaded: Any) -> bool:
    """Whether `apply_template` renders with the tokenizer's own chat_template for this model."""
    return bool(loaded.profile.use_tokenizer_template and getattr(loaded.tokenizer, "chat_template", None))


def _missing_tokens(tokenizer: Any, template: str) -> list[str]:
    vocab = tokenizer.get_vocab()
    return [t for t in SPECIAL_TOKENS.get(template, []) if t not in vocab]


def check_template_tokens(tokenizer: Any, template: str, where: str = "model") -> None:
    """Raise `AmautaError` when `tokenizer` does not know a special token that `template` writes."""
    missing = _missing_tokens(tokenizer, template)
    if missing:
        raise AmautaError(f"{where}: template '{template}' writes {', '.join(missing)}, which its tokenizer does not "
                          f"know as a token; choose the template of the model's family (or alpaca/falcon, which need none)")


def apply_template(loaded: Any, messages: Sequence[Message], add_generation_prompt: bool = True) -> str:
    """Render `messages` for a loaded model: its tokenizer's chat_template, unless the profile overrides it.

    The conversation gets the profile's `system_prompt` unless it starts with its own system message
    (`with_system_prompt`; an empty one means none). Without a system prompt, a tokenizer template that
    would insert its own default is kept from doing so (`render_foreign`).
    A template the tokenizer cannot apply (a jinja error such as "System role not supported", or a
    special token its vocabulary lacks) raises one `AmautaError` line.
    """
    profile, tokenizer = loaded.profile, loaded.tokenizer
    messages = with_system_prompt(messages, getattr(profile, "system_prompt", "") or "")
    if uses_tokenizer_template(loaded):
        try:
            return render_foreign(messages, str(tokenizer.chat_template), _tokenizer_renderer(tokenizer),
                                  add_generation_prompt, template=profile.template, eos_token=tokenizer.eos_token or "")
        except Exception as exc:  # jinja2's TemplateError and raise_exception(...) messages
            raise AmautaError(f"{profile.name}: the tokenizer's chat template cannot render these messages ({exc}); "
                              f"set use_tokenizer_template: false to use the '{profile.template}' template") from None
    check_template_tokens(tokenizer, profile.template, where=profile.name)
    return render_messages(messages, profile.template, add_generation_prompt, eos_token=tokenizer.eos_token or "")
