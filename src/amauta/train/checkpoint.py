"""Resumable checkpoints: a power cut costs at most `checkpoint_every` steps.

A checkpoint `checkpoints/step-N/` holds everything the next step depends on: the adapter weights
(peft format), the optimizer and scheduler states, every RNG state (Python, NumPy, torch, CUDA) and the
data position (the step; the data order is a pure function of seed and epoch). It is built under a
temporary name and renamed into place, and `state.json` is written last, so a folder named `step-N`
is always complete. The newest one is what `--resume` (or a plain rerun) continues from.

We save the adapter ourselves instead of using `Trainer`'s checkpoint resume, which for PEFT models
has failed in several transformers/peft versions ("Can't find a valid checkpoint", missing LoRA keys).
"""

from __future__ import annotations

import json
import random
import re
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import torch

from amauta.core.config import dump_config
from amauta.core.errors import AmautaError
from amauta.core.files import atomic_dir, atomic_write_json, read_jsonl
from amauta.train.config import TrainConfig, fingerprint, fingerprint_fields

_STEP = re.compile(r"^step-(\d+)$")


def list_checkpoints(run_dir: Path) -> list[tuple[int, Path]]:
    """Complete checkpoints of a run, oldest first."""
    folder = Path(run_dir) / "checkpoints"
    found = []
    if folder.is_dir():
        for child in folder.iterdir():
            match = _STEP.match(child.name)
            if match and (child / "state.json").is_file():
                found.append((int(match.group(1)), child))
    return sorted(found)


def latest_checkpoint(run_dir: Path) -> Path | None:
    """The newest complete checkpoint, or None."""
    found = list_checkpoints(run_dir)
    return found[-1][1] if found else None


