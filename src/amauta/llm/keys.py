"""The one rule for API keys, for every command that talks to an endpoint or serves one.

A key comes from the first of:

1. the command's flag (`--api-key`, `--judge-api-key`);
2. `AMAUTA_<ROLE>_API_KEY`, where ROLE says what the key is for: `JUDGE` (the judge of `amauta eval judge`),
   `LLM` (the model behind `--base-url` of `data build-qa` and `rag ask`), `SERVER` (the key `amauta serve`
   asks its clients for);
3. `AMAUTA_API_KEY`;
4. `OPENAI_API_KEY`.

So one exported key serves every command, and a role's own variable sets a different key for that role.
Keys are never written to disk (docs/llm.md).
"""

from __future__ import annotations

import os

from amauta.core.errors import AmautaError

ROLES = ("JUDGE", "LLM", "SERVER")


def api_key_variables(role: str) -> tuple[str, ...]:
    """The environment variables read for `role`, in order: ("AMAUTA_JUDGE_API_KEY", "AMAUTA_API_KEY", ...)."""
    if role not in ROLES:
        raise AmautaError(f"unknown API key role '{role}'; one of {', '.join(ROLES)}")
    return f"AMAUTA_{role}_API_KEY", "AMAUTA_API_KEY", "OPENAI_API_KEY"


def api_key_with_source(role: str, flag: str | None = None) -> tuple[str | None, str | None]:
    """(the key, where it came from: "--api-key" or the variable's name), or (None, None) when none is set.

    An empty flag or variable counts as not given (an `export X=` left in a shell should not win).
    """
    if flag:
        return flag, "flag"
    for name in api_key_variables(role):
        value = os.environ.get(name, "").strip()
        if value:
            return value, name
    return None, None


def api_key(role: str, flag: str | None = None) -> str | None:
    """The API key for `role` ("JUDGE", "LLM" or "SERVER"): the flag, then AMAUTA_<ROLE>_API_KEY, then
    AMAUTA_API_KEY, then OPENAI_API_KEY; None when none is set."""
    return api_key_with_source(role, flag)[0]
