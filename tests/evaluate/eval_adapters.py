"""A LoRA adapter the evaluation tests share."""

from __future__ import annotations

from pathlib import Path


def random_adapter(folder: Path) -> Path:
    """A LoRA adapter on tiny-llama with non-zero B, so its answers differ from the base's."""
    import torch
    from peft import LoraConfig, get_peft_model

    from amauta.models.tiny import tiny_model

    model = get_peft_model(tiny_model("llama"), LoraConfig(r=4, target_modules=["q_proj", "v_proj"]))
    torch.manual_seed(1)
    with torch.no_grad():
        for name, param in model.named_parameters():
            if "lora_B" in name:
                param.normal_(0, 0.5)
    model.save_pretrained(folder / "adapter")
    return folder
