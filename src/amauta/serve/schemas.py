"""Request bodies of the OpenAI API, as pydantic models.

Fields OpenAI defines but Amauta does not use (`frequency_penalty`, `user`, ...) are accepted and ignored
so that stock clients work; fields nobody defines are refused with a 400, so a typo never passes silently.
Amauta's own decoding choices (contrastive search, beams) travel in the extra `amauta` object.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", protected_namespaces=())


class AmautaOptions(_Strict):
    """Decoding choices beyond OpenAI's fields."""

    strategy: Literal["greedy", "sampling", "beam", "contrastive"] | None = None
    penalty_alpha: float | None = Field(None, ge=0, le=1)
    top_k: int | None = Field(None, ge=1)
    num_beams: int | None = Field(None, ge=1, le=16)
    repetition_penalty: float | None = Field(None, gt=0)
    rag: bool | None = None  # False: answer without the server's RAG index (default: use it when there is one)


class Message(_Strict):
    role: Literal["system", "user", "assistant", "developer"]
    content: str | list[dict[str, Any]]
    name: str | None = None

    def text(self) -> str:
        """The message's text (OpenAI's list-of-parts form keeps only its text parts)."""
        if isinstance(self.content, str):
            return self.content
        return "".join(part.get("text", "") for part in self.content if part.get("type") == "text")


class _Sampling(_Strict):
    model: str
    max_tokens: int | None = Field(None, ge=1)
    temperature: float | None = Field(None, ge=0, le=2)
    top_p: float | None = Field(None, gt=0, le=1)
    n: int = Field(1, ge=1, le=8)
    stop: str | list[str] | None = None
    seed: int | None = None
    stream: bool = False
    stream_options: dict[str, Any] | None = None
    amauta: AmautaOptions | None = None
    # OpenAI fields accepted for compatibility and not used.
    frequency_penalty: float | None = None
    presence_penalty: float | None = None
    logit_bias: dict[str, float] | None = None
    user: str | None = None

    @field_validator("stop")
    @classmethod
    def _stop_list(cls, value):
        if value is None:
            return []
        values = [value] if isinstance(value, str) else value
        if len(values) > 8:
            raise ValueError("at most 8 stop strings")
        return values

    def strategy(self) -> str:
        """OpenAI's convention: temperature 0 means greedy; otherwise sampling unless `amauta` says more."""
        if self.amauta and self.amauta.strategy:
            return self.amauta.strategy
        if self.temperature is not None and self.temperature == 0:
            return "greedy"
        if self.temperature is None and self.top_p is None:
            return ""  # the model profile's default
        return "sampling"


class ChatCompletionRequest(_Sampling):
    messages: list[Message] = Field(min_length=1)
    max_completion_tokens: int | None = Field(None, ge=1)
    response_format: dict[str, Any] | None = None
    tools: list[dict[str, Any]] | None = None
    tool_choice: Any = None
    parallel_tool_calls: bool | None = None
    logprobs: bool | None = None
    top_logprobs: int | None = None


class CompletionRequest(_Sampling):
    prompt: str | list[str]
    echo: bool = False
    suffix: str | None = None
    best_of: int | None = None
    logprobs: int | None = None


