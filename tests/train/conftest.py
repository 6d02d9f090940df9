"""Fixtures of the train room: a small prepared dataset folder and a run-config writer."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

# Our own Spanish sample conversations: short arithmetic and tax facts, enough for a few steps.
_FACTS = [
    ("¿Qué institución administra los impuestos en Ecuador?", "El Servicio de Rentas Internas (SRI)."),
    ("¿Cada cuánto se declara el impuesto a la renta?", "Una vez al año."),
    ("¿Qué significa RUC?", "Registro Único de Contribuyentes."),
    ("¿En qué moneda se pagan los impuestos en Ecuador?", "En dólares de los Estados Unidos."),
]


def conversations(n: int) -> list[list[dict[str, str]]]:
    """`n` short conversations (sums and the facts above), deterministic."""
    out = []
    for i in range(n):
        if i % 3 == 0:
            q, a = _FACTS[(i // 3) % len(_FACTS)]
        else:
            x, y = i % 7 + 1, i % 5 + 2
            q, a = f"¿Cuánto es {x} más {y}?", f"{x} más {y} es {x + y}."
        messages = [{"role": "user", "content": q}, {"role": "assistant", "content": a}]
        if i % 4 == 0:
            messages.insert(0, {"role": "system", "content": "Responde en español, en una oración."})
        out.append(messages)
    return out


def write_dataset(folder: Path, n_train: int = 48, n_val: int = 8, template: str = "llama2",
                  model: str = "tiny-llama", system_prompt: str | None = None) -> Path:
    """A folder shaped like `amauta data prepare`'s output (train/val.jsonl, manifest.json);
    `system_prompt` is recorded in the manifest when given (as prepare does)."""
    folder.mkdir(parents=True, exist_ok=True)
    convs = conversations(n_train + n_val)
    for name, part in (("train", convs[:n_train]), ("val", convs[n_train:])):
        offset = 0 if name == "train" else n_train
        rows = [{"id": f"{name}-{offset + i:04d}", "messages": m, "source": "muestra", "category": "qa"}
                for i, m in enumerate(part)]
        (folder / f"{name}.jsonl").write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))
    manifest = {"stage": "data.prepare", "template": template, "model": model}
    if system_prompt is not None:
        manifest["system_prompt"] = system_prompt
    (folder / "manifest.json").write_text(json.dumps(manifest, ensure_ascii=False))
    return folder


@pytest.fixture
def dataset(tmp_path: Path) -> Path:
    """A 48/8 dataset folder for tiny-llama (template llama2)."""
    return write_dataset(tmp_path / "data")


@pytest.fixture
def run_config(tmp_path: Path, dataset: Path):
    """A factory writing a run YAML for a tiny model; keyword arguments override keys."""

    def make(name: str = "run.yaml", **overrides) -> Path:
        data = {"model": "tiny-llama", "dataset": str(dataset), "output_dir": str(tmp_path / "run"),
                "lora": {"r": 4, "alpha": 8, "dropout": 0.1, "targets": "attention"},
                "optimizer": {"name": "adamw", "lr": 5e-3}, "batch_size": 4, "max_steps": 6,
                "eval_every": 3, "checkpoint_every": 3, "max_length": 128, "seed": 7}
        for key, value in overrides.items():
            if isinstance(value, dict) and isinstance(data.get(key), dict):
                data[key] = {**data[key], **value}
            else:
                data[key] = value
        path = tmp_path / name
        path.write_text(yaml.safe_dump(data, allow_unicode=True))
        return path

    return make


@pytest.fixture(autouse=True)
def _one_thread():
    """Tiny models are latency-bound: on a shared 2-core machine one thread is several times faster."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
