"""Resumable checkpoints: a power cut costs at most `checkpoint_every` steps.

A checkpoint `checkpoints/step-N/` holds everything the next step depends on: the adapter weights
(peft format), the optimizer and scheduler states, every RNG state (Python, NumPy, torch, CUDA) and the
data position (the step; the data order is a pure function of seed and epoch). It is built under a
temporary name and renamed into place, and `state.json` is written last, so a folder named `step-N`
is always complete. The newest one is what `--resume` (or a plain rerun) continues from.

We save the adapter ourselves instead of using `Trainer`'s checkpoint resume, which for PEFT models
has failed in several transformers/peft versions ("Can't find a valid checkpoint", missing LoRA keys).

Under FSDP no process holds the whole model or optimizer: every process writes its shards with
accelerate's `save_state` (torch distributed checkpoint, plus each process's RNG state) into the one
temporary folder, and the main process adds the gathered adapter, the schedule and `state.json` and
renames it only when all processes are done (`save_sharded_checkpoint`). DeepSpeed checkpoints keep
no optimizer state and are refused on resume.
"""

from __future__ import annotations

import contextlib
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

# Inside an FSDP checkpoint: what accelerate's `save_state` writes (model and optimizer shards in torch's
# distributed checkpoint format, random_states_{rank}.pkl per process).
SHARDED_FOLDER = "accelerate"


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
    optimizer: its state is saved unless None (DeepSpeed shards it across processes: not resumable; FSDP
        checkpoints go through `save_sharded_checkpoint`).
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
    drop_old_checkpoints(run_dir, keep)
    return target


def drop_old_checkpoints(run_dir: Path, keep: int) -> None:
    """Remove all but the newest `keep` complete checkpoints."""
    for _, old in list_checkpoints(run_dir)[:-keep]:
        shutil.rmtree(old, ignore_errors=True)


def gathered_trainable_state(model: Any) -> dict[str, torch.Tensor]:
    """The trainable weights as whole tensors on the CPU, keyed as `model.state_dict()` keys them.

    Under FSDP each process holds a shard of every weight (a DTensor): `full_tensor()` gathers it, a
    collective call, so every process must call this, in the same order. Elsewhere it is a plain copy.
    """
    from torch.distributed.tensor import DTensor

    state = {}
    for name, param in model.named_parameters():
        if param.requires_grad:
            tensor = param.detach()
            state[name] = (tensor.full_tensor() if isinstance(tensor, DTensor) else tensor).cpu().clone()
    return state


def save_sharded_checkpoint(accelerator: Any, run_dir: Path, step: int, *, model: Any, scheduler: Any,
                            state: dict[str, Any], keep: int) -> Path:
    """FSDP: write `checkpoints/step-{step}` from every process; call it on all of them.

    All processes write their model and optimizer shards and their RNG state with accelerate's
    `save_state` into one temporary folder (its name broadcast by the main process, which owns it);
    then the main process adds the adapter (gathered whole, so `adapter/` is usable as it is), the
    schedule and `state.json`, and renames the folder into place. A process killed on the way leaves
    only a temporary folder, which the next run removes: `step-N` exists only when every process
    finished writing it.
    """
    from accelerate.utils import broadcast_object_list

    main = accelerator.is_main_process
    adapter = gathered_trainable_state(model)  # collective: before the main process goes its own way
    target = Path(run_dir) / "checkpoints" / f"step-{step}"
    with contextlib.ExitStack() as stack:
        name = [str(stack.enter_context(atomic_dir(target, overwrite=True))) if main else None]
        broadcast_object_list(name)
        tmp = Path(name[0])
        accelerator.save_state(str(tmp / SHARDED_FOLDER))
        accelerator.wait_for_everyone()  # every shard and RNG file is on disk
        if main:
            accelerator.unwrap_model(model).save_pretrained(tmp / "adapter", state_dict=adapter)
            torch.save(scheduler.state_dict(), tmp / "scheduler.pt")
            atomic_write_json(tmp / "state.json", {**state, "step": step, "optimizer_saved": True,
                                                   "sharded": "fsdp", "processes": accelerator.num_processes})
    if main:
        drop_old_checkpoints(run_dir, keep)
    accelerator.wait_for_everyone()
    return target


def load_sharded_checkpoint(accelerator: Any, path: Path, *, scheduler: Any) -> dict[str, Any]:
    """FSDP: load what `save_sharded_checkpoint` wrote into the prepared model and optimizer (each process
    its shards and its own RNG state, restored last) and return state.json; call it on every process."""
    state = json.loads((path / "state.json").read_text())
    check_resumable(path, state, "fsdp", accelerator.num_processes)
    scheduler.load_state_dict(torch.load(path / "scheduler.pt", weights_only=False))
    accelerator.load_state(str(path / SHARDED_FOLDER))
    return state


def check_resumable(path: Path, state: dict[str, Any], sharded: str | None, processes: int) -> None:
    """Refuse, in one line, a checkpoint this launch cannot continue exactly."""
    written = state.get("sharded")
    if not state.get("optimizer_saved", True):
        raise AmautaError(f"{path}: written under DeepSpeed (or an older Amauta under FSDP) without the sharded "
                          "optimizer state, so it cannot be resumed; its adapter/ is usable, or start a new output_dir")
    if written != sharded:
        how = {"fsdp": "under FSDP", None: "without FSDP"}
        raise AmautaError(f"{path}: written {how[written]}, this launch runs {how[sharded]}; resume it with the "
                          "accelerate config it was written with, or start a new output_dir")
    if sharded and state.get("processes") != processes:
        raise AmautaError(f"{path}: written by {state.get('processes')} processes, this launch has {processes} "
                          "(each keeps its own shards and RNG state); launch with the same --num_processes")


def deepspeed_resume_refusal(path: Path) -> AmautaError:
    """The one line that refuses to resume under DeepSpeed."""
    return AmautaError(f"{path}: resuming under DeepSpeed is not supported (Amauta saves no DeepSpeed optimizer "
                       "state: DeepSpeed needs GPUs and is untested here); start a new output_dir, or train "
                       "with DDP or FSDP (examples/accelerate/), which resume")


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
    check_resumable(path, state, None, 1)
    load_weights(adapter_model, path / weights_folder(adapter_model))
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
