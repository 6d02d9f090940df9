"""The demo step: every prompt × strategy answered, files written, a killed run resumes."""

from __future__ import annotations

import json
import typing

import pytest

from amauta.chat import demo
from amauta.core.errors import AmautaError
from amauta.core.files import read_jsonl


def test_demo_writes_generations_summary_manifest(tmp_path, monkeypatch):
    config = demo.DemoConfig(model="tiny-gemma3", max_new_tokens=5, out=str(tmp_path / "demo"),
                             prompts=["Hola", "¿Qué es el IVA?"])
    out = demo.run(config)
    rows = list(read_jsonl(out / "generations.jsonl"))
    assert [(r["prompt"], r["strategy"]) for r in rows] == [(p, s) for p in config.prompts for s in config.strategies]
    assert all(1 <= r["tokens"] <= 5 and r["tokens_per_second"] > 0 for r in rows)
    summary = json.loads((out / "summary.json").read_text(encoding="utf-8"))
    assert set(summary["strategies"]) == {"greedy", "sampling", "beam", "contrastive"}
    assert summary["contrastive_vs_greedy_time_per_token"] > 0
    assert json.loads((out / "manifest.json").read_text(encoding="utf-8"))["stage"] == "chat.demo"

    # A rerun with the same settings answers nothing again (rows come from generations.jsonl).
    def boom(*args, **kwargs):
        raise AssertionError("should have resumed")

    monkeypatch.setattr("amauta.chat.generate.generate", boom)
    assert [r["text"] for r in read_jsonl(demo.run(config) / "generations.jsonl")] == [r["text"] for r in rows]


def test_demo_config_is_what_the_pipeline_reads():
    assert typing.get_type_hints(demo.run)["config"] is demo.DemoConfig
    assert len(demo.DemoConfig().prompts) == 4
    from amauta.core.config import validate_config

    with pytest.raises(AmautaError, match="unknown key 'strategy'"):
        validate_config(demo.DemoConfig, {"strategy": ["greedy"]})
    with pytest.raises(AmautaError, match="strategies"):
        validate_config(demo.DemoConfig, {"strategies": ["gredy"]})
