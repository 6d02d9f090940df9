"""The OpenAI-compatible FastAPI app: chat and text completions (streamed or whole), models, health, web page.

    app = create_app(TransformersBackend.load(["smollm2-135m-instruct"]), ServeConfig())
    uvicorn.run(app, host="127.0.0.1", port=8000)

Requests are validated by the pydantic models in `schemas` (unknown fields and wrong types → 400 in
OpenAI's error shape), mapped onto `GenerationSettings`, and queued on the model's worker
(`worker.ModelWorker`). Streams are server-sent events in OpenAI's chunk format ending with `data: [DONE]`;
a client that disconnects sets the run's stop_event, so its generation ends after the current token.
Every /v1 route depends on `require_api_key` (401 before any other answer); without the key, /health
says only that the server is up.
With a RAG index, chat answers are built by `amauta.rag.answer.RagAnswerer` and carry `sources`.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import json
import threading
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from fastapi import APIRouter, Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse, StreamingResponse
from fastapi.staticfiles import StaticFiles
from pydantic import ValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException

from amauta.core.errors import AmautaError, ContextTooLongError
from amauta.serve.backends import Backend, RunResult
from amauta.serve.config import ServeConfig
from amauta.serve.schemas import ChatCompletionRequest, CompletionRequest, _Sampling
from amauta.serve.worker import ModelWorker, QueueFull

PAGE_DIR = Path(__file__).parent / "page"


class APIError(Exception):
    """An error answered in OpenAI's shape: {"error": {"message", "type", "param", "code"}}."""

    def __init__(self, status: int, message: str, type_: str = "invalid_request_error", param: str | None = None,
                 code: str | None = None):
        super().__init__(message)
        self.status, self.message, self.type, self.param, self.code = status, message, type_, param, code

    def body(self) -> dict:
        return {"error": {"message": self.message, "type": self.type, "param": self.param, "code": self.code}}

    def response(self) -> JSONResponse:
        return JSONResponse(self.body(), status_code=self.status)


def _amauta_error(exc: Exception) -> APIError:
    text = str(exc)
    if isinstance(exc, ContextTooLongError):  # OpenAI's code for it, so clients can shorten and retry
        return APIError(400, text, param="messages", code="context_length_exceeded")
    if isinstance(exc, (AmautaError, ValidationError, ValueError)):
        return APIError(400, text.splitlines()[0] if text else type(exc).__name__)
    return APIError(500, f"{type(exc).__name__}: {text}"[:500], "server_error", code="internal_error")


# --- request size and authentication ------------------------------------------------------------------

class BodyLimit:
    """ASGI middleware: refuse request bodies over `limit` bytes with a 413 (declared or streamed).

    A streamed body that grows past the limit is cut short; whatever the app then answers (a parse error)
    is replaced by the 413, so the client learns the real reason.
    """

    def __init__(self, app, limit: int):
        self.app, self.limit = app, limit

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        error = APIError(413, f"request body is larger than {self.limit} bytes; send a shorter prompt",
                         code="request_too_large")
        declared = dict(scope.get("headers") or []).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.limit:
            return await error.response()(scope, receive, send)
        received, too_large = 0, False

        async def limited_receive():
            nonlocal received, too_large
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.limit:
                    too_large = True
                    return {"type": "http.request", "body": b"", "more_body": False}
            return message

        async def replacing_send(message):
            if not too_large:
                return await send(message)
            if message["type"] == "http.response.start":
                body = json.dumps(error.body()).encode()
                await send({"type": "http.response.start", "status": 413,
                            "headers": [(b"content-type", b"application/json"),
                                        (b"content-length", str(len(body)).encode())]})
                await send({"type": "http.response.body", "body": body, "more_body": False})

        await self.app(scope, limited_receive, replacing_send)


def _invalid_json_message(body: Any, error: dict) -> str:
    """'the request body is not valid JSON (line 1, column 28: Expecting ',' delimiter)'."""
    offset = error.get("loc", ())[-1]
    reason = (error.get("ctx") or {}).get("error")
    if not isinstance(offset, int) or not isinstance(body, str):
        return "the request body is not valid JSON" + (f" ({reason})" if reason else "")
    line = body.count("\n", 0, offset) + 1
    column = offset - (body.rfind("\n", 0, offset) + 1) + 1
    return f"the request body is not valid JSON (line {line}, column {column}" + (f": {reason})" if reason else ")")


