"""Multi-process training through `accelerate launch` (two CPU processes over gloo): same math as one."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def _losses(run: Path) -> list[float]:
    return [json.loads(line)["loss"] for line in (run / "log.jsonl").read_text().splitlines() if '"loss"' in line]


def test_two_cpu_processes_match_one(run_config, tmp_path):
    common = {"max_steps": 3, "eval_every": 3, "checkpoint_every": 3, "lora": {"dropout": 0.0}}
    one, two = tmp_path / "one", tmp_path / "two"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    accelerate = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2",
                  "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no",
                  "--main_process_port", "29533"]
    result = subprocess.run([*accelerate, "-m", "amauta.cli", "train", str(run_config("two.yaml", output_dir=str(two), **common)),
                             "--no-progress"], cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "2 process(es)" in result.stderr
    single = subprocess.run([sys.executable, "-m", "amauta.cli", "train", str(run_config("one.yaml", output_dir=str(one), **common)),
                             "--no-progress"], cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert single.returncode == 0, single.stderr[-3000:]
    assert len(_losses(two)) == 3
    assert all(abs(a - b) < 1e-5 for a, b in zip(_losses(one), _losses(two), strict=True))
    assert (two / "adapter" / "adapter_model.safetensors").is_file()
