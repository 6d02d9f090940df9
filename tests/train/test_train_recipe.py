"""The recipe on tiny models: outputs, padding-free batches, exact loss normalisation, bad input."""

from __future__ import annotations

import json

import pytest
import torch

from amauta.core.errors import AmautaError
from amauta.train.config import build_config
from amauta.train.recipe import pack, pad, run
from conftest import write_dataset


def _rows(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_run_writes_the_run_folder(run_config):
    cfg = build_config(run_config(max_steps=6, eval_every=3, checkpoint_every=3), {})
    out = run(cfg, progress=False)
    assert {"adapter", "checkpoints", "log.jsonl", "loss.png", "config.yaml", "manifest.json", "summary.json"} <= {
        p.name for p in out.iterdir()}
    assert (out / "adapter" / "adapter_model.safetensors").is_file()
    assert (out / "loss.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    rows = _rows(out / "log.jsonl")
    train = [r for r in rows if "loss" in r]
    assert [r["step"] for r in train] == [1, 2, 3, 4, 5, 6]
    assert {"loss", "lr", "grad_norm", "tokens", "tokens_per_s", "epoch"} <= set(train[0])
    assert [r["step"] for r in rows if "val_loss" in r] == [3, 6]
    assert train[0]["lr"] < train[1]["lr"] or train[0]["lr"] == 0  # warmup starts at 0
    assert sorted(p.name for p in (out / "checkpoints").iterdir()) == ["step-3", "step-6"]
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["stage"] == "train" and manifest["summary"]["steps"] == 6 and manifest["inputs"]


def test_loss_goes_down_on_repeated_data(run_config):
    cfg = build_config(run_config(max_steps=30, batch_size=8, eval_every=30, checkpoint_every=30,
                                  optimizer={"lr": 2e-2}, lora={"r": 8, "targets": "all-linear", "dropout": 0.0},
                                  max_examples=8, warmup_ratio=0.0), {})
    rows = [r for r in _rows(run(cfg, progress=False) / "log.jsonl") if "loss" in r]
    assert rows[-1]["loss"] < rows[0]["loss"] - 0.5


def test_packed_row_equals_separate_examples(tiny):
    """Examples concatenated in one row must not see each other: same loss as one at a time."""
    from amauta.data.tokenize import tokenize_messages
    from conftest import conversations

    loaded = tiny("llama")
    examples = []
    for messages in conversations(3):
        enc = tokenize_messages(loaded.tokenizer, loaded.profile, messages)
        examples.append({"input_ids": enc["input_ids"], "labels": enc["labels"]})
    model = loaded.model
    with torch.no_grad():
        packed = model(**pack(examples, torch.device("cpu")), num_items_in_batch=1, use_cache=False).loss
        alone = sum(model(**pack([ex], torch.device("cpu")), num_items_in_batch=1, use_cache=False).loss for ex in examples)
        padded = model(**pad(examples, loaded.tokenizer.pad_token_id, torch.device("cpu")), num_items_in_batch=1, use_cache=False).loss
    assert packed.item() == pytest.approx(alone.item(), rel=1e-5)
    assert padded.item() == pytest.approx(alone.item(), rel=1e-5)


def test_micro_batch_size_does_not_change_the_math(run_config, tmp_path):
    """Gradient accumulation is normalised over the step's answer tokens: 1×4 == 4×1."""
    losses = []
    for micro in (1, 4):
        cfg = build_config(run_config(f"m{micro}.yaml", output_dir=str(tmp_path / f"m{micro}"), micro_batch_size=micro,
                                      max_steps=3, lora={"dropout": 0.0}), {})
        losses.append([r["loss"] for r in _rows(run(cfg, progress=False) / "log.jsonl") if "loss" in r])
    assert losses[0] == pytest.approx(losses[1], abs=1e-5)


@pytest.mark.parametrize("arch,template", [("mistral", "mistral"), ("falcon", "falcon"), ("gemma3", "gemma")])
def test_every_thesis_architecture_trains(arch, template, run_config, tmp_path):
    data = write_dataset(tmp_path / f"data-{arch}", n_train=8, n_val=2, template=template, model=f"tiny-{arch}")
    cfg = build_config(run_config(model=f"tiny-{arch}", dataset=str(data), max_steps=2, eval_every=2,
                                  checkpoint_every=2), {})
    out = run(cfg, progress=False)
    assert json.loads((out / "summary.json").read_text())["steps"] == 2


def test_unpadded_and_padded_batches_give_the_same_loss(run_config, tmp_path):
    results = []
    for packing in (True, False):
        cfg = build_config(run_config(f"p{packing}.yaml", output_dir=str(tmp_path / f"p{packing}"), packing=packing,
                                      max_steps=2, lora={"dropout": 0.0}), {})
        results.append([r["loss"] for r in _rows(run(cfg, progress=False) / "log.jsonl") if "loss" in r])
    assert results[0] == pytest.approx(results[1], abs=1e-5)


def test_bad_input_is_one_line_and_writes_nothing(run_config, tmp_path):
    out = tmp_path / "run"
    with pytest.raises(AmautaError, match="dataset folder not found"):
        run(build_config(run_config(dataset=str(tmp_path / "missing")), {}), progress=False)
    other = write_dataset(tmp_path / "chatml-data", template="chatml", model="smollm2-135m-instruct")
    with pytest.raises(AmautaError, match="prepared for template 'chatml'.*'llama2'"):
        run(build_config(run_config(dataset=str(other)), {}), progress=False)
    with pytest.raises(AmautaError, match=r"lora.targets: query_key_value not in this LlamaForCausalLM; its linear "
                                          r"modules are: down_proj, gate_proj, k_proj, o_proj, q_proj, up_proj, v_proj"):
        run(build_config(run_config(lora={"targets": ["q_proj", "query_key_value"]}), {}), progress=False)
    assert not out.exists()
    with pytest.raises(AmautaError, match="fewer than batch_size 64"):
        run(build_config(run_config(batch_size=64), {}), progress=False)


def test_out_of_memory_halves_the_micro_batch_and_keeps_the_batch(run_config, tmp_path, monkeypatch):
    """A micro-batch of more than 2 examples 'does not fit': the step is retried with 2, same math."""
    from amauta.train.recipe import LoRARecipe

    original = LoRARecipe._collate

    def collate_or_oom(self, examples):
        if len(examples) > 2 and self.model.training:
            raise torch.cuda.OutOfMemoryError("CUDA out of memory (simulated)")
        return original(self, examples)

    base = run(build_config(run_config("ref.yaml", output_dir=str(tmp_path / "ref"), micro_batch_size=2,
                                       max_steps=2, lora={"dropout": 0.0}), {}), progress=False)
    monkeypatch.setattr(LoRARecipe, "_collate", collate_or_oom)
    out = run(build_config(run_config(micro_batch_size=4, max_steps=2, lora={"dropout": 0.0}), {}), progress=False)
    got = [r for r in _rows(out / "log.jsonl") if "loss" in r]
    want = [r for r in _rows(base / "log.jsonl") if "loss" in r]
    assert [r["micro_batch_size"] for r in got] == [2, 2]
    assert [r["loss"] for r in got] == pytest.approx([r["loss"] for r in want], abs=1e-6)
