"""Resume after a power cut: SIGKILL a run mid-epoch between checkpoints, resume, compare with a clean run."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
import yaml
from train_subprocess import KILLER, run_train

from amauta.core.errors import AmautaError

REPO = Path(__file__).resolve().parents[2]

# KILLER (train_subprocess.py) kills a run mid-epoch (12 steps per epoch) and between checkpoints (every 4 steps).
def _train(args: list[str], env_extra: dict | None = None, script: str | None = None) -> subprocess.CompletedProcess:
    return run_train(args, env_extra, script, timeout=300)


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


def _files(folder: Path) -> dict[str, bytes]:
    """Every file's bytes, `amauta.log` included: a refused run appends nothing anywhere."""
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_finished_run_without_checkpoints_refuses_a_changed_dataset_and_keeps_everything(run_config, tmp_path, dataset):
    """Issue 10, item 2: with checkpoints/ gone, the dataset hash was compared with itself and the run
    retrained silently, deleting log.jsonl. The hash the run recorded is what counts."""
    import shutil

    cfg = _train([str(run_config(max_steps=2, checkpoint_every=2))])
    assert cfg.returncode == 0, cfg.stderr[-2000:]
    run = tmp_path / "run"
    shutil.rmtree(run / "checkpoints")
    before = _files(run)
    data = (dataset / "train.jsonl").read_text()
    (dataset / "train.jsonl").write_text("\n".join(data.splitlines()[:-1]) + "\n")  # same path, other data
    refused = _train([str(tmp_path / "run.yaml")])
    assert refused.returncode == 2, refused.stderr[-2000:]
    assert "train.jsonl changed since this run started" in " ".join(refused.stderr.split())
    assert _files(run) == before and (run / "log.jsonl").is_file()
    (dataset / "train.jsonl").write_text(data)
    rerun = _train([str(tmp_path / "run.yaml")])  # same config, same data, finished: nothing to do
    assert rerun.returncode == 0 and "already trained with this config" in " ".join(rerun.stderr.split()), rerun.stderr
    after = _files(run)  # a run that did succeed (with nothing to do) appends its header to amauta.log, nothing else
    assert after.pop("amauta.log").startswith(before.pop("amauta.log")) and after == before


def test_overwrite_starts_afresh_only_in_an_own_folder_without_the_dataset(run_config, tmp_path, dataset):
    from amauta.train.config import build_config
    from amauta.train.recipe import run

    cfg = build_config(run_config(max_steps=2, checkpoint_every=2), {})
    run(cfg, progress=False)
    other = build_config(run_config("other.yaml", max_steps=3, checkpoint_every=3), {})
    with pytest.raises(AmautaError, match="written by another config .*pass --overwrite"):
        run(other, progress=False)
    (cfg.output_dir / "notas.txt").write_text("mías")
    with pytest.raises(AmautaError, match="holds notas.txt, which Amauta did not write there"):
        run(other, progress=False, overwrite=True)
    (cfg.output_dir / "notas.txt").unlink()
    run(other, progress=False, overwrite=True)
    assert json.loads((cfg.output_dir / "summary.json").read_text())["steps"] == 3
    assert [p.name for p in (cfg.output_dir / "checkpoints").iterdir()] == ["step-3"]

    import shutil

    kept = shutil.copytree(dataset, cfg.output_dir / "data")  # the dataset the run reads lives inside it
    inside = build_config(run_config("inside.yaml", dataset=str(kept), max_steps=2), {})
    with pytest.raises(AmautaError, match=r"run: holds .*run/data, an input of this run, so it cannot be replaced"):
        run(inside, progress=False, overwrite=True)
    assert (kept / "train.jsonl").read_bytes() == (dataset / "train.jsonl").read_bytes()
    with pytest.raises(AmautaError, match="is not an Amauta run folder"):
        run(build_config(run_config("parent.yaml", output_dir=str(tmp_path)), {}), progress=False, overwrite=True)


def test_temporaries_of_a_killed_run_are_removed_at_start(run_config, tmp_path):
    """Issue 10, item 5: kill -9 while a checkpoint or a file is written leaves `.NAME.XXXXXXXX.tmp`."""
    from amauta.train.config import build_config
    from amauta.train.recipe import run

    cfg = build_config(run_config(max_steps=4, checkpoint_every=2), {})
    run(cfg, progress=False)
    half_checkpoint = cfg.output_dir / "checkpoints" / ".step-6.k1ll3d00.tmp"
    (half_checkpoint / "adapter").mkdir(parents=True)
    (half_checkpoint / "optimizer.pt").write_bytes(b"\0" * 1024)
    half_file = cfg.output_dir / ".log.jsonl.k1ll3d00.tmp"
    half_file.write_text('{"step": 1')
    run(cfg, progress=False)
    assert not half_checkpoint.exists() and not half_file.exists()
    assert sorted(p.name for p in (cfg.output_dir / "checkpoints").iterdir()) == ["step-2", "step-4"]
