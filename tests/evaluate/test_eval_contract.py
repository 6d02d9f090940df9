"""What the runner and its tasks promise each other: the Task protocol, and what `run_eval` returns."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from amauta.evaluate.belebele import BelebeleConfig, BelebeleTask, build_task
from amauta.evaluate.mgsm import MgsmTask
from amauta.evaluate.perplexity import PerplexityTask
from amauta.evaluate.runner import EvalResult, ModelSpec, Task, load_summary, run_eval
from amauta.evaluate.xquad import XquadTask
from amauta.judge.candidates import CandidateTask

REPO = Path(__file__).resolve().parents[2]
SAMPLE = REPO / "examples" / "data" / "belebele_sample.jsonl"
PROTOCOL = {name for name in vars(Task) if not name.startswith("_")} | set(Task.__annotations__)


def test_the_protocol_declares_what_the_runner_calls():
    assert PROTOCOL == {"name", "config_key", "items", "length", "evaluate", "summarize"}


@pytest.mark.parametrize("task", [BelebeleTask, PerplexityTask, XquadTask, MgsmTask, CandidateTask])
def test_every_task_has_every_member_of_the_protocol(task):
    assert not {name for name in PROTOCOL if not hasattr(task, name)}


def test_run_eval_returns_the_folder_the_summary_and_the_models_rows(tiny, tmp_path):
    task, _ = build_task(BelebeleConfig(model="tiny-llama", data=str(SAMPLE), limit=5))
    result = run_eval(task, [ModelSpec("base", "tiny-llama")], tmp_path / "ev", batch_size=2,
                      loader=lambda spec, **kw: tiny("llama"), show_progress=False)
    assert isinstance(result, EvalResult) and result.folder == tmp_path / "ev"
    assert result.summary == load_summary(result.folder)
    ids = [str(item["id"]) for item in task.items()]
    (rows,) = result.rows.values()
    assert list(result.rows) == ["base"] and [r["item_id"] for r in rows] == ids  # item order, not scoring order
    written = {r["item_id"]: r for r in map(json.loads, (result.folder / "items.jsonl").read_text().splitlines())}
    assert rows == [written[i] for i in ids]
