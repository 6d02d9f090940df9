"""Concurrency: 8 streaming clients x 20 requests each, all queued on one model; none may fail or mix."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
from openai import OpenAI

CLIENTS, REQUESTS, MAX_TOKENS = 8, 20, 6


def test_eight_streaming_clients_twenty_requests_each(serve, tiny_backend, tiny):
    from amauta.chat.decoding import GenerationSettings
    from amauta.chat.generate import generate

    url = serve(tiny_backend)
    questions = [f"Pregunta número {i}: ¿qué impuesto se paga?" for i in range(CLIENTS)]
    # Greedy answers computed alone; under load each stream must match its own, token for token.
    expected = [generate(tiny("llama"), [{"role": "user", "content": q}],
                         GenerationSettings(strategy="greedy", max_new_tokens=MAX_TOKENS)).text for q in questions]

    def client_session(i: int) -> list[str]:
        client = OpenAI(base_url=url + "/v1", api_key="-", max_retries=0, timeout=120)
        problems = []
        for r in range(REQUESTS):
            chunks = list(client.chat.completions.create(
                model="tiny-llama", messages=[{"role": "user", "content": questions[i]}], max_tokens=MAX_TOKENS,
                temperature=0, stream=True, stream_options={"include_usage": True}))
            text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
            finishes = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]
            if text != expected[i] or len(finishes) != 1 or chunks[-1].usage is None:
                problems.append(f"client {i} request {r}: {text!r} vs {expected[i]!r}, finishes {finishes}")
        return problems

    with ThreadPoolExecutor(CLIENTS) as pool:
        problems = [p for result in pool.map(client_session, range(CLIENTS)) for p in result]
    assert problems == []
    assert httpx.get(url + "/health").json()["queue"] == {"tiny-llama": 0}


class _Gated:
    """A run that waits for `gate` before its first token, so the test decides when the worker is free."""

    def __init__(self, run, gate):
        self.run, self.gate = run, gate

    def __iter__(self):
        self.gate.wait(30)
        yield from self.run

    @property
    def result(self):
        return self.run.result


class _GatedBackend:
    def __init__(self, inner, gate):
        self.inner, self.gate, self.name = inner, gate, inner.name

    def __getattr__(self, attr):
        return getattr(self.inner, attr)

    def start(self, *args):
        return _Gated(self.inner.start(*args), self.gate)


def test_full_queue_answers_503_and_recovers(serve, tiny_backend):
    gate = threading.Event()
    url = serve(_GatedBackend(tiny_backend.inner, gate), max_queue=2)
    body = {"model": "tiny-llama", "messages": [{"role": "user", "content": "hola"}], "max_tokens": 3}
    with ThreadPoolExecutor(2) as pool:
        held = [pool.submit(httpx.post, url + "/v1/chat/completions", json=body, timeout=60) for _ in range(2)]
        deadline = time.monotonic() + 10
        while httpx.get(url + "/health").json()["queue"]["tiny-llama"] < 2 and time.monotonic() < deadline:
            time.sleep(0.02)
        third = httpx.post(url + "/v1/chat/completions", json=body)
        gate.set()
        assert [f.result().status_code for f in held] == [200, 200]
    assert third.status_code == 503 and third.json()["error"]["code"] == "server_busy"
    assert httpx.post(url + "/v1/chat/completions", json=body).status_code == 200
