"""Issue 10 item 13: no confidence interval (and no "significant" delta) over fewer than MIN_CI_N units.

One or two prompts used to print `3.67 [3.67–3.67]`, and a delta over two items an interval that excluded
zero. Below the minimum the summaries hold no interval and every table says `(n=2, sin intervalo)`.
"""

from __future__ import annotations

import io
import json
import math

import pytest
from rich.console import Console

from amauta.evaluate import stats
from amauta.evaluate.compare import table_rows
from amauta.judge.candidates import Answer
from amauta.judge.judge import summarize_run
from amauta.judge.rubric import CRITERIA
from amauta.judge.tables import print_summary, report_markdown


def test_no_bootstrap_interval_below_the_minimum():
    assert stats.MIN_CI_N == 5
    assert all(math.isnan(x) for x in stats.bootstrap_ci([3.67, 3.67]))
    assert all(math.isnan(x) for x in stats.bootstrap_ci([1, 0, 1, 1]))
    low, high = stats.bootstrap_ci([1, 0, 1, 1, 0])
    assert 0 <= low <= 0.6 <= high <= 1
    flips = stats.paired_flips({"a": False, "b": False}, {"a": True, "b": True})
    assert flips["delta"] == 1.0 and all(math.isnan(x) for x in flips["delta_ci"])  # not "significant"
    assert flips["p_mcnemar"] == 0.5  # the exact test needs no minimum: two flips are far from significant


def _belebele_summary(n: int) -> dict:
    """A two-model comparison as the runner writes it, over `n` items the adapter all gets right."""
    base = {f"i{k}": k % 2 == 0 for k in range(n)}
    tuned = dict.fromkeys(base, True)
    models = []
    for label, correct in (("base", base), ("tuned", tuned)):
        values = [float(v) for v in correct.values()]
        models.append({"label": label, "model": "tiny-llama", "adapter": None, "n": n,
                       "metrics": {"acc": sum(values) / n, "acc_ci": list(stats.bootstrap_ci(values)), "n": n}})
    return {"task": "belebele", "n_items": n, "models": models,
            "comparisons": [{"other": "tuned", **stats.paired_flips(base, tuned)}]}


def test_compare_table_says_no_interval_below_the_minimum():
    headers, rows = table_rows(_belebele_summary(2))
    ci, delta = headers.index("95% CI"), headers.index("Δ vs base")
    assert rows[0][ci] == "(n=2, sin intervalo)" and rows[1][ci] == "(n=2, sin intervalo)"
    assert rows[1][delta] == "+50.0 (n=2, sin intervalo)"
    headers, rows = table_rows(_belebele_summary(8))
    assert rows[0][ci].startswith("[") and rows[1][delta].startswith("+50.0 [")


def test_an_old_summary_with_a_zero_width_interval_is_not_shown_as_one():
    summary = _belebele_summary(2)
    summary["models"][1]["metrics"]["acc_ci"] = [1.0, 1.0]  # what older versions wrote
    summary["comparisons"][0]["delta_ci"] = [0.0, 1.0]
    headers, rows = table_rows(summary)
    assert "[100.0, 100.0]" not in rows[1] and rows[1][headers.index("95% CI")] == "(n=2, sin intervalo)"


def _judged(tmp_path, prompts: int):
    answers, verdicts = [], {}
    for candidate, score in (("base", 3), ("tuned", 4)):
        for i in range(prompts):
            answer = Answer(candidate, f"q{i}", 0, 0, "basic", f"Pregunta {i}", f"Respuesta {i}")
            answers.append(answer)
            scores = dict.fromkeys(CRITERIA, score + (i % 2))
            verdicts[answer.key] = {"key": f"{candidate}{i}", "scores": scores, "overall": float(score + i % 2)}
    return summarize_run(tmp_path, answers, verdicts, ["base", "tuned"], ["basic"], {"judge": "juez", "n": 1})


def test_judge_tables_say_no_interval_over_two_prompts(tmp_path):
    summary = _judged(tmp_path, prompts=2)
    entry = summary["judge_table"]["base"]["all"]
    assert entry["n"] == 2 and all(math.isnan(x) for x in entry["mean_of_n"]["ci"])
    buffer = io.StringIO()
    print_summary(json.loads((tmp_path / "summary.json").read_text()), Console(file=buffer, width=300))
    text = buffer.getvalue()
    assert "3.50 (n=2, sin intervalo)" in text and "+1.00 (n=2, sin intervalo)" in text
    assert "[3.50" not in text and "nan" not in text
    markdown = report_markdown(summary)
    assert "3.50 (n=2, sin intervalo)" in markdown and "+1.00 (n=2, sin intervalo)" in markdown


def test_judge_tables_keep_the_interval_from_the_minimum_on(tmp_path):
    summary = _judged(tmp_path, prompts=stats.MIN_CI_N)
    buffer = io.StringIO()
    print_summary(summary, Console(file=buffer, width=300))
    assert "sin intervalo" not in buffer.getvalue()
    low, high = summary["judge_table"]["base"]["all"]["mean_of_n"]["ci"]
    assert low < high


def test_report_by_category_has_no_interval_for_a_small_category(tmp_path):
    from amauta.report.report import ReportConfig
    from amauta.report.report import run as run_report

    folder = tmp_path / "eval-bel"
    folder.mkdir()
    summary = _belebele_summary(8)
    for model in summary["models"]:
        model["metrics"]["by_category"] = {
            "ley": {"acc": 1.0, "acc_ci": [1.0, 1.0], "n": 2},
            "general": {"acc": 0.5, "acc_ci": list(stats.bootstrap_ci([1, 0, 1, 0, 1, 0])), "n": 6}}
    (folder / "summary.json").write_text(json.dumps(summary))
    report = run_report(ReportConfig(run_dirs=[str(folder)], out=str(tmp_path / "report")))
    markdown = (report / "report.md").read_text(encoding="utf-8")
    assert "| base | ley | 100.0 | (n=2, sin intervalo) | 2 |" in markdown
    assert "| base | general | 50.0 | [" in markdown


@pytest.mark.parametrize("n", [None, 0, 4])
def test_interval_note(n):
    assert stats.has_interval(n) is (n is None)
    assert stats.interval_note(n).endswith("sin intervalo)")
