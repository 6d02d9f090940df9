"""Is the Hugging Face hub reachable? Asked once per process, so that offline work fails in seconds.

Without a network, every `from_pretrained` of a hub id makes huggingface_hub retry with back-off
("Retrying in 8s [Retry 5/5]"): 38–62 s before the error. `hub_offline()` answers from `HF_HUB_OFFLINE`
when it is set, else from one quick request to the hub (no retries); loads of hub ids then pass
`local_files_only=True` (`hub_kwargs`), so a model in the local hub cache still loads and any other
fails at once with the same one-line error.
"""

from __future__ import annotations

import os
from typing import Any

PROBE_TIMEOUT_S = 3.0
_state: dict[str, bool] = {}


def _offline_by_setting() -> bool:
    """HF_HUB_OFFLINE (or TRANSFORMERS_OFFLINE) set to a true value."""
    return any(os.environ.get(name, "").strip().lower() in ("1", "true", "yes", "on")
               for name in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"))


def hub_endpoint() -> str:
    """The hub's address (HF_ENDPOINT, as huggingface_hub reads it)."""
    from huggingface_hub import constants

    return os.environ.get("HF_ENDPOINT") or constants.ENDPOINT


def probe_hub(endpoint: str, timeout: float = PROBE_TIMEOUT_S) -> bool:
    """One HTTP request to `endpoint`, no retries: True when anything answers (any status).

    It goes through huggingface_hub's own HTTP session, so proxies and certificates are those the
    downloads would use.
    """
    from huggingface_hub.utils import get_session

    try:
        get_session().head(endpoint, timeout=timeout, follow_redirects=False)
    except Exception:  # DNS, refused, unreachable, timed out, proxy refused: whatever the HTTP library raises
        return False
    return True


def hub_offline() -> bool:
    """Whether the hub is out of reach: HF_HUB_OFFLINE says so, or the one probe of this process failed."""
    if _offline_by_setting():
        return True
    if "reachable" not in _state:
        _state["reachable"] = probe_hub(hub_endpoint())
    return not _state["reachable"]


def offline_reason() -> str:
    """Why `hub_offline()` is true, for error messages."""
    if _offline_by_setting():
        return "the hub is offline (HF_HUB_OFFLINE=1)"
    return f"the hub ({hub_endpoint()}) cannot be reached from here"


def hub_kwargs() -> dict[str, Any]:
    """`from_pretrained` keyword arguments for a hub id: the local cache only when the hub is out of reach."""
    return {"local_files_only": True} if hub_offline() else {}


def reset() -> None:
    """Forget the probe's answer (tests; a process whose network came back)."""
    _state.clear()
