"""The one error type a user sees, and the few kinds of it that callers branch on.

Every stage raises `AmautaError` for bad input (a missing file, a malformed line, a model that will not
fit). The CLI prints its message as one line and exits with code 2; `--debug` shows the traceback.
Messages name the file, the line or record, what is wrong and how to fix it.

Code that must react differently to one failure (the judge goes on after a refused request but stops
when the endpoint is down; the server answers a too-long prompt with a 400) catches a subclass below
and reads its fields, never the message text.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable


class AmautaError(Exception):
    """A user-facing error: one clear line, no traceback."""


class EndpointError(AmautaError):
    """An OpenAI-compatible endpoint failed: it refused the request, or it could not be reached.

    endpoint: the base URL asked.
    status: the HTTP status of the refusal (or of the last failed try), None when no answer came at all
        (down, timed out, wrong host).
    """

    def __init__(self, message: str, *, endpoint: str, status: int | None = None) -> None:
        super().__init__(message)
        self.endpoint, self.status = endpoint, status

    @property
    def bad_request(self) -> bool:
        """The server answered and refused this one request as invalid (400): another request may pass."""
        return self.status == 400


class ContextTooLongError(AmautaError):
    """A prompt that does not fit the model's context window, with the numbers.

    prompt_tokens: the prompt's length in tokens. context: the tokens the model's context holds.
    """

    def __init__(self, message: str, *, prompt_tokens: int, context: int) -> None:
        super().__init__(message)
        self.prompt_tokens, self.context = prompt_tokens, context


def did_you_mean(word: str, choices: Iterable[str], n: int = 3) -> str:
    """Return ' (did you mean: a, b?)' for close matches of `word`, or '' when there are none."""
    close = difflib.get_close_matches(word, list(choices), n=n, cutoff=0.5)
    return f" (did you mean: {', '.join(close)}?)" if close else ""