def rng_states() -> dict[str, Any]:
    """Every random-number generator's state, so dropout and sampling continue identically."""
    states = {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        states["cuda"] = torch.cuda.get_rng_state_all()
    return states


def set_rng_states(states: dict[str, Any]) -> None:
    """Restore what `rng_states` captured."""
    random.setstate(states["python"])
    np.random.set_state(states["numpy"])
    torch.set_rng_state(states["torch"])
    if "cuda" in states and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(states["cuda"])


def save_checkpoint(run_dir: Path, step: int, *, adapter_model: Any, optimizer: Any, scheduler: Any,
                    state: dict[str, Any], keep: int) -> Path:
    """Write `checkpoints/step-{step}` atomically and drop all but the newest `keep` checkpoints.

    adapter_model: the (unwrapped) peft model, whose adapter weights are saved (adapter/), or for full
        fine-tuning the plain model, saved whole (model/).
    optimizer: its state is saved unless None (FSDP/DeepSpeed shard it across processes: not resumable yet).
    state: JSON-able facts (step, epoch, fingerprint, micro-batch size, guard baseline...).
    """
    target = Path(run_dir) / "checkpoints" / f"step-{step}"
    with atomic_dir(target, overwrite=True) as tmp:  # inside the run folder the run holds
        save_weights(adapter_model, tmp / weights_folder(adapter_model))
        if optimizer is not None:
            torch.save(optimizer.state_dict(), tmp / "optimizer.pt")
        torch.save(scheduler.state_dict(), tmp / "scheduler.pt")
        torch.save(rng_states(), tmp / "rng.pt")
        atomic_write_json(tmp / "state.json", {**state, "step": step, "optimizer_saved": optimizer is not None})
    for _, old in list_checkpoints(run_dir)[:-keep]:
        shutil.rmtree(old, ignore_errors=True)
    return target


def weights_folder(model: Any) -> str:
    """Where a run keeps its trained weights: `adapter` (LoRA), `model` (full fine-tuning)."""
    return "adapter" if hasattr(model, "peft_config") else "model"


def save_weights(model: Any, folder: Path) -> None:
    """The trained weights into `folder`: a peft model's adapter (and its modules_to_save), or a whole
    model as model.safetensors (tied tensors stored once)."""
    if hasattr(model, "peft_config"):
        model.save_pretrained(folder)
        return
    from safetensors.torch import save_model

    Path(folder).mkdir(parents=True, exist_ok=True)
    save_model(model, str(Path(folder) / "model.safetensors"))


def load_weights(model: Any, folder: Path) -> None:
    """Load what `save_weights` wrote into the live `model`; a damaged file stops with one line."""
    from peft import set_peft_model_state_dict
    from safetensors.torch import load_file, load_model

    folder = Path(folder)
    if not hasattr(model, "peft_config"):
        try:
            load_model(model, str(folder / "model.safetensors"))
        except (RuntimeError, OSError) as exc:
            raise AmautaError(f"{folder}: the saved model does not load ({str(exc).strip().splitlines()[0][:160]}); "
                              "it is damaged: delete this checkpoint to resume from the one before") from None
        return
    result = set_peft_model_state_dict(model, load_file(folder / "adapter_model.safetensors"))
    missing = [k for k in getattr(result, "missing_keys", []) if "lora_" in k]
    if missing:
        raise AmautaError(f"{folder}: {len(missing)} LoRA weights missing (e.g. {missing[0]}); "
                          "the checkpoint is damaged, delete it to resume from the one before")


def load_checkpoint(path: Path, *, adapter_model: Any, optimizer: Any, scheduler: Any) -> dict[str, Any]:
    """Load a checkpoint into the live objects and return its state.json (RNG restored last)."""
    state = json.loads((path / "state.json").read_text())
    load_weights(adapter_model, path / weights_folder(adapter_model))
    if not state.get("optimizer_saved", True):
        raise AmautaError(f"{path}: written under FSDP/DeepSpeed without the sharded optimizer state, so it cannot "
                          "be resumed; its adapter/ is usable, or start a new output_dir")
    optimizer.load_state_dict(torch.load(path / "optimizer.pt", weights_only=False))
    scheduler.load_state_dict(torch.load(path / "scheduler.pt", weights_only=False))
    set_rng_states(torch.load(path / "rng.pt", weights_only=False))
    return state


# What `amauta train` writes at the top of a run folder (see core/outdir.py: the rest is the user's).
RUN_FILES = ("adapter", "model", "best", "checkpoints", "log.jsonl", "loss.png", "config.yaml", "summary.json",
             "manifest.json", "ref_logps.json")


def is_legacy_run(run_dir: Path) -> bool:
    """A run folder from before run folders got a manifest at start: it has a config.yaml."""
    return (Path(run_dir) / "config.yaml").is_file()


def recorded_dataset_hash(manifest: dict[str, Any] | None) -> str | None:
    """The train.jsonl hash a run's manifest recorded (None when it did not)."""
    manifest = manifest or {}
    if manifest.get("dataset_sha256"):
        return manifest["dataset_sha256"]
    return next((sha for path, sha in (manifest.get("inputs") or {}).items() if path.endswith("train.jsonl")), None)


def _saved_config(run_dir: Path, manifest: dict[str, Any] | None) -> tuple[Path, TrainConfig]:
    """The config a run folder was started with: its config.yaml, else its manifest's."""
    from amauta.core.config import read_yaml

    where = run_dir / "config.yaml"
    try:
        if where.is_file():
            return where, TrainConfig.model_validate(read_yaml(where))
        where = run_dir / "manifest.json"
        return where, TrainConfig.model_validate((manifest or {})["config"])
    except Exception:
        raise AmautaError(f"{where}: unreadable run config; choose a new output_dir") from None


def finished_run(config: TrainConfig, dataset_hash: str) -> bool:
    """True when the output folder holds this very run, finished: same config and data, all steps done."""
    from amauta.core.outdir import read_manifest

    run_dir = Path(config.output_dir)
    manifest = read_manifest(run_dir) if run_dir.is_dir() else None
    if not manifest or manifest.get("stage") != "train" or not manifest.get("complete", True):
        return False
    if not (manifest.get("summary") or {}).get("completed"):
        return False  # stopped early (the forgetting guard): a rerun goes on from its checkpoint
    _, old = _saved_config(run_dir, manifest)
    return fingerprint(old) == fingerprint(config) and recorded_dataset_hash(manifest) == dataset_hash


def check_run_dir(config: TrainConfig, dataset_hash: str) -> Path | None:
    """Decide what an existing output folder means for this run, before anything is written.

    Returns the checkpoint to resume from (None = start fresh). Refuses with one line when the folder
    belongs to another config or dataset, or is not an Amauta run folder at all. Without a checkpoint the
    config and dataset hash come from what the run recorded when it started (manifest.json, config.yaml).
    """
    from amauta.core.outdir import differences, inspect, summarize

    run_dir = Path(config.output_dir)
    manifest = inspect(run_dir, "train", legacy=is_legacy_run)
    if manifest is None:
        return None
    checkpoint = latest_checkpoint(run_dir)
    if checkpoint is not None:
        state = json.loads((checkpoint / "state.json").read_text())
        where = checkpoint
        old_fields, old_print, old_data = state.get("fingerprint_fields", {}), state.get("fingerprint"), state.get("dataset_sha256")
    else:
        where, old = _saved_config(run_dir, manifest)
        old_fields, old_print, old_data = fingerprint_fields(old), fingerprint(old), recorded_dataset_hash(manifest)
    if old_print != fingerprint(config):
        diff = differences(old_fields, fingerprint_fields(config))
        raise AmautaError(f"{where}: written by another config ({summarize(diff)}); use a new output_dir, "
                          "restore the old values to resume, or pass --overwrite to start this run afresh")
    if old_data is None:
        raise AmautaError(f"{run_dir}: this run recorded no dataset hash, so Amauta cannot tell whether "
                          f"{config.dataset}/train.jsonl changed; use a new output_dir or pass --overwrite")
    if old_data != dataset_hash:
        raise AmautaError(f"{where}: the dataset {config.dataset}/train.jsonl changed since this run started; "
                          "use a new output_dir to train on the new data, or pass --overwrite to replace this run")
    return checkpoint


def truncate_log(log_path: Path, step: int) -> None:
    """Drop log rows after `step` (written after the checkpoint we resume from), atomically."""
    from amauta.core.files import atomic_write_jsonl

    if log_path.is_file():
        rows = [row for row in read_jsonl(log_path, tolerate_torn_tail=True) if row.get("step", 0) <= step]
        atomic_write_jsonl(log_path, rows)


def saved_config_text(config: TrainConfig) -> str:
    """What config.yaml holds."""
    return dump_config(config)
