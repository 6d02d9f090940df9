"""Run configs: presets reproduce the thesis, YAML + overrides merge, wrong keys get suggestions."""

from __future__ import annotations

import pytest

from amauta.core.config import parse_set
from amauta.core.errors import AmautaError
from amauta.train.config import build_config, fingerprint, preset_names, read_preset

REQUIRED = {"dataset": "data", "output_dir": "run"}


@pytest.mark.parametrize("name,model,lr", [("thesis-llama2", "llama2-7b-chat", 2e-4),
                                           ("thesis-mistral", "mistral-7b", 2e-5),
                                           ("thesis-falcon", "falcon-7b-instruct", 2e-4)])
def test_thesis_presets_are_the_thesis_settings(name, model, lr):
    cfg = build_config(None, REQUIRED, preset=name)
    assert cfg.model == model and cfg.preset == name
    q = cfg.quantization
    assert (q.mode, q.quant_type, q.double_quant, q.compute_dtype) == ("4bit", "nf4", True, "bfloat16")
    assert (cfg.lora.r, cfg.lora.alpha, cfg.lora.dropout, cfg.lora.targets) == (256, 256, 0.20, "attention")
    assert cfg.optimizer.lr == lr and cfg.optimizer.name == "paged_adamw_8bit" and cfg.optimizer.weight_decay == 0.001
    assert (cfg.scheduler, cfg.warmup_ratio, cfg.epochs) == ("cosine", 0.3, 3)


def test_presets_listed_and_cpu_quick_uses_embedded_model():
    assert preset_names() == ["cpu-quick", "knowledge-cpu", "thesis-falcon", "thesis-llama2", "thesis-mistral"]
    cfg = build_config(None, REQUIRED, preset="cpu-quick")
    assert cfg.model == "smollm2-135m-instruct" and cfg.quantization.mode == "none" and cfg.dtype == "auto"  # float32 unless the CPU has native bf16
    assert cfg.lora.r <= 16 and cfg.max_steps


def test_yaml_over_preset_keeps_nested_preset_values(tmp_path):
    path = tmp_path / "run.yaml"
    path.write_text("preset: thesis-mistral\ndataset: d\noutput_dir: o\nlora: {r: 64}\n")
    cfg = build_config(path, {"optimizer.lr": 1e-4, "epochs": None})
    assert cfg.lora.r == 64 and cfg.lora.alpha == 256 and cfg.lora.dropout == 0.2  # rest of lora from the preset
    assert cfg.optimizer.lr == 1e-4 and cfg.epochs == 3


def test_wrong_key_gets_a_suggestion(tmp_path):
    path = tmp_path / "run.yaml"
    path.write_text("model: tiny-llama\ndataset: d\noutput_dir: o\nlearning_rate: 1e-4\n")
    with pytest.raises(AmautaError, match=r"run.yaml: unknown key 'learning_rate'"):
        build_config(path)
    path.write_text("model: tiny-llama\ndataset: d\noutput_dir: o\noptimizer: {lr: 1e-4, wieght_decay: 0}\n")
    with pytest.raises(AmautaError, match=r"unknown key 'optimizer.wieght_decay' \(did you mean: weight_decay\?\)"):
        build_config(path)


def test_bad_values_and_missing_keys_are_one_line_errors(tmp_path):
    with pytest.raises(AmautaError, match="unknown preset 'thesis-lama2' \\(did you mean: thesis-llama2"):
        build_config(None, REQUIRED, preset="thesis-lama2")
    with pytest.raises(AmautaError, match="missing 'model'"):
        build_config(None, REQUIRED)
    with pytest.raises(AmautaError, match="'lora.dropout'"):
        build_config(None, {**REQUIRED, "model": "m", "lora.dropout": 1.5})
    with pytest.raises(AmautaError, match="expected KEY=VALUE"):
        parse_set(["lora.r"])


def test_set_values_are_typed_and_fingerprint_ignores_bookkeeping():
    assert parse_set(["lora.r=8", "optimizer.lr=1e-4", "packing=false", "lora.targets=[q_proj, v_proj]"]) == {
        "lora.r": 8, "optimizer.lr": 1e-4, "packing": False, "lora.targets": ["q_proj", "v_proj"]}
    a = build_config(None, {**REQUIRED, "model": "m"})
    b = build_config(None, {**REQUIRED, "model": "m", "output_dir": "elsewhere", "checkpoint_every": 7,
                            "micro_batch_size": 2})
    c = build_config(None, {**REQUIRED, "model": "m", "optimizer.lr": 3e-4})
    assert fingerprint(a) == fingerprint(b) != fingerprint(c)
    assert read_preset("cpu-quick")["model"] == "smollm2-135m-instruct"


def test_preset_applies_when_the_config_is_validated_directly():
    """The pipeline runner validates `with:` as TrainConfig itself: the preset must still fill in."""
    from amauta.train.config import TrainConfig

    cfg = TrainConfig.model_validate({"preset": "cpu-quick", "dataset": "d", "output_dir": "o", "lora": {"r": 4}})
    assert cfg.model == "smollm2-135m-instruct" and cfg.max_steps == 16 and cfg.lora.r == 4 and cfg.lora.alpha == 16
