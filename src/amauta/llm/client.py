"""One way to ask a language model for text: a local Amauta model or any OpenAI-compatible endpoint.

`data build-qa`, `evaluate judge` and `rag answer` all talk to models through the small `LLM` protocol
below, so each of them works the same with the embedded SmolLM2 on a laptop, a fine-tuned adapter, or a
GPT-4-class model behind vLLM, llama.cpp's server, Ollama or a hosted API.
"""

from __future__ import annotations

import time
from typing import Any, Protocol, runtime_checkable

from amauta.core.errors import AmautaError, EndpointError
from amauta.llm.keys import api_key as resolve_api_key
from amauta.llm.keys import api_key_variables

DEFAULT_LOCAL_MODEL = "smollm2-135m-instruct"


@runtime_checkable
class LLM(Protocol):
    """Anything that answers a conversation with text."""

    name: str

    def complete(self, messages: list[dict], *, max_tokens: int = 512, temperature: float = 0.0) -> str:
        """The assistant's reply to `messages` (role/content dicts)."""
        ...


class LocalLLM:
    """A model loaded by `amauta.models.load.load_model`, answering through `amauta.chat.generate`.

    loaded: the LoadedModel (profile decides the chat template and stop strings).
    settings: decoding for every call; by default greedy when temperature is 0, sampling at the given
        temperature otherwise. `max_tokens` of each call always sets `max_new_tokens`.
    """

    def __init__(self, loaded: Any, settings: Any = None) -> None:
        self.loaded = loaded
        self.settings = settings
        profile = getattr(loaded, "profile", None)
        adapter = (getattr(loaded, "extra", None) or {}).get("adapter")
        self.name = getattr(profile, "name", None) or str(getattr(loaded, "source", "local"))
        if adapter:
            self.name += f"+{adapter}"
        self.calls = 0

    def complete(self, messages: list[dict], *, max_tokens: int = 512, temperature: float = 0.0) -> str:
        from amauta.chat.decoding import GenerationSettings
        from amauta.chat.generate import generate

        if self.settings is not None:
            settings = self.settings.model_copy(update={"max_new_tokens": max_tokens})
        elif temperature and temperature > 0:
            settings = GenerationSettings.from_profile(self.loaded.profile, strategy="sampling",
                                                       temperature=temperature, max_new_tokens=max_tokens)
        else:
            settings = GenerationSettings.from_profile(self.loaded.profile, strategy="greedy",
                                                       max_new_tokens=max_tokens)
        self.calls += 1
        return generate(self.loaded, messages, settings).text


