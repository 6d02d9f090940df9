"""Record transformers 4.55's built-in contrastive search on the embedded SmolLM2, as a test fixture.

transformers 5.x no longer ships contrastive search; Amauta implements it (`amauta.chat.contrastive`) and
`tests/chat/test_chat_contrastive_reference.py` requires the very same token ids as 4.55. This script runs
in a *separate* venv where 4.55 still has it:

    python3 -m venv .venv-ref
    .venv-ref/bin/pip install torch==2.13.0            # first: the local CPU build
    .venv-ref/bin/pip install 'transformers==4.55.*' safetensors tokenizers
    .venv/bin/amauta generate "hola" --max-new-tokens 1  # makes the converted SmolLM2 folder once
    .venv-ref/bin/python scripts/contrastive_reference.py

It loads the *converted* folder (`$AMAUTA_HOME/models/smollm2-135m-instruct`, written by transformers 5.x
from the GGUF), renders a few Spanish prompts with the tokenizer's chat template, and writes the prompt
ids and the generated ids (penalty_alpha 0.6, top_k 4, fp32) to
`tests/chat/fixtures/contrastive_reference.json`. Only transformers, tokenizers and torch are imported.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

import torch
import transformers
from transformers import AutoConfig, AutoModelForCausalLM, PreTrainedTokenizerFast

REPO = Path(__file__).resolve().parents[1]
DEFAULT_HOME = Path(os.environ.get("AMAUTA_HOME", Path.home() / ".cache" / "amauta")).expanduser()

# Our own Spanish prompts (one with a system prompt, one multi-turn), chat-templated like `amauta chat` does.
CONVERSATIONS = [
    [{"role": "user", "content": "¿Qué es el impuesto al valor agregado?"}],
    [{"role": "system", "content": "Eres un asistente útil que siempre responde en español."},
     {"role": "user", "content": "Escribe una frase corta sobre las montañas de los Andes."}],
    [{"role": "user", "content": "Explica en dos oraciones qué es una red neuronal."}],
    [{"role": "user", "content": "Hola, ¿cómo estás?"},
     {"role": "assistant", "content": "¡Muy bien, gracias! ¿En qué puedo ayudarte?"},
     {"role": "user", "content": "¿Cuál es la capital de Ecuador?"}],
]
EOS_TOKENS = ["<|im_end|>", "<|endoftext|>"]  # the smollm2-135m-instruct profile's eos tokens


def load_tokenizer(folder: Path) -> PreTrainedTokenizerFast:
    """The folder's tokenizer.json and chat template (5.x writes a tokenizer class 4.55 does not know)."""
    settings = json.loads((folder / "tokenizer_config.json").read_text(encoding="utf-8"))
    tokenizer = PreTrainedTokenizerFast(tokenizer_file=str(folder / "tokenizer.json"),
                                        **{k: settings[k] for k in ("bos_token", "eos_token", "unk_token", "pad_token")
                                           if isinstance(settings.get(k), str)})
    template = folder / "chat_template.jinja"
    tokenizer.chat_template = template.read_text(encoding="utf-8") if template.is_file() else settings["chat_template"]
    return tokenizer


def load_model(folder: Path):
    """The fp32 model; a 5.x config keeps rope_theta under `rope_parameters`, which 4.55 would ignore."""
    config = AutoConfig.from_pretrained(folder)
    rope = getattr(config, "rope_parameters", None)
    if isinstance(rope, dict) and "rope_theta" in rope:
        config.rope_theta = rope["rope_theta"]
        if rope.get("rope_type", "default") != "default":
            config.rope_scaling = dict(rope)
        print(f"rope_theta from rope_parameters: {config.rope_theta}", file=sys.stderr)
    model = AutoModelForCausalLM.from_pretrained(folder, config=config, torch_dtype=torch.float32)
    return model.eval()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model-dir", type=Path, default=DEFAULT_HOME / "models" / "smollm2-135m-instruct",
                        help="the converted SmolLM2 folder")
    parser.add_argument("--out", type=Path, default=REPO / "tests" / "chat" / "fixtures" / "contrastive_reference.json")
    parser.add_argument("--max-new-tokens", type=int, default=24)
    parser.add_argument("--penalty-alpha", type=float, default=0.6)
    parser.add_argument("--top-k", type=int, default=4)
    args = parser.parse_args()

    if not transformers.__version__.startswith("4."):
        sys.exit(f"run this with transformers 4.x (found {transformers.__version__}); see the docstring")
    if not (args.model_dir / "config.json").is_file():
        sys.exit(f"{args.model_dir}: no converted model; run `.venv/bin/amauta generate hola --max-new-tokens 1` first")
    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "2")))
    tokenizer = load_tokenizer(args.model_dir)
    model = load_model(args.model_dir)
    eos_ids = [tokenizer.convert_tokens_to_ids(t) for t in EOS_TOKENS]

    cases = []
    for messages in CONVERSATIONS:
        text = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        prompt_ids = tokenizer(text, add_special_tokens=False, return_tensors="pt").input_ids
        with torch.no_grad():
            out = model.generate(prompt_ids, attention_mask=torch.ones_like(prompt_ids), do_sample=False,
                                 penalty_alpha=args.penalty_alpha, top_k=args.top_k,
                                 max_new_tokens=args.max_new_tokens, eos_token_id=eos_ids,
                                 pad_token_id=eos_ids[0])
        new_ids = out[0, prompt_ids.shape[1]:].tolist()
        cases.append({"messages": messages, "prompt_ids": prompt_ids[0].tolist(), "new_ids": new_ids,
                      "text": tokenizer.decode(new_ids, skip_special_tokens=True)})
        print(f"{messages[-1]['content']!r} -> {cases[-1]['text']!r}", file=sys.stderr)

    fixture = {"transformers": transformers.__version__, "torch": torch.__version__,
               "model": "smollm2-135m-instruct (converted folder, fp32)", "penalty_alpha": args.penalty_alpha,
               "top_k": args.top_k, "max_new_tokens": args.max_new_tokens, "eos_ids": eos_ids, "cases": cases}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(fixture, ensure_ascii=False, indent=1) + "\n", encoding="utf-8")
    print(f"wrote {args.out}", file=sys.stderr)


if __name__ == "__main__":
    main()