def _key_is_valid(request: Request) -> bool:
    """True when the server has no key, or the request carries it as a bearer token (compared in constant time).

    The key is read from the app's settings (`app.state.config`, the `ServeConfig` the app was made with).
    """
    api_key = request.app.state.config.api_key
    if not api_key:
        return True
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    return scheme.lower() == "bearer" and hmac.compare_digest(token.strip().encode(), api_key.encode())


def _key_error() -> APIError:
    return APIError(401, "missing or wrong API key: send 'Authorization: Bearer <key>' (the key the server was "
                    "started with: AMAUTA_API_KEY or amauta serve --api-key)", code="invalid_api_key")


def require_api_key(request: Request) -> None:
    """FastAPI dependency of every /v1 route: no valid key (when the server has one) is a 401.

    FastAPI solves a route's dependencies before it validates the body, so a stranger learns nothing
    about what a valid request looks like: 401 comes before any 400.
    """
    if not _key_is_valid(request):
        raise _key_error()


# --- from an OpenAI request to Amauta's settings --------------------------------------------------------

def settings_for(backend: Backend, card: Any, req: _Sampling, limit: int, requested_max: int | None):
    """GenerationSettings for a request: temperature 0 → greedy, else sampling; `amauta` picks others."""
    max_tokens = requested_max or min(card.default_max_tokens, limit)
    if max_tokens > limit:
        raise APIError(400, f"max_tokens is {max_tokens}, above this server's limit of {limit}; ask for fewer "
                       "(or restart with a larger --max-tokens-limit)", param="max_tokens")
    strategy = req.strategy() or None
    if strategy and strategy not in card.strategies:
        raise APIError(400, f"strategy '{strategy}' is not available for {card.id} on the {card.backend} backend; "
                       f"choose one of {', '.join(card.strategies)}", param="amauta.strategy")
    extra = req.amauta
    overrides: dict[str, Any] = dict(
        strategy=strategy, max_new_tokens=max_tokens, stop=req.stop or [], seed=req.seed,
        temperature=req.temperature if strategy == "sampling" and req.temperature else None,
        top_p=req.top_p if strategy == "sampling" else None,
        top_k=extra.top_k if extra else None, penalty_alpha=extra.penalty_alpha if extra else None,
        num_beams=extra.num_beams if extra else None, repetition_penalty=extra.repetition_penalty if extra else None)
    try:
        return backend.settings(card.id, **overrides)
    except (AmautaError, ValidationError) as exc:
        raise _amauta_error(exc) from None


class _StaticRun:
    """A fixed answer that needs no model (RAG found nothing relevant)."""

    def __init__(self, text: str):
        self.text, self.result = text, None

    def __iter__(self):
        yield self.text
        self.result = RunResult(self.text, 0, 0, "stop")


class _Sourced:
    """A run plus the RAG passages its prompt held."""

    def __init__(self, run: Any, hits: list, found: bool = True):
        self.run, self.hits, self.found = run, hits, found

    def __iter__(self):
        yield from self.run

    @property
    def result(self):
        return self.run.result

    def sources(self, text: str) -> list[dict]:
        from amauta.rag.answer import Answer, cited_numbers

        cited = cited_numbers(text, len(self.hits))
        chosen = [self.hits[n - 1] for n in cited] if cited else list(self.hits)
        return Answer(text, chosen, self.found, list(self.hits)).to_dict()["sources"]


# --- the app -----------------------------------------------------------------------------------------

