"""`amauta train` and `amauta export` from the command line: overrides, one-line errors, exit codes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def amauta(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, "-m", "amauta.cli", *args], cwd=REPO, env=env, capture_output=True,
                          text=True, timeout=300)


def test_train_then_export_from_the_cli(run_config, tmp_path):
    config = run_config()
    result = amauta("train", str(config), "--lr", "1e-3", "--max-steps", "2", "--set", "lora.r=2", "--no-progress")
    assert result.returncode == 0, result.stderr[-2000:]
    assert "2 steps, final loss" in result.stdout
    saved = (tmp_path / "run" / "config.yaml").read_text()
    assert "lr: 0.001" in saved and "r: 2" in saved
    exported = amauta("export", str(tmp_path / "run"), "--merge", "--gguf", "--out", str(tmp_path / "export"))
    assert exported.returncode == 0, exported.stderr[-2000:]
    assert (tmp_path / "export" / "model-f16.gguf").is_file()
    assert json.loads((tmp_path / "export" / "config.json").read_text())["model_type"] == "llama"


def test_errors_are_one_line_with_exit_code_2(run_config, tmp_path):
    bad_key = amauta("train", str(run_config()), "--set", "lora.alpah=4")
    assert bad_key.returncode == 2
    assert "unknown key 'lora.alpah' (did you mean: alpha?)" in bad_key.stderr.replace("\n", " ")
    assert "Traceback" not in bad_key.stderr
    no_data = amauta("train", str(run_config()), "--dataset", str(tmp_path / "nowhere"))
    assert no_data.returncode == 2 and "dataset folder not found" in no_data.stderr
    presets = amauta("train", "--list-presets")
    assert presets.returncode == 0 and "thesis-mistral: mistral-7b, 4bit, LoRA r 256" in presets.stdout
    export = amauta("export", str(tmp_path), "--out", str(tmp_path / "x"))
    assert export.returncode == 2 and "not a run folder" in export.stderr


def test_plot_loss_overlays_runs(tmp_path):
    import json as _json

    for name, offset in (("a", 0.0), ("b", 0.3)):
        run = tmp_path / name
        run.mkdir()
        rows = [{"step": s, "loss": 3.0 - 0.1 * s + offset} for s in range(1, 6)] + [{"step": 5, "val_loss": 2.8 + offset}]
        (run / "log.jsonl").write_text("".join(_json.dumps(r) + "\n" for r in rows))
    result = amauta("plot-loss", str(tmp_path / "a"), str(tmp_path / "b"), "--out", str(tmp_path / "both.png"))
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "both.png").read_bytes()[:4] == b"\x89PNG"
    missing = amauta("plot-loss", str(tmp_path / "nope"), "--out", str(tmp_path / "x.png"))
    assert missing.returncode == 2 and "not found" in missing.stderr
