"""The OpenAI-compatible client against the fake server on loopback: answers, streams, retries, errors."""

from __future__ import annotations

import time

import pytest

from amauta.core.errors import AmautaError, EndpointError
from amauta.llm import OpenAICompatibleLLM, ask_json, make_llm
from amauta.llm.fake_server import FakeHTTPError, FakeOpenAIServer, unused_url

HELLO = [{"role": "user", "content": "Hola"}]


def test_complete_sends_messages_and_settings():
    server = FakeOpenAIServer(lambda messages: "Respuesta a: " + messages[-1]["content"])
    with server as url:
        llm = OpenAICompatibleLLM(url, "mi-modelo")
        assert llm.complete(HELLO, max_tokens=33, temperature=0.5) == "Respuesta a: Hola"
    body = server.requests[0]
    assert body["model"] == "mi-modelo" and body["messages"] == HELLO
    assert body["max_tokens"] == 33 and body["temperature"] == 0.5


def test_model_is_discovered_from_v1_models_and_make_llm_picks_the_endpoint():
    with FakeOpenAIServer("ok", model="servido-7b") as url:
        llm = make_llm(base_url=url)
        assert isinstance(llm, OpenAICompatibleLLM) and llm.name == "servido-7b"
        assert llm.complete(HELLO) == "ok"


def test_scripted_replies_in_order_and_reply_function_with_body():
    with FakeOpenAIServer(["uno", "dos"]) as url:
        llm = OpenAICompatibleLLM(url, "m")
        assert [llm.complete(HELLO) for _ in range(3)] == ["uno", "dos", "dos"]
    with FakeOpenAIServer(lambda messages, body: f"max={body['max_tokens']}") as url:
        assert OpenAICompatibleLLM(url, "m").complete(HELLO, max_tokens=7) == "max=7"


def test_streaming_with_the_official_client():
    import openai

    text = "El IVA general es del 15% desde abril de 2024."
    with FakeOpenAIServer(text) as url:
        client = openai.OpenAI(base_url=url, api_key="x")
        stream = client.chat.completions.create(model="m", messages=HELLO, stream=True)
        chunks = list(stream)
    assert "".join(c.choices[0].delta.content or "" for c in chunks) == text
    assert chunks[-1].choices[0].finish_reason == "stop"


def test_server_errors_are_retried_with_backoff():
    server = FakeOpenAIServer("por fin", fail_first=2, fail_status=503)
    with server as url:
        llm = OpenAICompatibleLLM(url, "m", max_retries=3, backoff=0.05)
        started = time.time()
        assert llm.complete(HELLO) == "por fin"
        assert time.time() - started >= 0.05 + 0.1  # waited 0.05 then 0.1 s
    assert server.chat_requests == 3


def test_down_endpoint_gives_one_line_naming_it():
    url = unused_url()
    llm = OpenAICompatibleLLM(url, "m", max_retries=2, backoff=0.01)
    with pytest.raises(AmautaError, match=r"no answer after 3 tries \(cannot connect\)") as err:
        llm.complete(HELLO)
    assert url in str(err.value) and "\n" not in str(err.value)
    # Typed for callers that branch on it: no answer came, so no status and not a refused request.
    assert isinstance(err.value, EndpointError) and err.value.status is None and not err.value.bad_request
    assert err.value.endpoint == url


def test_server_that_stops_mid_run():
    server = FakeOpenAIServer("ok")
    url = server.start()
    llm = OpenAICompatibleLLM(url, "m", max_retries=1, backoff=0.01)
    assert llm.complete(HELLO) == "ok"
    server.stop()
    with pytest.raises(AmautaError, match="cannot connect"):
        llm.complete(HELLO)


def test_timeouts_are_retried_then_reported():
    with FakeOpenAIServer("tarde", delay=0.5) as url:
        llm = OpenAICompatibleLLM(url, "m", timeout=0.1, max_retries=1, backoff=0.01)
        with pytest.raises(AmautaError, match=r"no answer after 2 tries \(timed out\)"):
            llm.complete(HELLO)


def test_auth_and_not_found_are_not_retried():
    server = FakeOpenAIServer("ok", api_key="clave")
    with server as url:
        with pytest.raises(AmautaError, match="API key was refused") as refused:
            OpenAICompatibleLLM(url, "m", api_key="otra", backoff=0.01).complete(HELLO)
        assert isinstance(refused.value, EndpointError) and refused.value.status == 401
        assert not refused.value.bad_request  # a wrong key fails every request, not just this one
        assert server.chat_requests == 0  # refused before a reply was produced
        assert OpenAICompatibleLLM(url, "m", api_key="clave").complete(HELLO) == "ok"
        with pytest.raises(AmautaError, match=r"not found \(404.*--base-url") as missing:
            OpenAICompatibleLLM(url.removesuffix("/v1"), "m", api_key="clave", backoff=0.01).complete(HELLO)
        assert isinstance(missing.value, EndpointError) and missing.value.status == 404


def test_reply_function_can_fail_on_purpose():
    def reply(messages):
        raise FakeHTTPError(400, "contexto demasiado largo")

    with FakeOpenAIServer(reply) as url:
        with pytest.raises(AmautaError, match=r"refused \(400: contexto demasiado largo\)") as refused:
            OpenAICompatibleLLM(url, "m").complete(HELLO)
    assert isinstance(refused.value, EndpointError) and refused.value.status == 400 and refused.value.bad_request


def test_other_client_errors_carry_their_status():
    def reply(messages):
        raise FakeHTTPError(422, "max_tokens (4000) is too large")

    with FakeOpenAIServer(reply) as url:
        with pytest.raises(EndpointError, match=r"HTTP 422 \(max_tokens") as refused:
            OpenAICompatibleLLM(url, "m").complete(HELLO)
    assert refused.value.status == 422 and not refused.value.bad_request


def test_ask_json_through_the_endpoint():
    with FakeOpenAIServer(["Lo siento", '```json\n{"tarifa": 15,}\n```']) as url:
        reply = ask_json(OpenAICompatibleLLM(url, "m"), HELLO, retries=1)
    assert reply.value == {"tarifa": 15}
