"""`amauta report` on an exam folder: closed- vs open-book bars per model with 95% intervals, and the tables."""

from __future__ import annotations

import json
import math

import pytest

from amauta.evaluate.exam import mode_charts
from amauta.report import report
from amauta.report.report import ReportConfig, _yerr


def model(label, mode, acc, ci, candidate=None, adapter=None, rag_index=None) -> dict:
    metrics = {"n": 40, "facts": 12, "acc": acc, "acc_ci": ci, "acc_norm": acc, "abstain_unanswerable": 0.5,
               "abstain_answerable": 0.1, "wrong_answerable": 0.3}
    return {"label": label, "model": "tiny-llama", "adapter": adapter, "key": f"k-{label}", "n": 40,
            "candidate": candidate or label, "mode": mode, "rag_index": rag_index, "metrics": metrics}


def exam_summary() -> dict:
    models = [model("base", "closed", 0.30, [0.2, 0.4]), model("ft", "closed", 0.45, [0.35, 0.55], adapter="runs/ft"),
              model("rag:leyes", "open", 0.60, [0.5, 0.7], rag_index="leyes"),
              model("ft+rag", "open", 0.70, None, adapter="runs/ft", rag_index="leyes"),
              model("base+gold", "gold", 0.80, [0.7, 0.9], candidate="base"),
              model("base+options", "options", 0.25, [0.15, 0.35], candidate="base"),
              model("ft+options", "options", 0.28, [0.18, 0.38], candidate="ft", adapter="runs/ft")]
    return {"task": "exam", "n_items": 40, "created": "2026-11-30", "items_file": "items.jsonl", "models": models,
            "reference": "base", "comparisons": [],
            "exam": {"path": "examples/exams/leyes.jsonl", "split": "test",
                     "counts": {"facts": 10, "unanswerable_items": 8}}}


def test_closed_and_open_book_bars_per_model_with_intervals():
    [chart] = mode_charts(exam_summary())
    assert chart.groups == ["base", "ft"]  # rag:leyes is base's open-book bar, ft+rag is ft's
    assert list(chart.series) == ["libro cerrado", "RAG", "con la fuente", "solo opciones"]
    assert chart.series["libro cerrado"] == [30.0, 45.0] and chart.series["RAG"] == [60.0, 70.0]
    assert chart.series["con la fuente"][0] == 80.0 and math.isnan(chart.series["con la fuente"][1])  # no bar
    assert chart.errors["libro cerrado"] == [(20.0, 40.0), (35.0, pytest.approx(55.0))]
    assert chart.errors["RAG"] == [(50.0, 70.0), None]  # ft+rag has no interval: no whisker, not a certain one
    assert _yerr([30.0, 45.0], [(20.0, 40.0), None]) == [[10.0, 0.0], [10.0, 0.0]]
    assert _yerr([30.0], [None]) is None


def test_two_candidates_with_the_same_weights_in_one_mode_get_a_group_each():
    summary = exam_summary()
    summary["models"].append(model("otro", "closed", 0.31, [0.2, 0.4]))
    [chart] = mode_charts(summary)
    assert chart.groups == ["base", "ft", "otro"] and chart.series["libro cerrado"] == [30.0, 45.0, 31.0]


def test_the_report_draws_the_exam_bars_with_whiskers_and_the_tables(tmp_path, monkeypatch):
    folder = tmp_path / "eval-exam"
    folder.mkdir()
    (folder / "summary.json").write_text(json.dumps(exam_summary()), encoding="utf-8")
    drawn = []
    real = report.grouped_bars

    def spy(groups, series, title, ylabel, errors=None):
        drawn.append(errors)
        return real(groups, series, title, ylabel, errors)

    monkeypatch.setattr(report, "grouped_bars", spy)
    out = report.run(ReportConfig(run_dirs=[str(folder)], out=str(tmp_path / "rep")))
    markdown = (out / "report.md").read_text(encoding="utf-8")
    assert "## Examen sobre los documentos" in markdown and "### Opción múltiple (log-verosimilitud)" in markdown
    assert "| rag:leyes | RAG |" in markdown and "accuracy of each model closed book, open book" in markdown
    assert drawn and drawn[0]["RAG"] == [(50.0, 70.0), None]
    figures = list((out / "figures").iterdir())
    assert len(figures) == 1 and figures[0].read_bytes().startswith(b"\x89PNG")
