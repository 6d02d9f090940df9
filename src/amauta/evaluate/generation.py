"""Greedy generation for the generative tasks (Belebele for chat models, XQuAD, MGSM), and answers from an
OpenAI-compatible endpoint for the judge's candidates and the exam's short answers.

Tasks ask for text through the chat room's `generate` / `generate_batch`, so that templates, stop
strings and decoding are the same as when a person chats with the model. `EndpointGenerator` asks a
served model instead (generation at scale: a vLLM server), through the llm room's one client.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from amauta.core.errors import AmautaError, EndpointError


def greedy_settings(loaded: Any, max_new_tokens: int):
    """Greedy decoding with the profile's stop strings: what an evaluation should measure."""
    from amauta.chat.decoding import GenerationSettings

    return GenerationSettings.from_profile(loaded.profile, strategy="greedy", max_new_tokens=max_new_tokens)


def generate_texts(loaded: Any, conversations: list[list[dict[str, str]]], max_new_tokens: int) -> list[str]:
    """The model's greedy reply to each conversation (a list of chat messages), in batches."""
    from amauta.chat.generate import generate_batch

    return [r.text for r in generate_batch(loaded, conversations, greedy_settings(loaded, max_new_tokens))]


class GenerativeTask:
    """A runner task answered by generation: a fixed instruction per item, greedy replies, then a score.

    Subclasses set `name` and `instruction` and say how an item becomes chat messages (`messages`) and
    how a reply is graded (`score`); items, the cache key and batching are shared here.
    items: the task's items.
    max_new_tokens: tokens the model may write per reply.
    source: the data file's name (part of the cache key).
    """

    name = "generative"
    instruction = ""

    def __init__(self, items: list[dict], max_new_tokens: int, source: str = ""):
        self._items, self.max_new_tokens, self.source = items, max_new_tokens, source

    def config_key(self) -> dict[str, Any]:
        return {"prompt": self.instruction, "max_new_tokens": self.max_new_tokens, "source": self.source}

    def items(self) -> list[dict]:
        return self._items

    def length(self, item: dict) -> int:
        """The same for every item: replies are generated in file order, each batch the same items."""
        return 0

    def messages(self, item: dict) -> list[dict[str, str]]:
        """The chat messages the model answers for `item`."""
        raise NotImplementedError

    def score(self, item: dict, output: str) -> dict[str, Any]:
        """The result row for one reply (it must include `correct`)."""
        raise NotImplementedError

    def evaluate(self, loaded: Any, batch: list[dict]) -> list[dict]:
        outputs = generate_texts(loaded, [self.messages(item) for item in batch], self.max_new_tokens)
        return [self.score(item, output) for item, output in zip(batch, outputs, strict=True)]


# --- answers from an OpenAI-compatible endpoint ---------------------------------------------------------------

ENDPOINT_RETRIES = 2  # extra tries after a connection error or 5xx: a down endpoint fails in ~3 s, in one line
ENDPOINT_STRATEGIES = ("greedy", "sampling")  # the OpenAI API has no beam or contrastive search


