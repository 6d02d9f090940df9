"""An Ollama `Modelfile` for an exported GGUF: the profile's template, system prompt, stops and decoding.

    amauta export runs/sri --merge --ollama --out exports/sri   # model-f16.gguf + Modelfile
    ollama create sri -f exports/sri/Modelfile

Ollama renders prompts with Go's text/template over `.Messages` (each with `.Role` and `.Content`) and
`.System` (the system messages, or the Modelfile's SYSTEM when the conversation brings none). Each of
Amauta's templates is written here in that syntax so that Ollama sends the model exactly the text
`amauta.models.templates.render_messages` renders (tested against Go's own text/template where a Go
toolchain is installed). A format whose tokenizer adds the BOS token itself (`add_bos_token`) leaves the
first one out of the template, as llama.cpp would add it a second time.

Ollama has no contrastive search (the thesis's default decoding): the Modelfile samples with the
profile's temperature, top_p and top_k instead.
"""

from __future__ import annotations

from typing import Any

from amauta.core.errors import AmautaError
from amauta.models.templates import ALPACA_HEADINGS, ALPACA_PREAMBLE

MODELFILE = "Modelfile"
NUM_CTX_CAP = 4096
"""Ollama's context window in the Modelfile: the profile's, at most this (a 32k window costs GBs of KV cache)."""

# "the last message of the conversation": Ollama's own templates test it this way.
_LAST = "(eq (len (slice $.Messages $i)) 1)"
_CUE = "{{ if and " + _LAST + ' (ne .Role "assistant") }}%s{{ end }}'  # the generation prompt after a user turn
_FIRST_SYSTEM = "{{ if and $first $.System }}%s{{ end }}"  # the system prompt folded into the first user turn


def _chatml(bos: str, eos: str) -> str:
    return ("{{- range $i, $_ := .Messages }}<|im_start|>{{ .Role }}\n{{ .Content }}<|im_end|>\n"
            + _CUE % "<|im_start|>assistant\n" + "{{- end }}")


def _llama2(bos: str, eos: str) -> str:
    # Every exchange is its own <s>[INST] ... [/INST] answer </s>; the first <s> may come from the tokenizer.
    return ("{{- $first := true }}{{- range .Messages }}"
            '{{- if eq .Role "user" }}{{ if $first }}' + bos + "{{ else }}<s>{{ end }}[INST] "
            + _FIRST_SYSTEM % "<<SYS>>\n{{ $.System }}\n<</SYS>>\n\n" + "{{ .Content }} [/INST]{{ $first = false }}"
            '{{- else if eq .Role "assistant" }} {{ .Content }} </s>{{- end }}{{- end }}')


def _mistral(bos: str, eos: str) -> str:
    return (bos + "{{- $first := true }}{{- range .Messages }}"
            '{{- if eq .Role "user" }}[INST] ' + _FIRST_SYSTEM % "{{ $.System }}\n\n"
            + "{{ .Content }} [/INST]{{ $first = false }}"
            '{{- else if eq .Role "assistant" }}{{ .Content }}</s>{{- end }}{{- end }}')


def _falcon(bos: str, eos: str) -> str:
    return ('{{- range $i, $_ := .Messages }}{{ if eq .Role "system" }}System{{ else if eq .Role "user" }}User'
            "{{ else }}Falcon{{ end }}: {{ .Content }}\n" + _CUE % "Falcon:" + "{{- end }}")


def _gemma(bos: str, eos: str) -> str:
    return (bos + "{{- $first := true }}{{- range $i, $_ := .Messages }}"
            '{{- if ne .Role "system" }}<start_of_turn>{{ if eq .Role "assistant" }}model{{ else }}user{{ end }}\n'
            + _FIRST_SYSTEM % "{{ $.System }}\n\n" + "{{ .Content }}<end_of_turn>\n{{ $first = false }}{{ end }}"
            + _CUE % "<start_of_turn>model\n" + "{{- end }}")


