"""A `manifest.json` in every stage's output folder: enough to say later what produced a number."""

from __future__ import annotations

import platform
import sys
import time
from importlib import metadata
from pathlib import Path
from typing import Any

from amauta.core.files import atomic_write_json, sha256_file

_PACKAGES = ("amauta", "torch", "transformers", "peft", "trl", "accelerate", "datasets", "bitsandbytes")


def package_versions() -> dict[str, str]:
    """Installed versions of the packages that shape results."""
    versions = {"python": sys.version.split()[0], "platform": platform.platform()}
    for name in _PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return versions


def write_manifest(out_dir: str | Path, stage: str, config: Any, inputs: list[str | Path] = (), **extra: Any) -> Path:
    """Write `out_dir/manifest.json` with the stage, its config, package versions, input hashes and the
    names at the top of `out_dir` (its `files`: what a later --overwrite may replace, see core/outdir.py)."""
    hashes = {}
    for item in inputs:
        p = Path(item)
        if p.is_file():
            hashes[str(p)] = sha256_file(p)
    if hasattr(config, "model_dump"):
        config = config.model_dump(mode="json")
    manifest = {
        "stage": stage,
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "config": config,
        "inputs": hashes,
        "versions": package_versions(),
        "files": sorted({p.name for p in Path(out_dir).iterdir() if not p.name.startswith(".")} | {"manifest.json"})
        if Path(out_dir).is_dir() else ["manifest.json"],
        **extra,
    }
    return atomic_write_json(Path(out_dir) / "manifest.json", manifest)