class OpenAICompatibleLLM:
    """A model behind an OpenAI-compatible `/v1/chat/completions` endpoint, via the official client.

    base_url: e.g. "http://127.0.0.1:8000/v1" (vLLM, llama.cpp server, Ollama) or a hosted API.
    model: the served model's name; None asks the server's /v1/models and takes the first one.
    api_key: the key (a flag's value); None follows the API-key rule for `role` (`amauta.llm.keys`), and local
        servers accept the placeholder sent when no key is set anywhere.
    role: what the key is for, "LLM" or "JUDGE": picks AMAUTA_<ROLE>_API_KEY.
    timeout: seconds to wait for one answer.
    max_retries: extra tries after a connection error, timeout, rate limit or 5xx, waiting
        `backoff * 2**attempt` seconds between them; then an `EndpointError` names the endpoint. A
        refusal (400, 401, 404, other 4xx) is not retried: its `EndpointError` carries the status.
    """

    def __init__(self, base_url: str, model: str | None = None, api_key: str | None = None, timeout: float = 60,
                 max_retries: int = 3, backoff: float = 1.0, role: str = "LLM") -> None:
        import openai

        self.base_url = base_url.rstrip("/")
        self.max_retries = max_retries
        self.backoff = backoff
        self.calls = 0
        self.key_variable = api_key_variables(role)[0]  # named when the key is refused
        # The client's own retries are off: ours below log the endpoint and end in one clear error.
        self.client = openai.OpenAI(base_url=self.base_url, api_key=resolve_api_key(role, api_key) or "none",
                                    timeout=timeout, max_retries=0)
        self.model = model or self._first_model()
        self.name = self.model

    def served_models(self) -> list[str]:
        """The model ids the server lists at /v1/models (vLLM and `amauta serve`: base models, then adapters)."""
        models = self._call(lambda: self.client.models.list())
        return [m.id for m in getattr(models, "data", [])]

    def _first_model(self) -> str:
        ids = self.served_models()
        if not ids:
            raise AmautaError(f"{self.base_url}: the server lists no models; pass --model NAME")
        return ids[0]

    def complete(self, messages: list[dict], *, max_tokens: int = 512, temperature: float = 0.0) -> str:
        self.calls += 1
        response = self._call(lambda: self.client.chat.completions.create(
            model=self.model, messages=messages, max_tokens=max_tokens, temperature=temperature))
        if not response.choices:
            raise AmautaError(f"{self.base_url}: the answer has no choices; check that the server is OpenAI-compatible")
        return response.choices[0].message.content or ""

    def _call(self, request):
        import openai

        for attempt in range(self.max_retries + 1):
            try:
                return request()
            except openai.AuthenticationError:
                raise self._error(f"the API key was refused (401); pass the right --api-key or set "
                                  f"{self.key_variable} (docs/llm.md: API keys)", 401) from None
            except openai.NotFoundError as exc:
                raise self._error(f"not found (404: {_message(exc)}); check --base-url (it usually ends in /v1) "
                                  f"and --model '{getattr(self, 'model', '')}'", 404) from None
            except openai.BadRequestError as exc:
                raise self._error(f"the request was refused (400: {_message(exc)})", 400) from None
            except (openai.APIConnectionError, openai.RateLimitError, openai.InternalServerError,
                    openai.APIStatusError) as exc:
                status = getattr(exc, "status_code", None)
                if status is not None and status < 500 and status not in (408, 409, 429):
                    raise self._error(f"HTTP {status} ({_message(exc)})", status) from None
                if status:
                    reason = f"HTTP {status}"
                else:
                    reason = "timed out" if isinstance(exc, openai.APITimeoutError) else "cannot connect"
                if attempt == self.max_retries:
                    raise self._error(f"no answer after {attempt + 1} tries ({reason}); check that the server "
                                      "is running and --base-url is right", status) from None
                time.sleep(self.backoff * 2 ** attempt)
        raise AssertionError("unreachable")

    def _error(self, what: str, status: int | None) -> EndpointError:
        """One line naming this endpoint, typed with the HTTP status (None: no answer came)."""
        return EndpointError(f"{self.base_url}: {what}", endpoint=self.base_url, status=status)


def _message(exc: Exception) -> str:
    body = getattr(exc, "body", None)
    if isinstance(body, dict):
        inner = body.get("error", body)
        if isinstance(inner, dict) and inner.get("message"):
            return str(inner["message"])
    return str(getattr(exc, "message", exc))


def make_llm(model: str | None = None, base_url: str | None = None, api_key: str | None = None, *,
             adapter: str | None = None, timeout: float = 60, max_retries: int = 3, role: str = "LLM") -> LLM:
    """An endpoint model when `base_url` is given, else a local model (a profile name, folder or GGUF).

    model: the served model's name (endpoint) or what `load_model` accepts (local; default SmolLM2).
    api_key: the command's flag; None follows the API-key rule for `role` ("LLM" or "JUDGE", amauta.llm.keys).
    adapter: a LoRA adapter or training run folder for a local model.
    """
    if base_url:
        if adapter:
            raise AmautaError("--adapter works with local models only; load the adapter in the server instead")
        return OpenAICompatibleLLM(base_url, model, api_key=api_key, timeout=timeout, max_retries=max_retries,
                                   role=role)
    from amauta.models.load import load_model

    return LocalLLM(load_model(model or DEFAULT_LOCAL_MODEL, adapter=adapter))