def _llama3(bos: str, eos: str) -> str:
    return (bos + "{{- range $i, $_ := .Messages }}<|start_header_id|>{{ .Role }}<|end_header_id|>\n\n"
            "{{ .Content }}<|eot_id|>" + _CUE % "<|start_header_id|>assistant<|end_header_id|>\n\n" + "{{- end }}")


def _alpaca(name: str):
    instruction, response = ALPACA_HEADINGS[name]

    def template(bos: str, eos: str) -> str:
        return ("{{ if $.System }}{{ $.System }}{{ else }}" + ALPACA_PREAMBLE[name] + "{{ end }}\n\n"
                '{{ range $i, $_ := .Messages }}{{ if eq .Role "user" }}' + instruction + "\n{{ .Content }}\n\n"
                '{{ else if eq .Role "assistant" }}' + response + "\n{{ .Content }}" + eos + "\n\n{{ end }}"
                + _CUE % (response + "\n") + "{{ end }}")

    return template


GO_TEMPLATES = {"chatml": _chatml, "llama2": _llama2, "mistral": _mistral, "falcon": _falcon, "gemma": _gemma,
                "llama3": _llama3, "alpaca": _alpaca("alpaca"), "alpaca-es": _alpaca("alpaca-es")}
"""Amauta template → (bos, eos) → the same format as an Ollama (Go text/template) TEMPLATE."""

_BOS = {"llama2": "<s>", "mistral": "<s>", "gemma": "<bos>", "llama3": "<|begin_of_text|>"}


def ollama_template(template: str, *, tokenizer_adds_bos: bool = False, eos_token: str = "") -> str:
    """Amauta's `template` in Ollama's Go template syntax (its leading BOS left out when the tokenizer adds it)."""
    if template not in GO_TEMPLATES:
        raise AmautaError(f"Ollama export: no Ollama template for '{template}'; choose one of {', '.join(GO_TEMPLATES)}")
    bos = "" if tokenizer_adds_bos else _BOS.get(template, "")
    return GO_TEMPLATES[template](bos, eos_token)


def _quoted(value: str, what: str) -> str:
    """A Modelfile value in triple quotes (newlines and quotes kept as they are; Ollama has no escapes)."""
    if '"""' in value:
        raise AmautaError(f"Ollama export: the {what} {value[:40]!r} holds '\"\"\"', which a Modelfile cannot "
                          f"quote; change it in the profile")
    return f'"""{value}"""'


def modelfile(profile: Any, *, model_file: str, adapter_file: str | None = None, tokenizer_adds_bos: bool = False,
              eos_token: str = "") -> str:
    """The Modelfile text: FROM the GGUF (ADAPTER the GGUF LoRA), TEMPLATE, SYSTEM, stops and decoding."""
    gen = profile.generation
    stops = list(dict.fromkeys([*profile.stop_strings, *profile.eos_tokens]))
    lines = [f"# Ollama Modelfile written by `amauta export` (profile {profile.name}, template {profile.template}).",
             f"# Create the model with: ollama create NAME -f {MODELFILE}",
             f"FROM ./{model_file}"]
    if adapter_file:
        lines.append(f"ADAPTER ./{adapter_file}")
    lines.append("TEMPLATE " + _quoted(ollama_template(profile.template, tokenizer_adds_bos=tokenizer_adds_bos,
                                                       eos_token=eos_token), "template"))
    if profile.system_prompt:
        lines.append("SYSTEM " + _quoted(profile.system_prompt, "system prompt"))
    lines += ["PARAMETER stop " + _quoted(stop, "stop string") for stop in stops]
    lines += [f"PARAMETER temperature {gen.temperature}", f"PARAMETER top_p {gen.top_p}",
              f"PARAMETER top_k {gen.top_k}", f"PARAMETER repeat_penalty {gen.repetition_penalty}",
              f"PARAMETER num_predict {gen.max_new_tokens}",
              f"PARAMETER num_ctx {min(profile.context_length, NUM_CTX_CAP)}"]
    return "\n".join(lines) + "\n"
