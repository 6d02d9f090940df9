"""The one error type a user sees.

Every stage raises `AmautaError` for bad input (a missing file, a malformed line, a model that will not
fit). The CLI prints its message as one line and exits with code 2; `--debug` shows the traceback.
Messages name the file, the line or record, what is wrong and how to fix it.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable


class AmautaError(Exception):
    """A user-facing error: one clear line, no traceback."""


def did_you_mean(word: str, choices: Iterable[str], n: int = 3) -> str:
    """Return ' (did you mean: a, b?)' for close matches of `word`, or '' when there are none."""
    close = difflib.get_close_matches(word, list(choices), n=n, cutoff=0.5)
    return f" (did you mean: {', '.join(close)}?)" if close else ""
