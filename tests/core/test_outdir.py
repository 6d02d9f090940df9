"""The output-folder rule (core/outdir.py): nothing foreign replaced, inputs kept, one run per folder, and
the temporaries of a killed run removed — never those of a live one."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from amauta.core.errors import AmautaError
from amauta.core.files import atomic_dir
from amauta.core.manifest import write_manifest
from amauta.core.outdir import claim, lock_path

SRC = Path(__file__).resolve().parents[2] / "src"


def _made_by(folder: Path, stage: str, config: dict, inputs=(), **extra) -> Path:
    """A finished folder of `stage` (files first, manifest last, as the stages write them)."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "result.txt").write_text("resultado")
    write_manifest(folder, stage, config, list(inputs), **extra)
    return folder


def _snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_a_folder_the_stage_did_not_make_is_refused_and_left_untouched(tmp_path):
    mine = tmp_path / "x"
    mine.mkdir()
    (mine / "keep.txt").write_text("hola")
    with pytest.raises(AmautaError, match=r"x: exists and is not an Amauta dataset folder .*choose a new or empty folder"):
        with claim(mine, "data.prepare"):
            pass
    assert _snapshot(mine) == {"keep.txt": b"hola"}
    assert not lock_path(mine).exists()

    run = _made_by(tmp_path / "run", "train", {"lr": 1})
    before = _snapshot(run)
    with pytest.raises(AmautaError, match=r"run: is an Amauta run folder \(stage 'train'\), not an eval folder"):
        with claim(run, "evaluate.belebele"):
            pass
    assert _snapshot(run) == before

    (tmp_path / "empty").mkdir()
    for fine in (tmp_path / "empty", tmp_path / "missing"):
        with claim(fine, "data.prepare") as folder:
            assert folder.is_new


def test_own_folder_skips_when_unchanged_refuses_when_changed_and_overwrite_keeps_inputs_and_foreign_files(tmp_path):
    source = tmp_path / "a.jsonl"
    source.write_text("1\n")
    out = _made_by(tmp_path / "ds", "data.prepare", {"max": 4, "out": "ds"}, [source])
    with claim(out, "data.prepare") as folder:
        assert folder.up_to_date({"max": 4, "out": "elsewhere"}, [source])  # where it is written is no input
    source.write_text("2\n")
    with claim(out, "data.prepare") as folder:
        assert not folder.up_to_date({"max": 5}, [source])
        with pytest.raises(AmautaError, match=r"ds: holds a dataset made from other inputs \(max: 4 → 5; .*a.jsonl "
                                              r"changed\); pass --overwrite to replace it"):
            folder.check_replace({"max": 5}, [source])

    inside = out / "a.jsonl"
    inside.write_text("3\n")
    with claim(out, "data.prepare", overwrite=True) as folder:
        with pytest.raises(AmautaError, match=r"ds: holds .*a.jsonl, an input of this run, so it cannot be replaced"):
            folder.check_replace({"max": 5}, [inside])
    inside.unlink()

    (out / "notas.txt").write_text("mías")
    with claim(out, "data.prepare", overwrite=True) as folder:
        with pytest.raises(AmautaError, match=r"ds: holds notas.txt, which Amauta did not write there"):
            folder.check_replace({"max": 5}, [source])
    assert (out / "notas.txt").read_text() == "mías"
    (out / "notas.txt").unlink()

    with claim(out, "data.prepare", overwrite=True) as folder:
        folder.check_replace({"max": 5}, [source])
        with folder.replace() as tmp:
            (tmp / "result.txt").write_text("nuevo")
            write_manifest(tmp, "data.prepare", {"max": 5}, [source])
    assert (out / "result.txt").read_text() == "nuevo"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.jsonl", "ds"]  # no lock, no temporaries left


def test_replace_needs_the_check_and_atomic_dir_keeps_an_existing_folder(tmp_path):
    out = _made_by(tmp_path / "ds", "data.prepare", {"max": 4})
    with claim(out, "data.prepare") as folder:
        with pytest.raises(RuntimeError, match="before check_replace"):
            with folder.replace():
                pass
    with pytest.raises(AmautaError, match="already exists"):
        with atomic_dir(out):
            pass
    assert (out / "result.txt").is_file()


HOLDER = """
import sys, time
from pathlib import Path
from amauta.core.outdir import claim
out = Path(sys.argv[1])
with claim(out, "train", owned=("checkpoints",), subfolders=("checkpoints",)) as folder:
    folder.start({"lr": 1})
    live = out / "checkpoints" / ".step-2.live0000.tmp"
    live.mkdir(parents=True)
    (live / "adapter.bin").write_bytes(b"x" * 10)
    Path(sys.argv[2]).write_text("ready")
    time.sleep(120)
"""


