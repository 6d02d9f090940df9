"""LocalLLM: the same `complete` over a model loaded in this process (tiny random model; SmolLM2 integration)."""

from __future__ import annotations

import json

import pytest

from amauta.llm import LLM, LocalLLM, ask_json

HELLO = [{"role": "system", "content": "Responde en español."}, {"role": "user", "content": "¿Cuál es la tarifa del IVA?"}]


def test_local_llm_answers_through_chat_generate(tiny):
    llm = LocalLLM(tiny("llama"))
    assert isinstance(llm, LLM) and llm.name == "tiny-llama"
    first = llm.complete(HELLO, max_tokens=8)
    assert isinstance(first, str) and first == llm.complete(HELLO, max_tokens=8)  # temperature 0 is greedy
    assert llm.calls == 2


def test_local_llm_sampling_and_explicit_settings(tiny):
    from amauta.chat.decoding import GenerationSettings
    from amauta.chat.generate import generate

    loaded = tiny("mistral")
    assert isinstance(LocalLLM(loaded).complete(HELLO, max_tokens=4, temperature=0.9), str)
    settings = GenerationSettings(strategy="greedy", max_new_tokens=99)
    expected = generate(loaded, HELLO, settings.model_copy(update={"max_new_tokens": 5})).text
    assert LocalLLM(loaded, settings).complete(HELLO, max_tokens=5) == expected


@pytest.mark.integration
def test_build_qa_with_the_embedded_model(smollm2, tmp_path, monkeypatch):
    """The whole path with a real (tiny) model: whatever it writes is parsed, or recorded as a failure."""
    from amauta.data.build_qa import BuildQAConfig, run
    from amauta.documents import chunk_document, load_document

    monkeypatch.setenv("AMAUTA_HOME", str(tmp_path / "home"))
    doc = tmp_path / "ley.md"
    doc.write_text("# Ley\n\nArt. 1.- La tarifa general del IVA es del 15% desde abril de 2024.\n", encoding="utf-8")
    llm = LocalLLM(smollm2)
    out = run(BuildQAConfig(docs=[str(doc)], out=str(tmp_path / "qa.jsonl"), pairs_per_chunk=1, retries=0, min_chars=0,
                            max_tokens=48), llm=llm)
    rows = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
    failures = tmp_path / "qa.failures.jsonl"
    assert llm.calls == 1 and len(chunk_document(load_document(doc))) == 1
    assert rows or failures.exists()
    for row in rows:
        assert row["model"] == "smollm2-135m-instruct" and row["article"] == "Art. 1"
    reply = ask_json(llm, [{"role": "user", "content": 'Responde solo con este JSON: {"ok": true}'}], retries=1,
                     max_tokens=16)
    assert len(reply.raw_replies) in (1, 2)
