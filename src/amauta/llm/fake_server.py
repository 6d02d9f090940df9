"""A small OpenAI-compatible server on 127.0.0.1 with scripted replies, for tests and offline demos.

Tests of everything that talks to an endpoint (the Q&A builder, the LLM judge, RAG answers) start one:

    with FakeOpenAIServer(lambda messages: '{"ok": true}') as url:
        llm = OpenAICompatibleLLM(url, "fake-model")

It serves `GET /v1/models` and `POST /v1/chat/completions` with and without `stream`, records every
request (`server.requests`) so a test can count what was asked, and can fail on purpose: `fail_first=N`
answers the first N chat requests with HTTP `fail_status`, a reply function may raise `FakeHTTPError`,
`delay` slows every answer, and `unused_url()` gives an address where nothing listens (a down endpoint).

`fake_judge_reply` stands in for the LLM judge of `amauta eval judge` offline: its verdict is valid JSON
whose score comes from a hash of the graded answer, so different answers get different (but meaningless)
scores and the judge → preferences → DPO loop has best/worst pairs to learn from (examples/judge-dpo.yaml).

From a terminal: `python -m amauta.llm.fake_server --reply '...' --port 8999`, or `--judge` for the fake judge.
"""

from __future__ import annotations

import contextlib
import hashlib
import inspect
import json
import re
import socket
import threading
import time
import uuid
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

Reply = str | list[str] | Callable[..., str]


class FakeHTTPError(Exception):
    """Raise from a reply function to answer with an HTTP error (status and message)."""

    def __init__(self, status: int = 500, message: str = "simulated failure") -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def unused_url() -> str:
    """A base URL on 127.0.0.1 where nothing listens: a down endpoint for tests."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}/v1"


_GRADED = re.compile(r"<<<\n?(.*?)\n?>>>", re.DOTALL)


def fake_judge_score(answer: str) -> int:
    """1–5 from a hash of the answer (stripped): the same answer always gets the same score, and the N
    attempts at one prompt usually differ. A FAKE: the number says nothing about the answer's quality."""
    digest = hashlib.sha256(answer.strip().encode("utf-8")).digest()
    return 1 + digest[0] % 5


def fake_judge_reply(messages: list[dict]) -> str:
    """A verdict in the judge's JSON (exactitud, relevancia, coherencia, contexto, justificacion), every
    criterion `fake_judge_score` of the graded answer: the last <<< ... >>> block of the last user message,
    where `amauta eval judge` puts the answer it asks about."""
    user = next((str(m.get("content", "")) for m in reversed(messages) if m.get("role") == "user"), "")
    blocks = _GRADED.findall(user)
    score = fake_judge_score(blocks[-1] if blocks else user)
    return json.dumps({"exactitud": score, "relevancia": score, "coherencia": score, "contexto": score,
                       "justificacion": "Calificación ficticia del servidor de prueba: sale de un hash de la "
                                        "respuesta, no de su calidad."}, ensure_ascii=False)


class FakeOpenAIServer:
    """An OpenAI-compatible chat server in a background thread.

    reply: a fixed string, a list of strings answered in order (the last one repeats), or a function of
        the messages (or of messages and the whole request body) returning the reply text.
    model: the model id listed by /v1/models (requests may name any model).
    fail_first: answer the first N chat requests with HTTP `fail_status` (to test retries).
    delay: seconds to wait before each chat answer (to test timeouts).
    api_key: when set, requests without "Authorization: Bearer <api_key>" get HTTP 401.
    port: 0 picks a free port.
    """

    def __init__(self, reply: Reply = "ok", *, model: str = "fake-model", fail_first: int = 0, fail_status: int = 500,
                 delay: float = 0.0, api_key: str | None = None, port: int = 0) -> None:
        self.reply = reply
        self.model = model
        self.fail_first = fail_first
        self.fail_status = fail_status
        self.delay = delay
        self.api_key = api_key
        self.port = port
        self.requests: list[dict] = []
        self.failures = 0
        self._script_index = 0
        self._lock = threading.Lock()
        self._httpd: ThreadingHTTPServer | None = None
        self._connections: set[socket.socket] = set()
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        """The base URL to pass as --base-url ("http://127.0.0.1:PORT/v1")."""
        if self._httpd is None:
            raise RuntimeError("the fake server is not running; use it as a context manager or call start()")
        return f"http://127.0.0.1:{self._httpd.server_address[1]}/v1"

    @property
    def chat_requests(self) -> int:
        """How many chat completion requests arrived (failed ones included)."""
        return len(self.requests)

    def start(self) -> str:
        server = self

        class Handler(_Handler):
            owner = server

        self._httpd = _QuietServer(("127.0.0.1", self.port), Handler)
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(target=self._httpd.serve_forever, name="fake-openai", daemon=True)
        self._thread.start()
        return self.url

    def stop(self) -> None:
        """Shut the server down: later requests fail to connect, like a crashed endpoint."""
        if self._httpd is not None:
            self._httpd.shutdown()
            # Close kept-alive connections too, or a client would still be answered after the "crash".
            for conn in list(self._connections):
                with contextlib.suppress(OSError):
                    conn.shutdown(socket.SHUT_RDWR)
            self._httpd.server_close()
            self._thread.join(timeout=5)
            self._httpd = None

    def __enter__(self) -> str:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def answer(self, body: dict) -> str:
        """The reply text for one request body (raises FakeHTTPError to fail it)."""
        with self._lock:
            self.requests.append(body)
            if self.failures < self.fail_first:
                self.failures += 1
                raise FakeHTTPError(self.fail_status, f"simulated failure {self.failures} of {self.fail_first}")
            if isinstance(self.reply, str):
                return self.reply
            if isinstance(self.reply, list):
                text = self.reply[min(self._script_index, len(self.reply) - 1)]
                self._script_index += 1
                return text
        messages = body.get("messages", [])
        try:
            takes_body = len(inspect.signature(self.reply).parameters) >= 2
        except (TypeError, ValueError):
            takes_body = False
        return self.reply(messages, body) if takes_body else self.reply(messages)


