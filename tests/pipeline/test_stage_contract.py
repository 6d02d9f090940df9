"""The stage contract: every pipeline entry point returns what it wrote, its output folder, as a Path."""

from __future__ import annotations

import json
import typing
from pathlib import Path

import pytest

from amauta import pipeline

REPO = Path(__file__).resolve().parents[2]
SAMPLE = REPO / "examples" / "data" / "belebele_sample.jsonl"


@pytest.mark.parametrize("uses", sorted(pipeline.ENTRY_POINTS))
def test_every_stage_declares_that_it_returns_a_path(uses):
    function, _ = pipeline._entry_point(uses)
    assert typing.get_type_hints(function)["return"] is Path, f"{uses}: run(config) must return its output folder"


def test_an_eval_and_a_report_step_hand_their_folders_on(tmp_path, monkeypatch):
    monkeypatch.setenv("AMAUTA_NO_PROGRESS", "1")
    out = tmp_path / "out"
    pipe = tmp_path / "pipe.yaml"
    pipe.write_text(json.dumps({"out": str(out), "steps": [
        {"name": "bel", "uses": "eval.belebele",
         "with": {"model": "tiny-llama", "data": str(SAMPLE), "limit": 3, "out": "${out}/bel"}},
        {"name": "rep", "uses": "report", "with": {"run_dirs": ["${steps.bel}"], "out": "${out}/rep"}},
    ]}))
    pipeline.run_pipeline(pipe)
    state = json.loads((out / "pipeline-state.json").read_text())
    assert state["bel"]["out"] == str(out / "bel") and (out / "bel" / "summary.json").is_file()
    assert state["rep"]["out"] == str(out / "rep") and (out / "rep" / "report.md").is_file()
