"""examples/judge-dpo.yaml: judge (best of N, fake judge) → preferences → DPO → judge again, offline."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from amauta import pipeline
from amauta.core.config import validate_config
from amauta.core.files import read_jsonl
from amauta.llm.fake_server import FakeOpenAIServer, fake_judge_reply, fake_judge_score

REPO = Path(__file__).resolve().parents[2]
PIPELINE = REPO / "examples" / "judge-dpo.yaml"


def test_the_fake_judge_scores_the_graded_answer_not_the_question_or_reference():
    from amauta.judge.judge import build_judge_messages, parse_verdict

    def verdict(answer: str) -> dict:
        messages = build_judge_messages("¿Cuál es la tarifa del IVA?", answer, "15 %",
                                        [{"role": "user", "content": "Hola"}, {"role": "assistant", "content": "Hola"}])
        return parse_verdict(json.loads(fake_judge_reply(messages)))

    answers = [f"La tarifa es {n} %." for n in range(12)]
    scores = [verdict(a)["scores"]["accuracy"] for a in answers]
    assert scores == [fake_judge_score(a) for a in answers]  # the graded answer decides, nothing else
    assert len(set(scores)) > 1 and all(1 <= s <= 5 for s in scores)
    assert verdict(answers[0]) == verdict(answers[0])  # deterministic


def test_the_example_validates_and_wires_judge_prefs_dpo_judge(monkeypatch):
    monkeypatch.chdir(REPO)
    config = validate_config(pipeline.PipelineConfig, yaml.safe_load(PIPELINE.read_text()), source=str(PIPELINE))
    assert [s.uses for s in config.steps] == ["eval.judge", "data.preferences", "train", "eval.judge"]
    steps = {s.name: s.with_ for s in config.steps}
    assert steps["prefs"]["from_judge"] == "${steps.judge}" and steps["dpo"]["dataset"] == "${steps.prefs}"
    assert steps["dpo"]["method"] == "dpo" and steps["judge"]["n"] >= 2
    assert "dpo=${steps.dpo}" in steps["judge-again"]["candidates"]


def _tiny_version(tmp_path: Path, url: str) -> Path:
    """The example on the tiny random model with a few items and steps (same stages, same wiring)."""
    data = yaml.safe_load(PIPELINE.read_text())
    data["out"] = str(tmp_path / "out")
    steps = {step["name"]: step["with"] for step in data["steps"]}
    for name in ("judge", "judge-again"):
        steps[name].update(model="tiny-llama", judge_url=url, max_new_tokens=6, judge_backoff=0.0)
    steps["dpo"].update(model="tiny-llama", max_steps=2, batch_size=2, eval_every=2, checkpoint_every=2,
                        dtype="float32", max_length=128)
    path = tmp_path / "judge-dpo.yaml"
    path.write_text(yaml.safe_dump(data, allow_unicode=True))
    return path


@pytest.mark.slow
def test_the_pipeline_runs_offline_on_the_tiny_model(tmp_path, monkeypatch):
    monkeypatch.setenv("AMAUTA_NO_PROGRESS", "1")
    with FakeOpenAIServer(fake_judge_reply, model="fake-judge") as url:
        out = pipeline.run_pipeline(_tiny_version(tmp_path, url))
    state = json.loads((out / "pipeline-state.json").read_text())
    assert list(state) == ["judge", "prefs", "dpo", "judge-again"]
    first = json.loads((out / "judge" / "summary.json").read_text())
    assert first["judged"] == first["answers"] > 0 and first["failed"] == 0
    # The fake judge's scores vary with the answer, so best and worst answers a point apart make pairs.
    pairs = list(read_jsonl(out / "prefs" / "train.jsonl"))
    assert pairs and all(p["chosen"] != p["rejected"] for p in pairs)
    scores = {(r["item"], r["answer"]): r["overall"] for r in read_jsonl(out / "judge" / "items.jsonl")}
    for pair in pairs:
        item = pair["id"].removeprefix("judge-")
        assert scores[(item, pair["chosen"])] - scores[(item, pair["rejected"])] >= 1
    train = json.loads((out / "dpo" / "manifest.json").read_text())
    assert train["config"]["method"] == "dpo" and (out / "dpo" / "adapter").is_dir()
    again = json.loads((out / "judge-again" / "summary.json").read_text())
    assert again["candidates"] == ["base", "dpo"] and again["judged"] == again["answers"]
    assert set(again["judge_table"]) == {"base", "dpo"}
