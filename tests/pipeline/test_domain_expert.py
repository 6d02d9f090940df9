"""examples/domain-expert.yaml: documents → index → augment → train → exam → report, and its closing lines."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import yaml

from amauta import pipeline
from amauta.core.config import validate_config
from amauta.report.closing import closing_summary

REPO = Path(__file__).resolve().parents[2]
PIPELINE = REPO / "examples" / "domain-expert.yaml"


def _steps_with_placeholders(config: pipeline.PipelineConfig, out: Path) -> list[tuple[str, object]]:
    """Each step's validated config, `${steps.NAME}` standing for the folder NAME would write (a plan)."""
    variables = {"out": str(out)}
    planned = []
    for step in config.steps:
        _, config_class = pipeline._entry_point(step.uses)
        raw = pipeline._substitute(step.with_, variables)
        planned.append((step.uses, validate_config(config_class, raw, source=f"{PIPELINE}: step '{step.name}'")))
        variables[f"steps.{step.name}"] = str(out / step.name)
    return planned


def test_the_domain_expert_pipeline_validates_and_plans_every_step(monkeypatch):
    monkeypatch.chdir(REPO)  # the file's paths are relative to the repository root, as `amauta run` is used
    config = validate_config(pipeline.PipelineConfig, yaml.safe_load(PIPELINE.read_text()), source=str(PIPELINE))
    planned = dict(_steps_with_placeholders(config, Path(config.out)))
    assert list(planned) == ["rag.index", "data.augment", "train", "eval.exam", "report"]
    augment, train, exam = planned["data.augment"], planned["train"], planned["eval.exam"]
    assert augment.exam == "examples/exams/leyes.jsonl" and all(Path(f).is_file() for f in augment.from_files)
    assert train.preset == "knowledge-cpu" and train.early_stopping.enabled and train.early_stopping.split == "dev"
    assert str(train.dataset) == f"{config.out}/data"
    assert exam.split == "test"
    # base vs the run vs RAG alone vs the run with RAG, the run and the index being the pipeline's own folders
    assert exam.candidates.split(",") == ["base", f"experto={config.out}/train", f"rag=rag:{config.out}/index",
                                          f"experto+rag={config.out}/train+rag:{config.out}/index"]


def test_the_augment_step_is_a_stage_returning_its_dataset_folder():
    function, config_class = pipeline._entry_point("data.augment")
    assert config_class.__name__ == "AugmentConfig" and function.__module__ == "amauta.data.augment"


def _tiny_version(tmp_path: Path) -> Path:
    """The example pipeline on the tiny random model with a few steps and items (same stages, same wiring)."""
    data = yaml.safe_load(PIPELINE.read_text())
    data["out"] = str(tmp_path / "out")
    steps = {step["name"]: step["with"] for step in data["steps"]}
    for name in ("data", "train", "exam"):
        steps[name]["model"] = "tiny-llama"
    for name in ("data", "exam"):
        steps[name]["exam"] = str(REPO / steps[name]["exam"])
    steps["index"]["docs"] = steps["data"]["docs"] = [str(REPO / "examples" / "docs")]
    steps["data"]["from_files"] = [str(REPO / f) for f in steps["data"]["from_files"]]
    steps["train"].update(max_steps=2, batch_size=2, eval_every=2, checkpoint_every=2, eval_max_examples=4,
                          dtype="float32")
    steps["train"]["early_stopping"].update(exam=str(REPO / "examples/exams/leyes.jsonl"), every=1, limit=3)
    steps["exam"].update(limit=4, max_new_tokens=4, docs=str(REPO / "examples" / "docs"))
    path = tmp_path / "domain-expert.yaml"
    path.write_text(yaml.safe_dump(data, allow_unicode=True))
    return path


@pytest.mark.slow
def test_the_pipeline_runs_end_to_end_on_the_tiny_model_and_ends_with_the_serve_command(tmp_path, monkeypatch,
                                                                                         capsys):
    monkeypatch.setenv("AMAUTA_NO_PROGRESS", "1")
    out = pipeline.run_pipeline(_tiny_version(tmp_path))
    state = json.loads((out / "pipeline-state.json").read_text())
    assert list(state) == ["index", "data", "train", "exam", "report"]
    stats = json.loads((out / "data" / "stats.json").read_text())
    assert stats["augment"]["recipe"] == "paraphrase" and stats["augment"]["dropped_held_out"] == 0
    summary = json.loads((out / "exam" / "summary.json").read_text())
    assert {m["label"] for m in summary["models"]} >= {"base", "experto", "rag", "experto+rag"}
    assert {m["mode"] for m in summary["models"]} == {"closed", "open"}  # the example skips options-only rows
    assert (out / "report" / "report.md").is_file()
    printed = re.sub(r"\s+", " ", capsys.readouterr().out)
    assert f"amauta serve --adapter out={out / 'train'} --rag {out / 'index'}" in printed  # NAME: the pipeline folder's
    lines = closing_summary([Path(state[name]["out"]) for name in state])
    assert any(line.startswith("exam (test split, 4 items") and "experto+rag" in line for line in lines)
