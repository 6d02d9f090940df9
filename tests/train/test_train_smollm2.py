"""One integration run on the embedded SmolLM2-135M: the real model, template and tokenizer."""

from __future__ import annotations

import json

import pytest
import torch

from amauta.train.config import build_config
from amauta.train.export import export_run
from amauta.train.recipe import run
from conftest import write_dataset


@pytest.mark.integration
def test_cpu_quick_preset_on_smollm2_trains_and_exports(tmp_path):
    from transformers import AutoModelForCausalLM

    from amauta.models.load import load_model
    from amauta.models.registry import get_profile

    data = write_dataset(tmp_path / "data", n_train=12, n_val=2, template="chatml", model="smollm2-135m-instruct",
                         system_prompt=get_profile("smollm2-135m-instruct").system_prompt)
    # The demo's preset, shortened: 3 steps of 4 examples.
    cfg = build_config(None, {"dataset": str(data), "output_dir": str(tmp_path / "run"), "max_steps": 3,
                              "batch_size": 4, "eval_every": 3, "checkpoint_every": 3, "optimizer.lr": 5e-3},
                       preset="cpu-quick")
    out = run(cfg, progress=False)
    rows = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    losses = [r["loss"] for r in rows if "loss" in r]
    assert len(losses) == 3 and all(0 < x < 10 for x in losses)  # a trained instruct model: far below ln(49152)
    assert any("val_loss" in r for r in rows)

    merged_dir = export_run(out, tmp_path / "export", merge=True, dtype="float32")
    with_adapter = load_model("smollm2-135m-instruct", adapter=out, dtype="float32")
    merged = AutoModelForCausalLM.from_pretrained(merged_dir, dtype=torch.float32)
    ids = with_adapter.tokenizer("¿Qué institución administra los impuestos en Ecuador?", return_tensors="pt").input_ids
    with torch.no_grad():
        assert torch.allclose(merged(ids).logits, with_adapter.model(ids).logits, atol=1e-3)
