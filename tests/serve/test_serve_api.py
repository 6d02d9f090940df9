"""The OpenAI-compatible API on a tiny model, driven by the official `openai` client and raw HTTP."""

from __future__ import annotations

import json
import time

import httpx
import openai
import pytest
from openai import OpenAI

MESSAGES = [{"role": "user", "content": "¿Cuál es la capital del Ecuador?"}]


@pytest.fixture()
def url(serve, tiny_backend):
    return serve(tiny_backend)


@pytest.fixture()
def client(url):
    return OpenAI(base_url=url + "/v1", api_key="unused", max_retries=0)


def test_models_and_health(client, url):
    assert [m.id for m in client.models.list()] == ["tiny-llama"]
    card = httpx.get(url + "/v1/models/tiny-llama").json()
    assert card["context_length"] == 512 and "contrastive" in card["strategies"]
    health = httpx.get(url + "/health").json()
    assert health["status"] == "ok" and health["backend"] == "transformers" and health["rag"] is None


def test_chat_completion_has_usage_and_is_greedy_at_temperature_zero(client, tiny):
    from amauta.chat.decoding import GenerationSettings
    from amauta.chat.generate import generate

    reply = client.chat.completions.create(model="tiny-llama", messages=MESSAGES, max_tokens=6, temperature=0)
    expected = generate(tiny("llama"), MESSAGES, GenerationSettings(strategy="greedy", max_new_tokens=6))
    choice = reply.choices[0]
    assert reply.object == "chat.completion" and choice.message.role == "assistant"
    assert choice.message.content == expected.text
    assert choice.finish_reason == ("length" if expected.finish_reason == "length" else "stop")
    assert reply.usage.prompt_tokens == expected.prompt_tokens
    assert reply.usage.completion_tokens == expected.new_tokens
    assert reply.usage.total_tokens == expected.prompt_tokens + expected.new_tokens


def test_stream_is_openai_chunks_ending_with_done(client, url):
    chunks = list(client.chat.completions.create(model="tiny-llama", messages=MESSAGES, max_tokens=8, temperature=0,
                                                  stream=True, stream_options={"include_usage": True}))
    assert chunks[0].choices[0].delta.role == "assistant"
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    whole = client.chat.completions.create(model="tiny-llama", messages=MESSAGES, max_tokens=8, temperature=0)
    assert text == whole.choices[0].message.content
    finals = [c for c in chunks if c.choices and c.choices[0].finish_reason]
    assert len(finals) == 1 and finals[0].choices[0].finish_reason == whole.choices[0].finish_reason
    assert chunks[-1].choices == [] and chunks[-1].usage.total_tokens == whole.usage.total_tokens
    # On the wire: server-sent events, `data: {...}` lines, and the last one is `data: [DONE]`.
    with httpx.stream("POST", url + "/v1/chat/completions",
                      json={"model": "tiny-llama", "messages": MESSAGES, "max_tokens": 4, "stream": True}) as r:
        assert r.headers["content-type"].startswith("text/event-stream")
        lines = [line for line in r.iter_lines() if line]
    assert all(line.startswith("data: ") for line in lines) and lines[-1] == "data: [DONE]"
    assert json.loads(lines[0][6:])["object"] == "chat.completion.chunk"


def test_an_answer_cut_inside_a_multibyte_character_never_ends_in_half_of_it(client, tiny, monkeypatch):
    from amauta.chat import generate as gen

    tokenizer = tiny("llama").tokenizer
    ids = [tokenizer.convert_tokens_to_ids(p) for p in ["h", "o", "Ã"]]  # "ho" + the first byte of "ñ"
    monkeypatch.setattr(gen, "token_steps", lambda *a, **k: iter(ids))
    whole = client.chat.completions.create(model="tiny-llama", messages=MESSAGES, max_tokens=3, temperature=0)
    assert whole.choices[0].message.content == "ho" and whole.choices[0].finish_reason == "length"
    chunks = list(client.chat.completions.create(model="tiny-llama", messages=MESSAGES, max_tokens=3,
                                                  temperature=0, stream=True))
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == "ho"
    text = client.completions.create(model="tiny-llama", prompt="x", max_tokens=3, temperature=0)
    assert text.choices[0].text == "ho"
    streamed = client.completions.create(model="tiny-llama", prompt="x", max_tokens=3, temperature=0, stream=True)
    assert "".join(c.choices[0].text for c in streamed) == "ho"