def _hold_in_another_process(out: Path, tmp_path: Path) -> subprocess.Popen:
    ready = tmp_path / "ready"
    proc = subprocess.Popen([sys.executable, "-c", HOLDER, str(out), str(ready)],
                            env={**os.environ, "PYTHONPATH": str(SRC)}, stderr=subprocess.PIPE)
    deadline = time.time() + 60
    while not ready.exists():
        assert proc.poll() is None, proc.stderr.read().decode()[-2000:]
        assert time.time() < deadline, "the holder did not start"
        time.sleep(0.05)
    return proc


def test_a_live_run_keeps_its_folder_and_temporaries_a_killed_one_gets_them_removed(tmp_path):
    out = tmp_path / "run"
    proc = _hold_in_another_process(out, tmp_path)
    try:
        live = out / "checkpoints" / ".step-2.live0000.tmp"
        with pytest.raises(AmautaError, match=rf"run: in use by another Amauta run \(pid {proc.pid} on .*\); wait"):
            with claim(out, "train", subfolders=("checkpoints",)):
                pass
        assert (live / "adapter.bin").is_file()  # a live run's temporary is never touched
        owner = json.loads(lock_path(out).read_text())
        assert owner["pid"] == proc.pid and owner["host"]
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    # What kill -9 leaves: the checkpoint being written, a half-written file, a stale lock file.
    stray = out / ".log.jsonl.k1ll3d00.tmp"
    stray.write_text('{"step": 3')
    sibling = tmp_path / ".run.abcdefgh.tmp"  # atomic_dir's folder for `run` itself, beside it
    sibling.mkdir()
    other = tmp_path / ".other.abcdefgh.tmp"  # another folder's temporary: not this run's to remove
    other.mkdir()
    assert lock_path(out).exists()
    with claim(out, "train", subfolders=("checkpoints",), quiet=True) as folder:
        assert not folder.is_new
    assert not live.exists() and not stray.exists() and not sibling.exists()
    assert other.is_dir() and (out / "manifest.json").is_file()
    assert not lock_path(out).exists()


def test_a_folder_moved_aside_by_a_killed_replacement_is_put_back(tmp_path):
    out = _made_by(tmp_path / "ds", "data.prepare", {"max": 4})
    os.replace(out, tmp_path / ".ds.old")  # killed between atomic_dir's two renames
    with claim(out, "data.prepare") as folder:
        assert folder.up_to_date({"max": 4})
    assert (out / "result.txt").read_text() == "resultado" and not (tmp_path / ".ds.old").exists()


def test_an_unfinished_own_folder_is_recognised_and_a_file_is_refused(tmp_path):
    out = tmp_path / "ev"
    with claim(out, "evaluate.belebele") as folder:
        folder.start({"limit": 3})
        (out / "items.jsonl").write_text("{}\n")
    with claim(out, "evaluate.belebele") as folder:
        assert not folder.is_new and not folder.finished
        with pytest.raises(AmautaError, match="its last run did not finish"):
            folder.check_replace({"limit": 3})
    afile = tmp_path / "notes.txt"
    afile.write_text("x")
    with pytest.raises(AmautaError, match=r"notes.txt: is a file, not a folder"):
        with claim(afile, "evaluate.belebele"):
            pass
    assert textwrap.dedent(afile.read_text()) == "x"


def test_inside_a_folder_a_nested_runs_temporaries_go_only_when_its_recorded_owner_is_gone(tmp_path):
    out = tmp_path / "pipe"
    with claim(out, "pipeline") as folder:
        folder.start({})
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    for name, pid in (("data", int(dead.stdout)), ("train", os.getpid())):
        (out / f".{name}.lock").write_text(json.dumps({"pid": pid, "host": socket.gethostname()}))
        (out / f".{name}.abcdefgh.tmp").mkdir()
    with claim(out, "pipeline", quiet=True):
        pass
    assert not (out / ".data.abcdefgh.tmp").exists()  # a killed step's temporary
    assert (out / ".train.abcdefgh.tmp").is_dir()  # a live step's: never touched


def test_what_changed_names_new_and_changed_inputs_before_removed_ones_wherever_they_live(tmp_path):
    """CI failure: sorted paths put `/check/...` removals before a `/tmp/...` addition, so the summary's
    first three changes hid the new input the user had just added."""
    old = [tmp_path / "a" / name for name in ("x1.jsonl", "x2.jsonl", "x3.jsonl")]
    new = tmp_path / "z" / "nuevo.jsonl"  # sorts after every removed path
    for path in [*old, new]:
        path.parent.mkdir(exist_ok=True)
        path.write_text("1\n")
    out = _made_by(tmp_path / "ds", "data.prepare", {"max": 4}, old[:2] + [old[2]])
    old[2].write_text("2\n")
    with claim(out, "data.prepare") as folder:
        changes = folder.changes({"max": 4}, [old[2], new])
    assert changes[0].endswith("nuevo.jsonl is a new input")
    assert changes[1].endswith("x3.jsonl changed")
    assert [c.endswith("is no longer an input") for c in changes[2:]] == [True, True]
