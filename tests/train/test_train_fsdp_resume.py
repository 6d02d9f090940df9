"""Resume under FSDP: two CPU processes over gloo, both SIGKILLed mid-epoch after a checkpoint, rerun with
the same command, compared with an uninterrupted FSDP run (see FSDP_ON_CPU for how FSDP runs on a CPU)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from train_subprocess import FSDP_ON_CPU, KILLER, TRAIN, run_train

from amauta.core.errors import AmautaError

REPO = Path(__file__).resolve().parents[2]


def _fsdp_unavailable() -> str | None:
    """Why FSDP2 over gloo cannot run here (None when it can)."""
    import torch.distributed as dist

    if not dist.is_available() or not dist.is_gloo_available():
        return "torch.distributed with gloo is not available in this torch build"
    try:
        from torch.distributed.fsdp import fully_shard  # noqa: F401
    except ImportError:
        return "this torch has no FSDP2 (torch.distributed.fsdp.fully_shard)"
    return None


needs_fsdp = pytest.mark.skipif(_fsdp_unavailable() is not None, reason=str(_fsdp_unavailable()))

LAUNCH = ["-m", "accelerate.commands.launch", "--use_fsdp", "--fsdp_version", "2", "--num_processes", "2",
          "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no",
          "--fsdp_auto_wrap_policy", "TRANSFORMER_BASED_WRAP", "--fsdp_state_dict_type", "SHARDED_STATE_DICT",
          "--fsdp_cpu_ram_efficient_loading", "false", "--fsdp_reshard_after_forward", "true"]


def _launch(tmp_path: Path, config: Path, port: int, script: str, env_extra: dict | None = None):
    """`accelerate launch` (2 processes, FSDP2) of `script` with the run config; its result."""
    path = tmp_path / f"launch-{port}.py"
    path.write_text(FSDP_ON_CPU + script)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO / "src"), **(env_extra or {})}
    return subprocess.run([sys.executable, *LAUNCH, "--main_process_port", str(port), str(path), str(config)],
                          cwd=REPO, env=env, capture_output=True, text=True, timeout=400)


def _rows(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines() if '"loss"' in line]


def _adapter(run: Path) -> dict:
    from safetensors.torch import load_file

    return load_file(run / "adapter" / "adapter_model.safetensors")


def _files(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


@needs_fsdp
def test_fsdp_sigkill_both_processes_then_rerun_matches_uninterrupted_run(run_config, tmp_path):
    common = {"max_steps": 8, "checkpoint_every": 4, "eval_every": 4, "batch_size": 4,
              "lora": {"dropout": 0.1}, "micro_batch_size": 1}
    clean_cfg = run_config("clean.yaml", output_dir=str(tmp_path / "clean"), **common)
    killed_cfg = run_config("killed.yaml", output_dir=str(tmp_path / "killed"), **common)
    killed = tmp_path / "killed"

    clean = _launch(tmp_path, clean_cfg, 29541, TRAIN)
    assert clean.returncode == 0, clean.stderr[-3000:]
    assert "2 process(es)" in clean.stderr
    last = tmp_path / "clean" / "checkpoints" / "step-8"
    state = json.loads((last / "state.json").read_text())
    assert state["sharded"] == "fsdp" and state["processes"] == 2
    assert {"random_states_0.pkl", "random_states_1.pkl"} <= {p.name for p in (last / "accelerate").iterdir()}

    died = _launch(tmp_path, killed_cfg, 29542, KILLER, {"KILL_AT": "6"})
    assert died.returncode != 0, died.stderr[-3000:]
    assert "Signals.SIGKILL" in died.stderr or "exitcode  : -9" in died.stderr, died.stderr[-3000:]
    assert [r["step"] for r in _rows(killed)] == [1, 2, 3, 4, 5, 6]
    assert sorted(p.name for p in (killed / "checkpoints").iterdir() if not p.name.startswith(".")) == ["step-4"]
    assert not (killed / "adapter").exists()

    before = _files(killed)  # one process without FSDP cannot continue FSDP shards: refused, nothing written
    single = run_train([str(killed_cfg)], timeout=300)
    assert single.returncode == 2, single.stderr[-3000:]
    assert "written under FSDP, this launch runs without FSDP" in " ".join(single.stderr.split())
    assert _files(killed) == before

    resumed = _launch(tmp_path, killed_cfg, 29543, TRAIN)  # the same command again
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "resuming" in resumed.stderr and "step-4" in resumed.stderr

    a, b = _rows(tmp_path / "clean"), _rows(killed)
    assert [r["step"] for r in b] == list(range(1, 9))  # no step repeated or skipped
    for x, y in zip(a, b, strict=True):
        assert x["lr"] == pytest.approx(y["lr"], rel=1e-9)
        assert x["loss"] == pytest.approx(y["loss"], abs=1e-4)
    clean_adapter, resumed_adapter = _adapter(tmp_path / "clean"), _adapter(killed)
    assert clean_adapter.keys() == resumed_adapter.keys() and clean_adapter
    for name, tensor in clean_adapter.items():
        assert (tensor - resumed_adapter[name]).abs().max().item() < 1e-5, name


def _recipe(run_config, *, kind: str, processes: int = 2, fsdp2: bool = True, resume_from: Path | None = None,
            **overrides):
    """A recipe as `setup` sees it under a launch of `kind` (FSDP, DEEPSPEED, MULTI_CPU), without starting one."""
    from types import SimpleNamespace

    import torch

    from amauta.train.config import build_config
    from amauta.train.recipe import LoRARecipe

    recipe = object.__new__(LoRARecipe)
    recipe.config = build_config(run_config(**overrides), {})
    recipe.accelerator = SimpleNamespace(num_processes=processes, is_fsdp2=fsdp2)
    recipe.sharded, recipe.deepspeed = kind == "FSDP", kind == "DEEPSPEED"
    recipe.device, recipe.main, recipe.resume_from = torch.device("cpu"), True, resume_from
    return recipe


def test_deepspeed_resume_is_refused_in_one_line(run_config, tmp_path):
    step = tmp_path / "run" / "checkpoints" / "step-4"
    with pytest.raises(AmautaError, match=r"step-4: resuming under DeepSpeed is not supported") as refused:
        _recipe(run_config, kind="DEEPSPEED", resume_from=step)._check_distributed()
    assert "\n" not in str(refused.value)
    _recipe(run_config, kind="DEEPSPEED")._check_distributed()  # a fresh DeepSpeed run still starts


def test_what_fsdp_cannot_do_is_refused_before_loading(run_config):
    with pytest.raises(AmautaError, match="fsdp_version: 1 is not supported"):
        _recipe(run_config, kind="FSDP", fsdp2=False)._check_distributed()
    with pytest.raises(AmautaError, match="finetuning: full is not supported under FSDP"):
        _recipe(run_config, kind="FSDP", finetuning="full")._check_distributed()
    with pytest.raises(AmautaError, match="batch_size: 5 does not split evenly over 2 FSDP processes"):
        _recipe(run_config, kind="FSDP", batch_size=5)._check_distributed()
    _recipe(run_config, kind="FSDP")._check_distributed()


def test_fsdp_asked_on_cpu_says_it_runs_as_ddp(run_config, monkeypatch, capsys):
    monkeypatch.setenv("ACCELERATE_USE_FSDP", "true")
    _recipe(run_config, kind="MULTI_CPU")._check_distributed()
    assert "FSDP asked for, but accelerate runs 2 cpu processes as DDP" in " ".join(capsys.readouterr().err.split())


@pytest.mark.parametrize(("state", "sharded", "processes", "message"), [
    ({"sharded": "fsdp", "processes": 2}, None, 1, "written under FSDP, this launch runs without FSDP"),
    ({}, "fsdp", 2, "written without FSDP, this launch runs under FSDP"),
    ({"sharded": "fsdp", "processes": 4}, "fsdp", 2, "written by 4 processes, this launch has 2"),
    ({"optimizer_saved": False}, None, 1, "without the sharded optimizer state, so it cannot be resumed"),
])
def test_checkpoints_another_launch_wrote_are_refused(tmp_path, state, sharded, processes, message):
    from amauta.train.checkpoint import check_resumable

    with pytest.raises(AmautaError, match=message):
        check_resumable(tmp_path / "step-4", state, sharded, processes)
    check_resumable(tmp_path / "step-4", {"sharded": sharded, "processes": processes}, sharded, processes)