def create_app(backend: Backend, config: ServeConfig | None = None, rag: Any = None) -> FastAPI:
    """The FastAPI app over `backend` (and a `RagAnswerer`, when `rag` is given)."""
    config = config or ServeConfig()
    cards = {card.id: card for card in backend.cards()}
    workers: dict[str, ModelWorker] = {}
    for card in cards.values():
        key = backend.worker_key(card.id)
        workers.setdefault(key, ModelWorker(key, config.max_queue))
    rag_lock = threading.Lock()  # one retrieval at a time: the index and its embedder are shared by all workers
    created = int(time.time())

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI):
        yield
        for worker in workers.values():  # let each worker thread finish its loop
            worker.close()

    app = FastAPI(title="Amauta", version="0.1.0", docs_url="/docs", redoc_url=None, lifespan=lifespan)
    app.add_middleware(BodyLimit, limit=config.max_body_bytes)
    app.state.workers = workers
    app.state.config = config
    v1 = APIRouter(prefix="/v1", dependencies=[Depends(require_api_key)])

    @app.exception_handler(APIError)
    async def _api_error(request: Request, exc: APIError):
        return exc.response()

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError):
        # A body that is not JSON at all fails while FastAPI reads it, before the key dependency runs.
        if request.url.path.startswith("/v1/") and not _key_is_valid(request):
            return _key_error().response()
        first = exc.errors()[0] if exc.errors() else {}
        loc = [str(p) for p in first.get("loc", ()) if p != "body"]
        param = ".".join(loc) or None
        if first.get("type") == "extra_forbidden":
            message = f"unknown field '{param}': OpenAI's API has no such parameter (check its spelling)"
        elif first.get("type") == "json_invalid":  # its loc holds the character offset: say line and column
            message, param = _invalid_json_message(exc.body, first), None
        else:
            message = f"{param or 'body'}: {first.get('msg', 'invalid value')}"
        return APIError(400, message, param=param, code=first.get("type")).response()

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException):
        return APIError(exc.status_code, str(exc.detail), "invalid_request_error" if exc.status_code < 500
                        else "server_error").response()

    def card_for(model: str):
        if model not in cards:
            raise APIError(404, f"the model '{model}' does not exist here; GET /v1/models lists: "
                           f"{', '.join(cards)}", param="model", code="model_not_found")
        return cards[model]

    async def events(model_id: str, make_run, stop_event: threading.Event) -> AsyncIterator[tuple[str, Any]]:
        worker = workers[backend.worker_key(model_id)]
        try:
            async for event in worker.events(make_run, stop_event):
                yield event
        except QueueFull as exc:
            raise APIError(503, f"{exc}; try again shortly", "server_error", code="server_busy") from None

    async def first_event(stream: AsyncIterator[tuple[str, Any]]) -> Any:
        """Wait until the run started; its errors (prompt too long, bad strategy) become 4xx before any byte."""
        kind, value = await anext(stream)
        if kind == "error":
            raise _amauta_error(value)
        if kind == "cancelled":
            raise APIError(499, "request cancelled", code="cancelled")
        return value

    async def collect(stream: AsyncIterator[tuple[str, Any]], request: Request) -> tuple[Any, str, Any]:
        """A whole answer; stops the generation when the client disconnects meanwhile."""
        run = await first_event(stream)
        parts: list[str] = []
        pending = asyncio.ensure_future(anext(stream))
        checked = time.monotonic()
        try:
            while True:
                done, _ = await asyncio.wait({pending}, timeout=0.5)
                if time.monotonic() - checked >= 0.5:  # twice a second, ask whether the client is still there
                    checked = time.monotonic()
                    if await request.is_disconnected():  # cancelling the wait sets the run's stop_event
                        pending.cancel()
                        raise APIError(499, "client disconnected", code="cancelled")
                if not done:
                    continue
                kind, value = pending.result()
                if kind == "delta":
                    parts.append(value)
                    pending = asyncio.ensure_future(anext(stream))
                    continue
                if kind == "error":
                    raise _amauta_error(value)
                return run, "".join(parts), value
        finally:
            if not pending.done():
                pending.cancel()

    def make_chat_run(model_id: str, messages: list[dict], settings: Any, stop_event: threading.Event, use_rag: bool):
        def make_run():
            if not use_rag:
                return backend.start(model_id, messages, settings, stop_event)
            from amauta.rag.answer import NOT_FOUND

            question = messages[-1]["content"]
            system = next((m["content"] for m in messages if m["role"] == "system"), None)
            with rag_lock:
                prompt, hits = rag.build_messages(question, messages[:-1], system, loaded=backend.loaded(model_id),
                                                  max_new_tokens=settings.max_new_tokens)
            if not hits:  # nothing relevant: say so instead of letting the model invent
                return _Sourced(_StaticRun(NOT_FOUND), [], found=False)
            return _Sourced(backend.start(model_id, prompt, settings, stop_event), hits)
        return make_run

    # --- routes ---------------------------------------------------------------------------------------

    @app.get("/health")
    async def health(request: Request):
        if not _key_is_valid(request):  # strangers learn that it runs, not what it serves
            return {"status": "ok"}
        return {"status": "ok", "backend": backend.name, "models": list(cards),
                "rag": getattr(getattr(rag, "index", None), "name", None) if rag is not None else None,
                "auth": bool(config.api_key), "max_tokens_limit": config.max_tokens_limit,
                "queue": {key: worker.pending for key, worker in workers.items()}}

    @v1.get("/models")
    async def models():
        return {"object": "list", "data": [card.to_openai(created) for card in cards.values()]}

    @v1.get("/models/{model_id:path}")
    async def model(model_id: str):
        return card_for(model_id).to_openai(created)

    @v1.post("/chat/completions")
    async def chat_completions(req: ChatCompletionRequest, request: Request):
        card = card_for(req.model)
        settings = settings_for(backend, card, req, config.max_tokens_limit, req.max_completion_tokens or req.max_tokens)
        messages = [{"role": "system" if m.role == "developer" else m.role, "content": m.text()} for m in req.messages]
        use_rag = rag is not None and not (req.amauta is not None and req.amauta.rag is False)
        if use_rag and (messages[-1]["role"] != "user" or not messages[-1]["content"].strip()):
            raise APIError(400, "with a RAG index the last message must be the user's question, and not empty",
                           param="messages")
        answer_id, runs = f"chatcmpl-{uuid.uuid4().hex[:24]}", []
        for i in range(req.n):
            choice = settings.model_copy(update={"seed": settings.seed + i}) if settings.seed is not None and i else settings
            runs.append((choice, threading.Event()))
        make = [make_chat_run(card.id, messages, s, e, use_rag) for s, e in runs]
        if req.stream:
            return await _stream(request, answer_id, "chat.completion.chunk", card.id, make, runs, req, chat=True)
        choices, prompt_tokens, completion_tokens, sources = [], 0, 0, None
        for i, ((_, stop_event), make_run) in enumerate(zip(runs, make, strict=True)):
            run, text, result = await collect(events(card.id, make_run, stop_event), request)
            result = result or RunResult(text)
            choices.append({"index": i, "message": {"role": "assistant", "content": text, "refusal": None},
                            "logprobs": None, "finish_reason": _finish(result.finish_reason)})
            prompt_tokens = max(prompt_tokens, result.prompt_tokens)
            completion_tokens += result.new_tokens
            if isinstance(run, _Sourced) and sources is None:
                sources = run.sources(text)
        body = {"id": answer_id, "object": "chat.completion", "created": int(time.time()), "model": card.id,
                "system_fingerprint": None, "choices": choices,
                "usage": _usage(prompt_tokens, completion_tokens)}
        if sources is not None:
            body["sources"] = sources
        return body

    @v1.post("/completions")
    async def completions(req: CompletionRequest, request: Request):
        card = card_for(req.model)
        if req.echo or req.suffix or (req.best_of or 1) > 1 or req.logprobs:
            raise APIError(400, "echo, suffix, best_of and logprobs are not supported by Amauta", param="echo")
        settings = settings_for(backend, card, req, config.max_tokens_limit, req.max_tokens)
        prompts = [req.prompt] if isinstance(req.prompt, str) else list(req.prompt)
        if not prompts or not all(p.strip() for p in prompts):
            raise APIError(400, "the prompt is empty; write something for the model to continue", param="prompt")
        answer_id, runs, make = f"cmpl-{uuid.uuid4().hex[:24]}", [], []
        for prompt in prompts:
            for i in range(req.n):
                choice = settings.model_copy(update={"seed": settings.seed + i}) if settings.seed is not None and i else settings
                event = threading.Event()
                runs.append((choice, event))
                make.append(lambda p=prompt, s=choice, e=event: backend.start(card.id, p, s, e))
        if req.stream:
            return await _stream(request, answer_id, "text_completion", card.id, make, runs, req, chat=False)
        choices, prompt_tokens, completion_tokens = [], 0, 0
        for i, ((_, stop_event), make_run) in enumerate(zip(runs, make, strict=True)):
            _, text, result = await collect(events(card.id, make_run, stop_event), request)
            result = result or RunResult(text)
            choices.append({"index": i, "text": text, "logprobs": None, "finish_reason": _finish(result.finish_reason)})
            if i % req.n == 0:
                prompt_tokens += result.prompt_tokens
            completion_tokens += result.new_tokens
        return {"id": answer_id, "object": "text_completion", "created": int(time.time()), "model": card.id,
                "system_fingerprint": None, "choices": choices, "usage": _usage(prompt_tokens, completion_tokens)}

    async def _stream(request: Request, answer_id: str, kind: str, model_id: str, make: list, runs: list,
                      req: _Sampling, chat: bool) -> StreamingResponse:
        created_at = int(time.time())
        include_usage = bool((req.stream_options or {}).get("include_usage"))
        n = getattr(req, "n", 1)

        def chunk(index: int, content: str | None = None, finish: str | None = None, first: bool = False, **extra):
            if chat:
                delta = {"role": "assistant", "content": ""} if first else ({"content": content} if content else {})
                choice = {"index": index, "delta": delta, "logprobs": None, "finish_reason": finish}
            else:
                choice = {"index": index, "text": content or "", "logprobs": None, "finish_reason": finish}
            body = {"id": answer_id, "object": kind, "created": created_at, "model": model_id,
                    "system_fingerprint": None, "choices": [choice], **extra}
            return f"data: {json.dumps(body, ensure_ascii=False)}\n\n"

        # The first run must start before the response does, so a too-long prompt is a 400, not a broken stream.
        first_stream = events(model_id, make[0], runs[0][1])
        first_run = await first_event(first_stream)

        async def body() -> AsyncIterator[str]:
            prompt_tokens = completion_tokens = 0
            streams = [first_stream]
            try:
                for i in range(len(make)):
                    stream = streams[-1] if i == 0 else events(model_id, make[i], runs[i][1])
                    if i:
                        streams.append(stream)
                    run = first_run if i == 0 else None
                    if chat:
                        yield chunk(i, first=True)
                    parts: list[str] = []
                    async for event_kind, value in stream:
                        if event_kind == "start":
                            run = value
                        elif event_kind == "delta":
                            parts.append(value)
                            yield chunk(i, value)
                        elif event_kind == "error":
                            yield f"data: {json.dumps(_amauta_error(value).body(), ensure_ascii=False)}\n\n"
                            return
                        elif event_kind == "end":
                            result = value or RunResult("".join(parts))
                            extra = {}
                            if isinstance(run, _Sourced):
                                extra["sources"] = run.sources("".join(parts))
                            yield chunk(i, None, _finish(result.finish_reason), **extra)
                            completion_tokens += result.new_tokens
                            if chat or i % n == 0:
                                prompt_tokens = max(prompt_tokens, result.prompt_tokens) if chat else \
                                    prompt_tokens + result.prompt_tokens
                if include_usage:
                    usage = {"id": answer_id, "object": kind, "created": created_at, "model": model_id,
                             "system_fingerprint": None, "choices": [], "usage": _usage(prompt_tokens, completion_tokens)}
                    yield f"data: {json.dumps(usage)}\n\n"
                yield "data: [DONE]\n\n"
            finally:  # client gone (the task was cancelled) or finished: stop every run still going
                for _, stop_event in runs:
                    stop_event.set()
                for stream in streams:
                    await stream.aclose()

        return StreamingResponse(body(), media_type="text/event-stream",
                                 headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})

    app.include_router(v1)

    # --- the web page ---------------------------------------------------------------------------------

    @app.get("/", include_in_schema=False)
    async def page():
        return FileResponse(PAGE_DIR / "index.html", media_type="text/html")

    app.mount("/static", StaticFiles(directory=PAGE_DIR), name="static")

    return app


def _finish(reason: str) -> str:
    return "length" if reason == "length" else "stop"


def _usage(prompt: int, completion: int) -> dict:
    return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}
