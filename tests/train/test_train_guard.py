"""The forgetting guard: Belebele accuracy logged beside the loss; warn or stop on a drop."""

from __future__ import annotations

import json

import pytest

from amauta.core.errors import AmautaError
from amauta.evaluate.belebele import load_items, score
from amauta.models.load import load_model
from amauta.train.config import build_config
from amauta.train.recipe import LoRARecipe, run


def _items(path, n=4):
    rows = [{"id": str(i), "passage": f"Quito es la capital de Ecuador. El número es {i}.",
             "question": "¿Cuál es la capital de Ecuador?", "options": ["Quito", "Lima", "Bogotá", "Caracas"],
             "gold": "A"} for i in range(n)]
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))
    return path


def test_guard_scores_with_the_belebele_scorer(run_config, tmp_path):
    items = _items(tmp_path / "belebele.jsonl")
    cfg = build_config(run_config(max_steps=4, guard={"enabled": True, "items": str(items), "every": 2, "sample": 3}), {})
    out = run(cfg, progress=False)
    rows = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    guard = [(r["step"], r["guard_accuracy"]) for r in rows if "guard_accuracy" in r]
    assert [s for s, _ in guard] == [0, 2, 4]
    # Each accuracy is a count of right answers over the 3 sampled items.
    assert all(0.0 <= acc <= 1.0 and acc * 3 == pytest.approx(round(acc * 3)) for _, acc in guard)
    # The same scorer on its own agrees: before training (a fresh LoRA changes nothing) the base model's
    # accuracy, at the end the saved adapter's.
    sample = load_items(items)[:3]
    assert guard[0][1] == pytest.approx(score(load_model(cfg.model), sample, formulation="cloze")["acc"])
    assert guard[-1][1] == pytest.approx(score(load_model(cfg.model, adapter=out), sample, formulation="cloze")["acc"])


@pytest.mark.parametrize("action,steps", [("warn", 6), ("stop", 4)])
def test_guard_warns_or_stops_on_a_drop(run_config, tmp_path, monkeypatch, action, steps):
    """Scores 0.8 at the start and 0.8, 0.5 later: the drop at step 4 exceeds the 0.1 margin."""
    scores = iter([0.8, 0.8, 0.5, 0.5])
    monkeypatch.setattr(LoRARecipe, "_setup_guard", lambda self: None)
    monkeypatch.setattr(LoRARecipe, "_guard_score", lambda self: next(scores))
    cfg = build_config(run_config(max_steps=6, checkpoint_every=3,
                                  guard={"enabled": True, "items": "x", "every": 2, "margin": 0.1, "action": action}), {})
    out = run(cfg, progress=False)
    summary = json.loads((out / "summary.json").read_text())
    assert summary["steps"] == steps and summary["completed"] == (action == "warn")
    if action == "stop":  # the stop step is checkpointed, so nothing is lost
        assert (out / "checkpoints" / "step-4" / "state.json").is_file()


def test_guard_needs_items(run_config):
    with pytest.raises(AmautaError, match="guard.items"):
        run(build_config(run_config(guard={"enabled": True}), {}), progress=False)
