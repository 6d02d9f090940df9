"""Resume after a power cut: SIGKILL a run mid-epoch between checkpoints, resume, compare with a clean run."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from amauta.core.errors import AmautaError

REPO = Path(__file__).resolve().parents[2]

# Runs `amauta train` in this process, but SIGKILLs itself right after logging step KILL_AT: the
# kill lands mid-epoch (12 steps per epoch) and between checkpoints (every 4 steps), like a power cut.
KILLER = """
import os, signal, sys
from amauta.train import recipe
kill_at = int(os.environ["KILL_AT"])
original = recipe.LoRARecipe._log
def log_then_die(self, row):
    original(self, row)
    if row.get("step") == kill_at and "loss" in row:
        os.kill(os.getpid(), signal.SIGKILL)
recipe.LoRARecipe._log = log_then_die
from amauta.cli import main
sys.argv = ["amauta", "train", sys.argv[1], "--no-progress"]
main()
"""


def _train(args: list[str], env_extra: dict | None = None, script: str | None = None) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1", **(env_extra or {})}
    cmd = [sys.executable, "-c", script, *args] if script else [sys.executable, "-m", "amauta.cli", "train", *args, "--no-progress"]
    return subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)


def _train_rows(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines() if '"loss"' in line]


def test_sigkill_mid_epoch_then_resume_matches_uninterrupted_run(run_config, tmp_path):
    common = {"max_steps": 10, "checkpoint_every": 4, "eval_every": 5, "batch_size": 4,
              "lora": {"dropout": 0.1}, "micro_batch_size": 2}
    clean_cfg = run_config("clean.yaml", output_dir=str(tmp_path / "clean"), **common)
    killed_cfg = run_config("killed.yaml", output_dir=str(tmp_path / "killed"), **common)

    clean = _train([str(clean_cfg)])
    assert clean.returncode == 0, clean.stderr[-2000:]

    died = _train([str(killed_cfg)], {"KILL_AT": "6"}, script=KILLER)
    assert died.returncode == -9, died.stderr[-2000:]
    killed = tmp_path / "killed"
    assert [r["step"] for r in _train_rows(killed)] == [1, 2, 3, 4, 5, 6]
    assert sorted(p.name for p in (killed / "checkpoints").iterdir() if not p.name.startswith(".")) == ["step-4"]
    assert not (killed / "adapter").exists()

    resumed = _train([str(killed_cfg), "--resume"])
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert "resuming" in resumed.stderr and "step-4" in resumed.stderr

    a, b = _train_rows(tmp_path / "clean"), _train_rows(killed)
    assert [r["step"] for r in b] == list(range(1, 11))  # no step repeated or skipped
    assert len(a) == len(b) == 10
    assert abs(a[-1]["loss"] - b[-1]["loss"]) < 1e-4
    for x, y in zip(a, b, strict=True):
        assert x["lr"] == pytest.approx(y["lr"], rel=1e-9)
        assert x["loss"] == pytest.approx(y["loss"], abs=1e-4)
    va = [r["val_loss"] for r in map(json.loads, (tmp_path / "clean" / "log.jsonl").read_text().splitlines()) if "val_loss" in r]
    vb = [r["val_loss"] for r in map(json.loads, (killed / "log.jsonl").read_text().splitlines()) if "val_loss" in r]
    assert va == pytest.approx(vb, abs=1e-4) and len(va) == 2
    assert json.loads((killed / "summary.json").read_text())["steps"] == 10


def test_plain_rerun_resumes_and_finished_run_is_not_retrained(run_config, tmp_path):
    from amauta.train.config import build_config
    from amauta.train.recipe import run

    cfg = build_config(run_config(max_steps=4, checkpoint_every=2), {})
    run(cfg, progress=False)
    log_before = (cfg.output_dir / "log.jsonl").read_text()
    run(cfg, progress=False)  # same output dir, finished: outputs rewritten, no step trained again
    assert (cfg.output_dir / "log.jsonl").read_text() == log_before


def test_checkpoint_from_another_config_is_refused_and_nothing_overwritten(run_config, tmp_path):
    from amauta.train.config import build_config
    from amauta.train.recipe import run

    cfg = build_config(run_config(max_steps=4, checkpoint_every=2), {})
    run(cfg, progress=False)
    before = {p: p.stat().st_mtime_ns for p in cfg.output_dir.rglob("*") if p.is_file()}
    other = build_config(run_config("other.yaml", max_steps=4, checkpoint_every=2, optimizer={"lr": 1e-3}), {})
    with pytest.raises(AmautaError, match=r"step-4: written by another config \(optimizer.lr: 0.005 → 0.001\)"):
        run(other, progress=False)
    after = {p: p.stat().st_mtime_ns for p in cfg.output_dir.rglob("*") if p.is_file()}
    assert before == after


def test_resume_without_checkpoint_and_foreign_folder_are_refused(run_config, tmp_path):
    from amauta.train.config import build_config
    from amauta.train.recipe import run

    with pytest.raises(AmautaError, match="no complete checkpoint to resume"):
        run(build_config(run_config(output_dir=str(tmp_path / "new")), {}), resume=True, progress=False)
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("mine")
    with pytest.raises(AmautaError, match="not an Amauta run folder"):
        run(build_config(run_config(output_dir=str(foreign)), {}), progress=False)
    assert (foreign / "notes.txt").read_text() == "mine"


def test_changed_dataset_is_refused(run_config, tmp_path, dataset):
    from amauta.train.config import build_config
    from amauta.train.recipe import run

    cfg = build_config(run_config(max_steps=2, checkpoint_every=2), {})
    run(cfg, progress=False)
    with open(dataset / "train.jsonl", "a") as handle:
        handle.write(json.dumps({"id": "extra", "messages": [{"role": "user", "content": "Hola"},
                                                             {"role": "assistant", "content": "Hola."}],
                                 "source": "muestra", "category": "qa"}) + "\n")
    with pytest.raises(AmautaError, match="changed since this run started"):
        run(cfg, progress=False)
    assert yaml.safe_load((cfg.output_dir / "config.yaml").read_text())["max_steps"] == 2
