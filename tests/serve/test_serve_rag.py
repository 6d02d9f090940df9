"""`amauta serve --rag`: chat answers built from an index of the example law documents, with sources."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest
from openai import OpenAI

QUESTION = "¿Cuál es la tarifa general del IVA en Ecuador?"


def test_rag_answers_carry_sources_whole_and_streamed(serve, tiny_backend, serve_law_index):
    from amauta.rag.answer import RagAnswerer

    url = serve(tiny_backend, rag=RagAnswerer(serve_law_index, top_k=3))
    assert httpx.get(url + "/health").json()["rag"] == "leyes"
    client = OpenAI(base_url=url + "/v1", api_key="-", max_retries=0)
    before = len(tiny_backend.runs)
    reply = client.chat.completions.create(model="tiny-llama", messages=[{"role": "user", "content": QUESTION}],
                                           max_tokens=6, temperature=0)
    sources = reply.model_extra["sources"]
    assert 1 <= len(sources) <= 3 and all(Path(s["source"]).is_file() for s in sources)
    assert any(s["source"].endswith("iva.md") and s["article"] for s in sources)
    assert [s["number"] for s in sources] == sorted(s["number"] for s in sources)
    # The model saw the numbered passages and the question, within its 512-token context.
    run = tiny_backend.runs[before]
    prompt = tiny_backend.inner.models["tiny-llama"].tokenizer.decode(run.input_ids[0])
    assert "Fragmentos de los documentos" in prompt and QUESTION in prompt and "[1]" in prompt

    chunks = list(client.chat.completions.create(model="tiny-llama", messages=[{"role": "user", "content": QUESTION}],
                                                  max_tokens=6, temperature=0, stream=True))
    final = [c for c in chunks if c.choices and c.choices[0].finish_reason]
    assert len(final) == 1 and final[0].model_extra["sources"] == sources
    assert all("sources" not in (c.model_extra or {}) for c in chunks if c is not final[0])

    # The extra field turns RAG off for one request.
    plain = client.chat.completions.create(model="tiny-llama", messages=[{"role": "user", "content": QUESTION}],
                                           max_tokens=4, temperature=0, extra_body={"amauta": {"rag": False}})
    assert "sources" not in (plain.model_extra or {})


def test_rag_says_so_when_nothing_is_relevant(serve, tiny_backend, serve_law_index):
    from amauta.rag.answer import NOT_FOUND, RagAnswerer

    url = serve(tiny_backend, rag=RagAnswerer(serve_law_index))
    client = OpenAI(base_url=url + "/v1", api_key="-", max_retries=0)
    before = len(tiny_backend.runs)
    reply = client.chat.completions.create(model="tiny-llama", max_tokens=6, messages=[
        {"role": "user", "content": "¿Cuántos minutos se hierve un huevo para que quede tibio?"}])
    assert reply.choices[0].message.content == NOT_FOUND and reply.model_extra["sources"] == []
    assert len(tiny_backend.runs) == before  # no model was asked, so nothing was invented
    empty = httpx.post(url + "/v1/chat/completions", json={"model": "tiny-llama", "messages": [
        {"role": "user", "content": "   "}]})
    assert empty.status_code == 400 and "question" in empty.json()["error"]["message"]


@pytest.mark.integration
def test_smollm2_answers_in_spanish_through_the_openai_client(serve, smollm2, serve_law_index):
    from amauta.rag.answer import RagAnswerer
    from amauta.serve.backends import TransformersBackend

    url = serve(TransformersBackend({"smollm2-135m-instruct": smollm2}), rag=RagAnswerer(serve_law_index, top_k=2))
    client = OpenAI(base_url=url + "/v1", api_key="-", max_retries=0)
    reply = client.chat.completions.create(model="smollm2-135m-instruct", max_tokens=40, temperature=0,
                                           messages=[{"role": "user", "content": QUESTION}])
    text = reply.choices[0].message.content
    assert text.strip() and reply.usage.completion_tokens > 0 and reply.usage.prompt_tokens > 100
    assert any(s["source"].endswith("iva.md") for s in reply.model_extra["sources"])
    stream = client.chat.completions.create(model="smollm2-135m-instruct", max_tokens=40, temperature=0, stream=True,
                                            messages=[{"role": "user", "content": QUESTION}])
    assert "".join(c.choices[0].delta.content or "" for c in stream if c.choices) == text