def test_sampling_seed_n_and_stop(client):
    def ask(**kw):
        return client.chat.completions.create(model="tiny-llama", messages=MESSAGES, max_tokens=8, **kw)

    a, b = ask(temperature=1.0, seed=7, n=2), ask(temperature=1.0, seed=7, n=2)
    assert [c.message.content for c in a.choices] == [c.message.content for c in b.choices]
    assert [c.index for c in a.choices] == [0, 1]
    assert a.choices[0].message.content != a.choices[1].message.content  # each choice gets its own seed
    assert 2 <= a.usage.completion_tokens <= 16  # both choices counted
    greedy = ask(temperature=0).choices[0].message.content
    cut = greedy[len(greedy) // 2:][:2]
    stopped = ask(temperature=0, stop=[cut]).choices[0]
    assert stopped.message.content == greedy[:greedy.index(cut)] and stopped.finish_reason == "stop"


def test_contrastive_and_beam_through_the_amauta_field(client, tiny):
    from amauta.chat.decoding import GenerationSettings
    from amauta.chat.generate import generate

    for extra, settings in [({"strategy": "contrastive", "penalty_alpha": 0.6, "top_k": 4},
                             GenerationSettings(strategy="contrastive", penalty_alpha=0.6, top_k=4, max_new_tokens=6)),
                            ({"strategy": "beam", "num_beams": 3},
                             GenerationSettings(strategy="beam", num_beams=3, max_new_tokens=6))]:
        reply = client.chat.completions.create(model="tiny-llama", messages=MESSAGES, max_tokens=6,
                                               extra_body={"amauta": extra})
        assert reply.choices[0].message.content == generate(tiny("llama"), MESSAGES, settings).text


def test_text_completions(client, tiny):
    from amauta.chat.decoding import GenerationSettings
    from amauta.chat.generate import generate

    reply = client.completions.create(model="tiny-llama", prompt=["Érase una vez", "La capital"], max_tokens=5,
                                      temperature=0)
    assert [c.index for c in reply.choices] == [0, 1] and reply.object == "text_completion"
    expected = generate(tiny("llama"), "La capital", GenerationSettings(strategy="greedy", max_new_tokens=5))
    assert reply.choices[1].text == expected.text
    streamed = client.completions.create(model="tiny-llama", prompt="La capital", max_tokens=5, temperature=0,
                                         stream=True)
    assert "".join(c.choices[0].text for c in streamed) == expected.text


@pytest.mark.parametrize("body, status, param, code", [
    ({"model": "tiny-llama", "messages": MESSAGES, "temperatura": 0.2}, 400, "temperatura", "extra_forbidden"),
    ({"model": "tiny-llama", "messages": MESSAGES, "max_tokens": "mucho"}, 400, "max_tokens", "int_parsing"),
    ({"model": "tiny-llama", "messages": []}, 400, "messages", "too_short"),
    ({"model": "tiny-llama", "messages": [{"role": "robot", "content": "hola"}]}, 400, "messages.0.role", "literal_error"),
    ({"model": "tiny-llama", "messages": MESSAGES, "amauta": {"strategy": "magic"}}, 400, "amauta.strategy", "literal_error"),
    ({"model": "gpt-5", "messages": MESSAGES}, 404, "model", "model_not_found"),
    ({"model": "tiny-llama", "messages": MESSAGES, "max_tokens": 100000}, 400, "max_tokens", None),
    ({"model": "tiny-llama", "messages": [{"role": "user", "content": "palabra " * 700}]}, 400, "messages",
     "context_length_exceeded"),
])
def test_bad_requests_get_openai_errors(url, body, status, param, code):
    r = httpx.post(url + "/v1/chat/completions", json=body)
    assert r.status_code == status, r.text
    error = r.json()["error"]
    assert set(error) == {"message", "type", "param", "code"} and error["message"]
    assert error["param"] == param and error["code"] == code
    assert error["type"] == "invalid_request_error"


def test_invalid_json_and_oversized_bodies(url):
    r = httpx.post(url + "/v1/chat/completions", content=b"{not json", headers={"content-type": "application/json"})
    assert r.status_code == 400 and r.json()["error"]["code"] == "json_invalid"
    r = httpx.post(url + "/v1/chat/completions", content=b"x" * 1_100_000)
    assert r.status_code == 413 and r.json()["error"]["code"] == "request_too_large"

    def chunked():  # no content-length: the limit counts the bytes as they arrive
        for _ in range(12):
            yield b" " * 100_000

    r = httpx.post(url + "/v1/chat/completions", content=chunked())
    assert r.status_code == 413


def test_invalid_json_names_line_and_column_not_a_param(url):
    body = b'{\n  "model": "tiny-llama",\n  "messages": [}\n'
    r = httpx.post(url + "/v1/chat/completions", content=body, headers={"content-type": "application/json"})
    error = r.json()["error"]
    assert r.status_code == 400 and error["code"] == "json_invalid" and error["param"] is None
    assert error["message"] == "the request body is not valid JSON (line 3, column 16: Expecting value)"


def test_openai_client_raises_on_errors(client):
    with pytest.raises(openai.NotFoundError):
        client.chat.completions.create(model="nope", messages=MESSAGES)
    with pytest.raises(openai.BadRequestError, match="limit"):
        client.chat.completions.create(model="tiny-llama", messages=MESSAGES, max_tokens=99999)


def test_api_key_required_when_set(serve, tiny_backend):
    url = serve(tiny_backend, api_key="s3creto")
    assert httpx.get(url + "/v1/models").status_code == 401
    bad = httpx.get(url + "/v1/models", headers={"Authorization": "Bearer otro"})
    assert bad.status_code == 401 and bad.json()["error"]["code"] == "invalid_api_key"
    with pytest.raises(openai.AuthenticationError):
        OpenAI(base_url=url + "/v1", api_key="otro", max_retries=0).models.list()
    good = OpenAI(base_url=url + "/v1", api_key="s3creto", max_retries=0)
    assert good.chat.completions.create(model="tiny-llama", messages=MESSAGES, max_tokens=2).choices
    assert httpx.get(url + "/health").status_code == 200 and httpx.get(url + "/").status_code == 200


def test_health_without_the_key_says_only_ok(serve, tiny_backend):
    url = serve(tiny_backend, api_key="s3creto")
    assert httpx.get(url + "/health").json() == {"status": "ok"}
    assert httpx.get(url + "/health", headers={"Authorization": "Bearer otro"}).json() == {"status": "ok"}
    full = httpx.get(url + "/health", headers={"Authorization": "Bearer s3creto"}).json()
    assert full["models"] == ["tiny-llama"] and full["auth"] is True and set(full["queue"]) == {"tiny-llama"}


@pytest.mark.parametrize("path, body", [
    ("/v1/chat/completions", {"model": "tiny-llama", "messages": MESSAGES, "temperatura": 0.2}),
    ("/v1/chat/completions", {"model": "tiny-llama", "messages": []}),
    ("/v1/chat/completions", {"model": "gpt-5", "messages": MESSAGES}),
    ("/v1/chat/completions", {}),
    ("/v1/chat/completions", b"{not json"),
    ("/v1/completions", {"model": "tiny-llama", "prompt": 3}),
    ("/v1/models/gpt-5", None),
])
def test_the_key_is_checked_before_the_request(serve, tiny_backend, path, body):
    url = serve(tiny_backend, api_key="s3creto")

    def send(headers):
        if body is None:
            return httpx.get(url + path, headers=headers)
        if isinstance(body, bytes):
            return httpx.post(url + path, content=body, headers={"content-type": "application/json", **headers})
        return httpx.post(url + path, json=body, headers=headers)

    for headers in ({}, {"Authorization": "Bearer otro"}):
        r = send(headers)
        assert r.status_code == 401 and r.json()["error"]["code"] == "invalid_api_key", r.text
    assert send({"Authorization": "Bearer s3creto"}).status_code in (400, 404)  # with the key: what is wrong


def test_the_page_keeps_the_key_for_this_tab_only():
    from amauta.serve.app import PAGE_DIR

    script = (PAGE_DIR / "app.js").read_text(encoding="utf-8")
    assert "localStorage" not in script  # it would outlive the browser session, readable by any later visitor
    assert 'sessionStorage.setItem("amauta-key"' in script and 'sessionStorage.getItem("amauta-key")' in script


def test_client_disconnect_stops_the_generation(serve, tiny_backend):
    url = serve(tiny_backend, max_tokens_limit=400)
    body = {"model": "tiny-llama", "messages": MESSAGES, "max_tokens": 400, "stream": True,
            "amauta": {"strategy": "contrastive"}}  # contrastive: slow enough per token to catch mid-stream
    before = len(tiny_backend.runs)
    with httpx.stream("POST", url + "/v1/chat/completions", json=body) as r:
        for i, _ in enumerate(r.iter_lines()):
            if i > 3:
                break  # leave mid-stream: closing the connection is the only signal the server gets
    run = tiny_backend.runs[before]
    deadline = time.monotonic() + 20
    while run.result is None and time.monotonic() < deadline:
        time.sleep(0.05)
    assert run.result is not None and run.result.finish_reason == "cancelled"
    assert run.result.new_tokens < 400
    # The worker is free again: the next request is answered at once.
    assert httpx.post(url + "/v1/chat/completions", json={**body, "stream": False, "max_tokens": 2}).status_code == 200


class _Slow:
    """A run that waits 0.1 s per token, like a big model: slow enough for the client to give up mid-answer."""

    def __init__(self, run):
        self.run = run

    def __iter__(self):
        for delta in self.run:
            time.sleep(0.1)
            yield delta

    @property
    def result(self):
        return self.run.result


class _SlowBackend:
    def __init__(self, inner):
        self.inner, self.name, self.runs = inner, inner.name, []

    def __getattr__(self, attr):
        return getattr(self.inner, attr)

    def start(self, *args):
        self.runs.append(_Slow(self.inner.start(*args)))
        return self.runs[-1]


def test_client_that_gives_up_on_a_whole_answer_stops_it_too(serve, tiny_backend):
    from amauta.chat.decoding import GenerationSettings

    slow = _SlowBackend(tiny_backend.inner)
    slow.settings = lambda model_id, **kw: GenerationSettings(**{k: v for k, v in kw.items() if v is not None},
                                                              ignore_eos=True)  # always the full max_tokens
    url = serve(slow, max_tokens_limit=400)
    body = {"model": "tiny-llama", "messages": MESSAGES, "max_tokens": 400, "temperature": 0}
    with pytest.raises(httpx.ReadTimeout):
        httpx.post(url + "/v1/chat/completions", json=body, timeout=httpx.Timeout(5, read=0.5))
    deadline = time.monotonic() + 20
    while (not slow.runs or slow.runs[0].result is None) and time.monotonic() < deadline:
        time.sleep(0.05)
    result = slow.runs[0].result
    assert result.finish_reason == "cancelled" and result.new_tokens < 50
