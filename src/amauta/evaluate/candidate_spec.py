"""Who answers a question: the candidate syntax that `amauta eval judge` and `amauta eval exam` share.

A candidate is a model, optionally with a LoRA adapter and/or retrieval (RAG), and a decoding strategy,
written `[NAME=]WHO[+rag:INDEX][@STRATEGY]`: `base`, `runs/train/leyes-qa`, `rag:leyes`,
`ft+rag=runs/train/leyes-raft+rag:leyes@greedy`. The parser lives in the evaluate room so that both the
judge and the exam (which must not import the judge) read candidates the same way.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from amauta.core.errors import AmautaError


@dataclass(frozen=True)
class CandidateSpec:
    """Who answers: a model (with an optional adapter), optional retrieval, and a decoding strategy.

    label: how tables name it (the text the user wrote). model: a load_model spec. adapter: a run or
    adapter folder, or None. rag_index: a RAG index name, or None. strategy: a decoding strategy.
    """

    label: str
    model: str
    adapter: str | None = None
    rag_index: str | None = None
    strategy: str = "sampling"


def _is_adapter_dir(path: Path) -> bool:
    from amauta.models.load import adapter_dir

    try:
        adapter_dir(path)
    except AmautaError:
        return False
    return True


def parse_candidates(text: str | Iterable[str], base_model: str, default_strategy: str = "sampling") -> list[CandidateSpec]:
    """Parse `base,runs/es,rag:leyes,ft+rag=runs/es+rag:leyes@greedy` into candidate specs.

    Each comma-separated entry is `[NAME=]WHO[+rag:INDEX][@STRATEGY]` (NAME labels it in tables), where WHO is `base` (the `--model`), a
    fine-tuning run or adapter folder (loaded on top of `--model`), or another model (a profile name, hub id,
    folder or .gguf); `rag:INDEX` alone means the base model with retrieval.
    """
    from amauta.chat.decoding import check_strategy

    entries = [t.strip() for t in (text.split(",") if isinstance(text, str) else text)]
    entries = [t for t in entries if t]
    if not entries:
        raise AmautaError("--candidates is empty; give e.g. 'base' or 'base,runs/es-lora,rag:leyes'")
    specs: list[CandidateSpec] = []
    for entry in entries:
        label, sep, body = entry.partition("=")
        if not sep:
            label, body = entry, entry
        elif not label.strip() or not body.strip():
            raise AmautaError(f"candidate '{entry}': write NAME=WHO, e.g. ft+rag=runs/law+rag:leyes")
        label, body = label.strip(), body.strip()
        who, _, strategy = body.partition("@")
        strategy = check_strategy(strategy.strip()) if strategy else default_strategy
        model, adapter, rag = base_model, None, None
        for part in (p.strip() for p in who.split("+")):
            if not part:
                raise AmautaError(f"candidate '{entry}': empty part around '+'; write e.g. 'runs/es+rag:leyes'")
            if part.startswith("rag:"):
                if rag is not None:
                    raise AmautaError(f"candidate '{entry}': more than one rag:INDEX")
                rag = part[4:].strip()
                if not rag:
                    raise AmautaError(f"candidate '{entry}': 'rag:' needs an index name, e.g. rag:leyes")
            elif part == "base":
                continue
            elif Path(part).exists():
                path = Path(part)
                if _is_adapter_dir(path):
                    adapter = part
                elif path.suffix == ".gguf" or (path / "config.json").is_file() or \
                        (path / "model" / "config.json").is_file():
                    model = part  # another local model, or a full fine-tuning run (its model/)
                else:
                    raise AmautaError(f"candidate '{entry}': {part} is neither a run/adapter folder (no "
                                      "adapter_config.json) nor a model folder (no config.json) or .gguf file")
            elif part.startswith((".", "/", "~")) or part.endswith(".gguf") or part.count("/") > 1:
                raise AmautaError(f"candidate '{entry}': {part} does not exist; give a run or adapter folder, "
                                  "'base', a model name, or rag:INDEX")
            else:
                model = part  # a registry profile name or a hub id (org/name)
        spec = CandidateSpec(label=label, model=model, adapter=adapter, rag_index=rag, strategy=strategy)
        if any(s.label == spec.label for s in specs):
            raise AmautaError(f"candidate '{spec.label}' is listed twice in --candidates; name them with NAME=...")
        specs.append(spec)
    return specs


def rag_index_fingerprint(name: str) -> str:
    """A hash of a RAG index's manifest (its files and settings), so answers are redone after a re-index
    that changed it; raises a clear error when the index does not exist."""
    from amauta.rag.index import index_path

    manifest = index_path(name) / "manifest.json"
    if not manifest.is_file():
        raise AmautaError(f"candidate rag:{name}: index '{name}' not found at {manifest.parent}; build it with "
                          f"amauta rag index DOCS... --index {name}")
    data = json.loads(manifest.read_text(encoding="utf-8"))
    stable = {k: v for k, v in data.items() if k not in ("created", "versions", "seconds")}
    files = manifest.parent / "files.json"  # per-document content hashes, when the index keeps them
    stable["files"] = files.read_text(encoding="utf-8") if files.is_file() else None
    return hashlib.sha256(json.dumps(stable, sort_keys=True, default=str).encode()).hexdigest()[:16]
