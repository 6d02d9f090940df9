"""Tiny random-weight models of each thesis architecture, built in memory in well under a second.

Unit tests across every stage use them (`tiny-llama`, `tiny-mistral`, `tiny-falcon`, `tiny-gemma3`
in the registry), so each architecture's templates, LoRA targets and decoding paths are exercised
without any download. Their tokenizer is a small byte-level BPE trained on a fixed Spanish text,
so it encodes any string (accents included) and round-trips exactly.
"""

from __future__ import annotations

from functools import lru_cache

import torch

ARCHITECTURES = ("llama", "mistral", "falcon", "gemma3", "qwen2")

# Special tokens of every template we ship, so each renders to whole tokens on the tiny tokenizer.
SPECIAL_TOKENS = [
    "<unk>", "<s>", "</s>", "<pad>",
    "<|im_start|>", "<|im_end|>", "<|endoftext|>",
    "<bos>", "<eos>", "<start_of_turn>", "<end_of_turn>",
]

_CORPUS = (
    "El Servicio de Rentas Internas administra los impuestos en Ecuador. "
    "¿Cuál es la tarifa del IVA? La declaración del impuesto a la renta se presenta cada año. "
    "Hola, ¿cómo estás? Muy bien, gracias. Escribe un poema corto sobre la montaña y el mar. "
    "Resume el texto en una oración. La respuesta correcta es la opción B. "
    "[INST] <<SYS>> <</SYS>> [/INST] User: Falcon: System: ### Instrucción: ### Entrada: ### Respuesta: "
    "user assistant system model 0 1 2 3 4 5 6 7 8 9 + - = ( ) , . ; : ! ? ñ á é í ó ú ü Ñ"
)


@lru_cache(maxsize=1)
def tiny_tokenizer_json() -> str:
    """Train (once per process) a deterministic 600-token byte-level BPE and return it as JSON."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE(unk_token=None))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=600,
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator([_CORPUS] * 4, trainer=trainer)
    return tok.to_str()


def tiny_tokenizer(chat_template: str | None = None):
    """A `PreTrainedTokenizerFast` over the tiny BPE (eos `</s>`, pad `<pad>`, bos `<s>`)."""
    from tokenizers import Tokenizer
    from transformers import PreTrainedTokenizerFast

    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=Tokenizer.from_str(tiny_tokenizer_json()),
        bos_token="<s>",
        eos_token="</s>",
        unk_token="<unk>",
        pad_token="<pad>",
        model_max_length=512,
    )
    if chat_template:
        tokenizer.chat_template = chat_template
    return tokenizer


def tiny_config(arch: str, vocab_size: int):
    """A transformers config for a 2-layer, 64-wide model of the given architecture."""
    from transformers import FalconConfig, Gemma3TextConfig, LlamaConfig, MistralConfig, Qwen2Config

    common = dict(vocab_size=vocab_size, hidden_size=64, num_hidden_layers=2, num_attention_heads=4,
                  max_position_embeddings=512, bos_token_id=1, eos_token_id=2, pad_token_id=3)
    if arch == "llama":
        return LlamaConfig(intermediate_size=128, num_key_value_heads=4, **common)
    if arch == "mistral":
        return MistralConfig(intermediate_size=128, num_key_value_heads=2, sliding_window=256, **common)
    if arch == "falcon":
        # Falcon-7B's layout: multi-query attention and parallel attention/MLP blocks.
        return FalconConfig(multi_query=True, parallel_attn=True, new_decoder_architecture=False,
                            alibi=False, bias=False, **common)
    if arch == "gemma3":
        # query_pre_attn_scalar = head_dim, as in the real Gemma 3 models (and what llama.cpp assumes).
        return Gemma3TextConfig(intermediate_size=128, num_key_value_heads=1, head_dim=16,
                                query_pre_attn_scalar=16, sliding_window=64, **common)
    if arch == "qwen2":  # Qwen 2.5's layout: grouped-query attention with query/key/value biases
        return Qwen2Config(intermediate_size=128, num_key_value_heads=2, **common)
    raise ValueError(f"unknown tiny architecture {arch!r}; choose one of {', '.join(ARCHITECTURES)}")


def tiny_model(arch: str, seed: int = 0):
    """A random-weight causal LM (fp32, eval mode) of `arch`, identical for the same seed."""
    from transformers import AutoModelForCausalLM

    config = tiny_config(arch, vocab_size=len(tiny_tokenizer()))
    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    model.generation_config.pad_token_id = 3
    return model.eval()
