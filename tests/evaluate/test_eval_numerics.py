"""Scores that do not depend on how they were computed: fp32 by default on a CPU, batch size in the key otherwise.

In bf16 an item's log-probability moves with the other items of its batch (SmolLM2: up to ~1 nat between
batches of 8 and 3), so a resumed run, which regroups the items left, would not give the numbers of an
uninterrupted one. These tests fail on the runner whose cache key ignored dtype and batch size.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from amauta.core.errors import AmautaError
from amauta.evaluate.belebele import BelebeleConfig, BelebeleTask, run
from amauta.evaluate.perplexity import PerplexityConfig
from amauta.evaluate.perplexity import run as run_perplexity

REPO = Path(__file__).resolve().parents[2]
SAMPLE = REPO / "examples" / "data" / "belebele_sample.jsonl"


def _rows(out: Path) -> dict[str, dict]:
    return {r["item_id"]: r for r in map(json.loads, (out / "items.jsonl").read_text().splitlines())}


@pytest.fixture
def cpu_with_native_bf16(monkeypatch):
    """A CPU on which `load_model`'s `dtype: auto` picks bf16 (AVX512-BF16 or AMX), and no GPU."""
    import torch

    from amauta.models import load

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(load, "cpu_supports_bf16", lambda: True)
    assert load.resolve_dtype("auto", "cpu") == "bfloat16"  # what `amauta generate` would use here


def test_cpu_default_dtype_is_float32_for_scoring(tiny, tmp_path, cpu_with_native_bf16):
    asked: list[dict] = []

    def loader(spec, **kwargs):
        asked.append(kwargs)
        return tiny("llama")

    cfg = BelebeleConfig(model="smollm2-135m-instruct", data=str(SAMPLE), limit=4, out=str(tmp_path / "ev"))
    summary = run(cfg, loader=loader, show_progress=False)
    assert asked[0]["dtype"] == "float32"
    assert summary["models"][0]["numerics"] == {"dtype": "float32"}
    # Perplexity (the other log-likelihood task) follows the same rule.
    ppl = PerplexityConfig(model="smollm2-135m-instruct", data=str(SAMPLE), limit=2, out=str(tmp_path / "ppl"))
    run_perplexity(ppl, loader=loader, show_progress=False)
    assert asked[1]["dtype"] == "float32"
    # bf16 stays an explicit choice.
    run(cfg.model_copy(update={"dtype": "bfloat16", "out": str(tmp_path / "bf16")}), loader=loader, show_progress=False)
    assert asked[2]["dtype"] == "bfloat16"


def test_cache_key_holds_the_batch_size_in_bf16_not_in_fp32():
    from amauta.evaluate.runner import ModelSpec, cache_key, eval_numerics

    spec = ModelSpec("base", "smollm2-135m-instruct")
    task = {"formulation": "cloze"}

    def key(dtype: str, batch_size: int, **extra) -> str:
        return cache_key(spec, task, eval_numerics(spec, {"dtype": dtype, "device": "cpu", **extra}, batch_size)[1])

    assert key("float32", 8) == key("float32", 3)
    assert key("bfloat16", 8) != key("bfloat16", 3)
    assert key("float16", 8) != key("float16", 3)
    assert key("float32", 8, quantization="4bit") != key("float32", 3, quantization="4bit")
    assert key("float32", 8) != key("bfloat16", 8)  # the dtype is always part of the key


def test_rerun_in_bf16_with_another_batch_size_recomputes(tiny, tmp_path):
    from amauta.models.load import load_model

    def loader(spec, **kwargs):
        return load_model("tiny-llama", **kwargs)

    cfg = BelebeleConfig(model="tiny-llama", data=str(SAMPLE), limit=6, batch_size=3, out=str(tmp_path / "ev"),
                         dtype="bfloat16", device="cpu")
    run(cfg, loader=loader, show_progress=False)
    same = run(cfg, loader=loader, show_progress=False)
    assert same["models"][0]["computed"] == 0  # the same command resumes
    regrouped = run(cfg.model_copy(update={"batch_size": 2}), loader=loader, show_progress=False)
    assert regrouped["models"][0]["computed"] == 6  # numbers of another grouping are not mixed in
    assert regrouped["models"][0]["numerics"] == {"dtype": "bfloat16", "quantization": "none", "batch_size": 2,
                                                  "device": "cpu"}
    # In float32 the batch size does not change the numbers, so the cache is shared across batch sizes.
    fp32 = cfg.model_copy(update={"dtype": "float32"})
    run(fp32, loader=loader, show_progress=False)
    assert run(fp32.model_copy(update={"batch_size": 2}), loader=loader, show_progress=False)["models"][0]["computed"] == 0


def test_items_cached_under_the_old_key_are_refused(tiny, tmp_path):
    out = tmp_path / "ev"
    out.mkdir()
    old_row = {"key": "0123456789abcdef", "model": "base", "item_id": "1", "gold": "A", "pred": "A", "correct": True}
    (out / "items.jsonl").write_text(json.dumps(old_row) + "\n", encoding="utf-8")
    cfg = BelebeleConfig(model="tiny-llama", data=str(SAMPLE), limit=2, out=str(out))
    with pytest.raises(AmautaError, match="older Amauta.*dtype and batch size.*new --out folder") as caught:
        run(cfg, loader=lambda spec, **kw: tiny("llama"), show_progress=False)
    assert "\n" not in str(caught.value)
    assert (out / "items.jsonl").read_text() == json.dumps(old_row) + "\n"  # nothing rewritten


@pytest.mark.integration
def test_killed_and_resumed_eval_equals_an_uninterrupted_one(tmp_path, monkeypatch, cpu_with_native_bf16):
    """SmolLM2 with `dtype: auto` on a bf16-capable CPU: killed after one batch, resumed with another
    batch size (so the items left are grouped differently), the same predictions and log-probs within 1e-4."""
    cfg = BelebeleConfig(model="smollm2-135m-instruct", data=str(SAMPLE), limit=6, batch_size=3,
                         out=str(tmp_path / "whole"))
    run(cfg, show_progress=False)

    evaluate, batches = BelebeleTask.evaluate, []

    def dies_after_one_batch(self, loaded, batch):
        if batches:
            raise RuntimeError("killed")
        batches.append(len(batch))
        return evaluate(self, loaded, batch)

    cut = cfg.model_copy(update={"out": str(tmp_path / "cut")})
    monkeypatch.setattr(BelebeleTask, "evaluate", dies_after_one_batch)
    with pytest.raises(RuntimeError, match="killed"):
        run(cut, show_progress=False)
    monkeypatch.setattr(BelebeleTask, "evaluate", evaluate)
    assert len(_rows(tmp_path / "cut")) == 3
    resumed = run(cut.model_copy(update={"batch_size": 2}), show_progress=False)
    assert resumed["models"][0]["computed"] == 3  # only the items left, in batches of 2 and 1

    whole, cut_rows = _rows(tmp_path / "whole"), _rows(tmp_path / "cut")
    assert whole.keys() == cut_rows.keys()
    for item_id, row in whole.items():
        assert cut_rows[item_id]["pred"] == row["pred"]
        assert cut_rows[item_id]["logprobs"] == pytest.approx(row["logprobs"], abs=1e-4)