class _QuietServer(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request, client_address) -> None:
        # A client that gave up (a timeout test) closes its socket; that is not a server error.
        import sys

        if not isinstance(sys.exc_info()[1], (ConnectionError, TimeoutError)):
            super().handle_error(request, client_address)


class _Handler(BaseHTTPRequestHandler):
    owner: FakeOpenAIServer
    protocol_version = "HTTP/1.1"
    # Headers and body go out in two writes; with Nagle on, each answer waits ~40 ms for a delayed ACK.
    disable_nagle_algorithm = True

    def log_message(self, *args) -> None:  # keep test output clean
        pass

    def setup(self) -> None:
        super().setup()
        self.owner._connections.add(self.connection)

    def finish(self) -> None:
        self.owner._connections.discard(self.connection)
        with contextlib.suppress(OSError):
            super().finish()

    def _send_json(self, status: int, obj: Any) -> None:
        data = json.dumps(obj, ensure_ascii=False).encode("utf-8")
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _error(self, status: int, message: str) -> None:
        self._send_json(status, {"error": {"message": message, "type": "fake_error", "code": status}})

    def _authorized(self) -> bool:
        key = self.owner.api_key
        if key and self.headers.get("Authorization") != f"Bearer {key}":
            self._error(401, "invalid api key")
            return False
        return True

    def do_GET(self) -> None:
        if not self._authorized():
            return
        if self.path.rstrip("/") == "/v1/models":
            self._send_json(200, {"object": "list", "data": [
                {"id": self.owner.model, "object": "model", "created": 0, "owned_by": "amauta-fake"}]})
        else:
            self._error(404, f"no route {self.path}")

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length)
        if not self._authorized():
            return
        if self.path.rstrip("/") != "/v1/chat/completions":
            self._error(404, f"no route {self.path}")
            return
        try:
            body = json.loads(raw or b"{}")
        except json.JSONDecodeError:
            self._error(400, "the body is not JSON")
            return
        if not isinstance(body.get("messages"), list):
            self._error(400, "'messages' must be a list")
            return
        if self.owner.delay:
            time.sleep(self.owner.delay)
        try:
            text = self.owner.answer(body)
        except FakeHTTPError as exc:
            self._error(exc.status, exc.message)
            return
        except Exception as exc:  # a broken reply function in a test: say so instead of dropping the connection
            self._error(500, f"reply function failed: {exc!r}")
            return
        model = body.get("model") or self.owner.model
        completion_id = f"chatcmpl-{uuid.uuid4().hex[:12]}"
        prompt_tokens = sum(len(str(m.get("content", "")).split()) for m in body["messages"])
        if body.get("stream"):
            self._stream(completion_id, model, text)
            return
        self._send_json(200, {
            "id": completion_id, "object": "chat.completion", "created": int(time.time()), "model": model,
            "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": len(text.split()),
                      "total_tokens": prompt_tokens + len(text.split())},
        })

    def _stream(self, completion_id: str, model: str, text: str) -> None:
        """Server-sent events: a role delta, the text in word-sized deltas, a stop chunk, then [DONE]."""
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Cache-Control", "no-cache")
        self.send_header("Connection", "close")
        self.end_headers()
        pieces = [{"role": "assistant", "content": ""}]
        words = text.split(" ")
        pieces += [{"content": w if i == 0 else " " + w} for i, w in enumerate(words) if text]
        for delta in pieces + [None]:
            chunk = {"id": completion_id, "object": "chat.completion.chunk", "created": int(time.time()),
                     "model": model, "choices": [{"index": 0, "delta": delta or {},
                                                  "finish_reason": None if delta is not None else "stop"}]}
            self.wfile.write(f"data: {json.dumps(chunk, ensure_ascii=False)}\n\n".encode())
        self.wfile.write(b"data: [DONE]\n\n")
        self.wfile.flush()
        self.close_connection = True


def main() -> None:
    import argparse

    parser = argparse.ArgumentParser(description="Serve a fixed reply (or fake judge verdicts) as an "
                                                 "OpenAI-compatible endpoint.")
    parser.add_argument("--reply", default="ok", help="the text every chat request gets")
    parser.add_argument("--judge", action="store_true",
                        help="answer as a fake judge of `amauta eval judge`: a verdict whose scores come from a hash "
                             "of the graded answer (meaningless, but different answers score differently)")
    parser.add_argument("--model", default=None, help="the model id listed (default: fake-model, fake-judge with --judge)")
    parser.add_argument("--port", type=int, default=8999)
    args = parser.parse_args()
    model = args.model or ("fake-judge" if args.judge else "fake-model")
    server = FakeOpenAIServer(fake_judge_reply if args.judge else args.reply, model=model, port=args.port)
    print(f"serving on {server.start()} (Ctrl+C to stop)", flush=True)
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        server.stop()


if __name__ == "__main__":
    main()
