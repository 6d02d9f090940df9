"""Where Amauta keeps its caches: `~/.cache/amauta`, or `$AMAUTA_HOME` when set."""

from __future__ import annotations

import os
from pathlib import Path


def amauta_home() -> Path:
    """The root of Amauta's caches (converted models, RAG indexes, evaluation caches)."""
    home = os.environ.get("AMAUTA_HOME")
    root = Path(home).expanduser() if home else Path.home() / ".cache" / "amauta"
    root.mkdir(parents=True, exist_ok=True)
    return root
