"""`amauta report` over eval folders, a training run and a judge-style summary; the CLI end to end."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from amauta.core.errors import AmautaError
from amauta.evaluate.belebele import BelebeleConfig
from amauta.evaluate.belebele import run as run_belebele
from amauta.report.report import ReportConfig
from amauta.report.report import run as run_report

REPO = Path(__file__).resolve().parents[2]
SAMPLE = REPO / "examples" / "data" / "belebele_sample.jsonl"


def _training_run(folder: Path) -> Path:
    folder.mkdir(parents=True)
    rows = [{"step": s, "loss": 3.0 / s} for s in range(1, 11)] + [{"step": 10, "val_loss": 0.5}]
    (folder / "log.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (folder / "summary.json").write_text(json.dumps({"steps": 10, "final_loss": 0.3}))
    (folder / "config.yaml").write_text("model: tiny-llama\nlora:\n  r: 8\n")
    return folder


def test_report_renders_eval_training_and_hooked_sections(tiny, tmp_path):
    ev = tmp_path / "eval-bel"
    data = tmp_path / "cat.jsonl"  # two categories, so the per-category table and chart appear
    lines = SAMPLE.read_text(encoding="utf-8").splitlines()[:8]
    data.write_text("".join(json.dumps({**json.loads(line), "category": "ley" if k % 2 else "general"}, ensure_ascii=False)
                            + "\n" for k, line in enumerate(lines)), encoding="utf-8")
    run_belebele(BelebeleConfig(model="tiny-llama", data=str(data), out=str(ev)),
                 loader=lambda spec, **kw: tiny("llama"), show_progress=False)
    train = _training_run(tmp_path / "runs" / "es-lora")
    other = tmp_path / "eval-other"
    other.mkdir()
    (other / "summary.json").write_text(json.dumps({"task": "made-up", "score": 3}))
    ppl = tmp_path / "eval-ppl"  # a perplexity folder written by hand: the report reads only summary.json
    ppl.mkdir()
    (ppl / "summary.json").write_text(json.dumps({
        "task": "perplexity", "task_config": {"max_length": 1024}, "n_items": 3, "comparisons": [],
        "items_file": "items.jsonl", "models": [{"label": "base", "model": "tiny-llama", "adapter": None, "key": "k1",
                                                 "n": 3, "metrics": {"ppl": 12.5, "ppl_ci": [11.0, 14.0],
                                                                     "bits_per_byte": 1.2, "n": 3}}]}))
    folder = run_report(ReportConfig(run_dirs=[str(ev), str(train), str(other), str(ppl)], out=str(tmp_path / "report")))
    assert folder == tmp_path / "report"  # the stage contract: run returns its output folder
    md = (folder / "report.md").read_text(encoding="utf-8")
    html = (folder / "report.html").read_text(encoding="utf-8")
    assert "## Belebele" in md and "| base |" in md and "By category" in md and "| base | ley |" in md
    assert "items.jsonl" in md and '"key":' in md and "sha256" in md
    assert "## Training run `es-lora`" in md and "final_loss" in md
    assert "No renderer for this task" in md
    figures = sorted(p.name for p in (tmp_path / "report" / "figures").iterdir())
    assert len(figures) == 4 and all(f"figures/{f}" in md for f in figures)
    assert html.count("data:image/png;base64,") == 4 and 'src="figures/' not in html
    overview = md.split("## Overview")[1].split("## ")[0]  # both tasks side by side for the base model
    assert "belebele Accuracy (cloze)" in overview and "perplexity Perplexity" in overview and "12.500" in overview
    assert "<table>" in html and "<link" not in html and "<script" not in html  # self-contained
    assert json.loads((tmp_path / "report" / "manifest.json").read_text())["stage"] == "evaluate.report"


def test_report_uses_the_judge_hook(tmp_path):
    judge = tmp_path / "eval-judge"
    judge.mkdir()
    summary = {"task": "judge", "set": "general-es", "judge": "fake", "n": 3, "answers": 2, "judged": 2, "failed": 0,
               "categories": ["basic"], "items_file": "items.jsonl", "judge_table": {}}
    (judge / "summary.json").write_text(json.dumps(summary))
    folder = run_report(ReportConfig(run_dirs=[str(judge)], out=str(tmp_path / "r")))
    assert "Rubric grading: general-es" in (folder / "report.md").read_text(encoding="utf-8")


def test_a_task_renders_itself_through_the_section_it_registers(tmp_path, monkeypatch):
    from amauta.core import summaries

    def markdown(summary, heading_level=3):
        return f"{'#' * heading_level} Exam {summary['score']:.2f}"

    def charts(summary):
        return [summaries.Chart("topics", ["a", "b"], {"base": [1.0, 2.0]}, "By topic", "score", "Score by topic")]

    monkeypatch.setitem(summaries._SECTIONS, "exam", summaries.ReportSection("Knowledge exam", markdown, charts))
    folder = tmp_path / "eval-exam"
    folder.mkdir()
    (folder / "summary.json").write_text(json.dumps({"task": "exam", "score": 0.75}))
    md = (run_report(ReportConfig(run_dirs=[str(folder)], out=str(tmp_path / "r"))) / "report.md").read_text(encoding="utf-8")
    assert "## Knowledge exam" in md and "### Exam 0.75" in md and "No renderer" not in md
    assert "![Score by topic (eval-exam)](figures/01-exam-topics.png)" in md
    assert (tmp_path / "r" / "figures" / "01-exam-topics.png").read_bytes().startswith(b"\x89PNG")


def test_report_bad_folder(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(AmautaError, match="neither an eval folder"):
        run_report(ReportConfig(run_dirs=[str(tmp_path / "empty")], out=str(tmp_path / "r")))
    with pytest.raises(AmautaError, match="folder not found"):
        run_report(ReportConfig(run_dirs=[str(tmp_path / "nope")], out=str(tmp_path / "r")))


def test_cli_eval_and_report_end_to_end(tmp_path):
    """The commands a person types: eval belebele, a bad file (one line, exit 2), report."""
    amauta = [sys.executable, "-m", "amauta.cli"]
    out = tmp_path / "ev"
    done = subprocess.run([*amauta, "eval", "belebele", "--model", "tiny-llama", "--data", str(SAMPLE), "--limit", "3",
                           "--formulation", "letter", "--out", str(out), "--no-progress"],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "Accuracy" in done.stdout and (out / "summary.json").is_file()
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"passage": "p", "question": "q", "options": ["a", "b", "c", "d"], "gold": "Z"}\n')
    failed = subprocess.run([*amauta, "eval", "belebele", "--model", "tiny-llama", "--data", str(bad), "--out",
                             str(tmp_path / "x")], capture_output=True, text=True, timeout=300)
    assert failed.returncode == 2
    assert failed.stderr.strip().count("\n") == 0 and "bad.jsonl:1: gold 'Z' is not one of A, B, C, D" in failed.stderr
    report = subprocess.run([*amauta, "report", str(out), "--out", str(tmp_path / "rep")], capture_output=True, text=True,
                            timeout=300)
    assert report.returncode == 0, report.stderr[-2000:]
    assert (tmp_path / "rep" / "report.html").is_file()


def test_report_keeps_to_its_own_folder(tmp_path):
    """Issue 10, items 1 and 3: a report replaces only a report folder, and only with --overwrite when its
    inputs changed; a training run (or any folder Amauta did not make) is never written into."""
    from amauta.core.manifest import write_manifest

    train = _training_run(tmp_path / "runs" / "es-lora")
    write_manifest(train, "train", {"model": "tiny-llama"}, complete=True)
    before = {p.name: p.read_bytes() for p in train.iterdir()}
    with pytest.raises(AmautaError, match=r"es-lora: is an Amauta run folder \(stage 'train'\), not a report folder"):
        run_report(ReportConfig(run_dirs=[str(train)], out=str(train)))
    assert {p.name: p.read_bytes() for p in train.iterdir()} == before

    out = tmp_path / "rep"
    run_report(ReportConfig(run_dirs=[str(train)], out=str(out)))
    made = (out / "report.md").stat().st_mtime_ns
    run_report(ReportConfig(run_dirs=[str(train)], out=str(out)))  # same runs, same results: left as it is
    assert (out / "report.md").stat().st_mtime_ns == made
    with open(train / "log.jsonl", "a") as handle:
        handle.write(json.dumps({"step": 11, "loss": 0.2}) + "\n")
    with pytest.raises(AmautaError, match=r"rep: holds a report made from other inputs \(.*log.jsonl changed\); "
                                          r"pass --overwrite"):
        run_report(ReportConfig(run_dirs=[str(train)], out=str(out)))
    run_report(ReportConfig(run_dirs=[str(train)], out=str(out)), overwrite=True)
    from amauta.core.files import sha256_file

    assert json.loads((out / "manifest.json").read_text())["inputs"][str(train / "log.jsonl")] == sha256_file(train / "log.jsonl")
