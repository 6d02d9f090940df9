"""`amauta train` in a child process, optionally killed like a power cut (shared by the SFT and the
preference resume tests)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]

# Runs `amauta train` in this process, but SIGKILLs itself right after logging step KILL_AT: the kill
# lands mid-epoch and between checkpoints, like a power cut.
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


def run_train(args: list[str], env_extra: dict | None = None, script: str | None = None,
              timeout: int = 600) -> subprocess.CompletedProcess:
    """`amauta train ARGS --no-progress` (or `script` with ARGS) on one thread; its exit code and output."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", **(env_extra or {})}
    cmd = [sys.executable, "-c", script, *args] if script else [sys.executable, "-m", "amauta.cli", "train", *args, "--no-progress"]
    return subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=timeout)


# accelerate 1.15 turns FSDP on only for accelerator devices: on a CPU-only machine an FSDP launch becomes
# DDP over gloo (its own `AcceleratorState` gate). Prefixed to a script started by `accelerate launch`
# with FSDP settings, this sets the state to FSDP the way accelerate does on GPUs (the distributed type
# and the plugin), so accelerate's FSDP2 code itself (fully_shard, clipping, distributed checkpoint
# save_state/load_state) runs over gloo; nothing else is replaced.
FSDP_ON_CPU = """
from accelerate.state import AcceleratorState, PartialState
from accelerate.utils import DistributedType
_init = AcceleratorState.__init__
def _fsdp_init(self, *args, **kwargs):
    _init(self, *args, **kwargs)
    if self.distributed_type == DistributedType.MULTI_CPU and kwargs.get("fsdp_plugin") is not None:
        self.distributed_type = DistributedType.FSDP
        self.fsdp_plugin = kwargs["fsdp_plugin"]
        PartialState._shared_state["distributed_type"] = DistributedType.FSDP
AcceleratorState.__init__ = _fsdp_init
"""

# `amauta train ARGV[1] --no-progress` in this process (after FSDP_ON_CPU, for the runs not killed).
TRAIN = """
import sys
from amauta.cli import main
sys.argv = ["amauta", "train", sys.argv[1], "--no-progress"]
main()
"""
