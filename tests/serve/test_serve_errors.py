"""How the server maps the errors a generation raises onto OpenAI-shaped answers: by type, not wording."""

from __future__ import annotations

from amauta.core.errors import AmautaError, ContextTooLongError
from amauta.serve.app import _amauta_error


def test_a_prompt_over_the_context_is_a_400_with_openais_code():
    error = _amauta_error(ContextTooLongError("m: the prompt has 900 tokens but the context holds 512; shorten it",
                                              prompt_tokens=900, context=512))
    assert (error.status, error.param, error.code) == (400, "messages", "context_length_exceeded")
    assert "900 tokens" in error.message


def test_other_errors_that_mention_context_and_tokens_are_plain_400s():
    error = _amauta_error(AmautaError("leyes: the context passages need 3 more tokens; rebuild the index"))
    assert (error.status, error.code) == (400, None)
    assert _amauta_error(RuntimeError("boom")).status == 500
