"""Piped output keeps every table row on one line (`amauta models | grep llama2-7b-chat` finds it)."""

from __future__ import annotations

import io
import os
import subprocess
import sys
from pathlib import Path

from amauta.core.console import RULE_WIDTH, make_console

SRC = Path(__file__).resolve().parents[2] / "src"


def test_amauta_models_piped_keeps_each_row_whole():
    env = {k: v for k, v in os.environ.items() if k != "COLUMNS"}
    env["PYTHONPATH"] = os.pathsep.join([str(SRC), env.get("PYTHONPATH", "")])
    # stdout is a pipe, as in `amauta models | grep llama2-7b-chat`.
    proc = subprocess.run([sys.executable, "-m", "amauta.cli", "models"], capture_output=True, text=True, env=env,
                          timeout=120)
    assert proc.returncode == 0, proc.stderr
    rows = [line for line in proc.stdout.splitlines() if "llama2-7b-chat" in line]
    assert len(rows) == 1, proc.stdout
    # The whole row: its hub id, template and context length are on the same line as its name.
    assert "meta-llama/Llama-2-7b-chat-hf" in rows[0] and "4,096" in rows[0]


def test_an_eval_table_piped_keeps_each_row_whole(capsys, monkeypatch):
    from amauta.evaluate.compare import print_summary

    monkeypatch.delenv("COLUMNS", raising=False)
    label = "derecho-tributario-ecuatoriano-r256"
    summary = {"task": "belebele", "n_items": 900, "task_config": {"formulation": "cloze"},
               "models": [{"label": "base", "n": 900, "metrics": {"acc": 0.41, "acc_ci": [0.38, 0.44],
                                                                 "acc_norm": 0.43, "acc_norm_ci": [0.40, 0.46]}},
                          {"label": label, "adapter": f"runs/{label}/adapter", "n": 900,
                           "metrics": {"acc": 0.47, "acc_ci": [0.44, 0.50], "acc_norm": 0.49,
                                       "acc_norm_ci": [0.46, 0.52]}}],
               "comparisons": [{"other": label, "delta": 0.06, "delta_ci": [0.03, 0.09], "lost": 20, "gained": 74,
                                "p_mcnemar": 0.0001}]}
    print_summary(summary)
    rows = [line for line in capsys.readouterr().out.splitlines() if label in line]
    assert rows and "47.0" in rows[0] and "[46.0, 52.0]" in rows[0] and "0.000" in rows[0]


def test_a_piped_console_is_wide_but_its_rules_are_not(monkeypatch):
    monkeypatch.delenv("COLUMNS", raising=False)
    out = io.StringIO()
    console = make_console(file=out)
    console.print("palabra " * 40)
    console.rule("sección")
    lines = out.getvalue().splitlines()
    assert lines[0].strip() == ("palabra " * 40).strip()
    assert len(lines[1]) == RULE_WIDTH and "sección" in lines[1]


def test_an_explicit_width_or_columns_still_decides(monkeypatch):
    monkeypatch.delenv("COLUMNS", raising=False)
    assert make_console(file=io.StringIO(), width=50).width == 50
    monkeypatch.setenv("COLUMNS", "100")
    assert make_console(file=io.StringIO()).width == 100