class EndpointGenerator:
    """The generative part of an evaluation (the judge's candidate answers, the exam's short answers) asked of
    an OpenAI-compatible endpoint (vLLM from `amauta serve --backend vllm`, `amauta serve`, llama.cpp's
    server...) through the llm room's client, instead of the model loaded in this process.

    base_url: the endpoint, e.g. http://127.0.0.1:8000/v1. base_model: the endpoint's model for `base`
        (None: the first model it lists; vLLM and `amauta serve` list the base model first).
    api_key: the `--generate-api-key` flag; None follows the API-key rule for the LLM role (amauta.llm.keys).
    timeout: seconds for one answer. workers: concurrent requests (a vLLM server batches them).
    The endpoint is asked for its models at once, so a wrong URL or a down server stops the command in
    seconds, in one line, before any model is loaded.
    """

    def __init__(self, base_url: str, base_model: str | None = None, *, api_key: str | None = None,
                 timeout: float = 300, workers: int = 8):
        from amauta.llm.client import OpenAICompatibleLLM

        self.base_url = base_url.rstrip("/")
        self.workers = workers
        self._llms: dict[str, Any] = {}

        def make(name: str) -> Any:
            return OpenAICompatibleLLM(self.base_url, name, api_key=api_key, timeout=timeout,
                                       max_retries=ENDPOINT_RETRIES, role="LLM")

        self._make = make
        try:
            self.served = make(base_model or "-").served_models()
        except EndpointError as exc:
            raise _named(exc, "") from None
        if not self.served:
            raise AmautaError(f"{self.base_url}: the endpoint lists no models; check --generate-base-url")
        self.base_model = base_model or self.served[0]

    def check_served(self, names: Iterable[str]) -> None:
        """Refuse, in one line, a model name the endpoint does not list (before any answer is asked)."""
        for name in dict.fromkeys(names):
            if name not in self.served:
                raise AmautaError(f"{self.base_url}: no model '{name}' there (it serves {', '.join(self.served)}); "
                                  f"serve it (`amauta serve --adapter {name}=RUN`, vLLM's --lora-modules "
                                  f"{name}=PATH), or name the candidate NAME=RUN after a served model")

    def complete(self, model: str, messages: list[dict[str, str]], *, max_tokens: int,
                 temperature: float = 0.0) -> str:
        """The endpoint model's reply to one conversation."""
        if model not in self._llms:
            self._llms[model] = self._make(model)
        try:
            return self._llms[model].complete(messages, max_tokens=max_tokens, temperature=temperature).strip()
        except EndpointError as exc:
            raise _named(exc, "; the answers so far are cached: rerun the same command to resume") from None

    def generate(self, model: str, conversations: list[list[dict[str, str]]], max_tokens: int,
                 temperature: float = 0.0) -> list[str]:
        """Replies to every conversation, in order, `workers` requests at a time."""
        from concurrent.futures import ThreadPoolExecutor

        if not conversations:
            return []
        with ThreadPoolExecutor(max_workers=max(1, min(self.workers, len(conversations)))) as pool:
            return list(pool.map(lambda messages: self.complete(model, messages, max_tokens=max_tokens,
                                                                temperature=temperature), conversations))

    def record(self, names: dict[str, str]) -> dict[str, Any]:
        """What the summary and manifest say about it: the endpoint and each candidate's model there."""
        return {"answers": "endpoint", "endpoint": self.base_url, "models": names}


def _named(exc: EndpointError, then: str) -> EndpointError:
    """The client's one line, saying which endpoint of the command it was (a judge may be asked too)."""
    return EndpointError(f"answer endpoint (--generate-base-url) {exc}{then}", endpoint=exc.endpoint, status=exc.status)


def endpoint_names(specs: Sequence[Any], base_model: str, base_name: str) -> dict[tuple[str, str | None], str]:
    """(model, adapter) of each candidate → the endpoint's name for those weights.

    The base model is `base_name` (--generate-model); other weights take the NAME of a candidate written
    NAME=WHO without retrieval, as `amauta serve --adapter NAME=RUN` names an adapter, else the run folder's
    name for an adapter (runs/law/adapter → law) or the model as written for another model.
    """
    names: dict[tuple[str, str | None], str] = {}
    for spec in specs:
        weights = (spec.model, spec.adapter)
        if weights in names:
            continue
        if spec.adapter is None and spec.model == base_model:
            names[weights] = base_name
            continue
        named = [s.label for s in specs if not s.rag_index and (s.model, s.adapter) == weights
                 and s.label.split("@")[0] not in (s.adapter, s.model, "base")]
        if named:
            names[weights] = named[0]
        elif spec.adapter:
            path = Path(spec.adapter).resolve()
            names[weights] = path.parent.name if path.name == "adapter" else path.name
        else:
            names[weights] = spec.model
    return names


def endpoint_temperature(strategy: str, model: str, label: str) -> float:
    """The temperature an endpoint samples at for `strategy`: 0 for greedy, else the model profile's sampling
    temperature (what the in-process model would use); beam and contrastive are refused in one line."""
    from amauta.chat.decoding import GenerationSettings

    if strategy not in ENDPOINT_STRATEGIES:
        raise AmautaError(f"candidate {label!r}: an endpoint (--generate-base-url) decodes greedily or by sampling, "
                          f"not by '{strategy}'; use @greedy or @sampling, or drop --generate-base-url")
    if strategy == "greedy":
        return 0.0
    from amauta.models.registry import get_profile, profile_names

    profile = get_profile(model) if model in profile_names() else None
    return float(GenerationSettings.from_profile(profile, strategy="sampling").temperature)
