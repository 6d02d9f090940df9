"""LocalLLM: the same `complete` over a model loaded in this process (tiny random model; SmolLM2 integration)."""

from __future__ import annotations

import json

import pytest

from amauta.llm import LLM, LocalLLM

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
    """The whole path with a real (small) model: whatever it writes is parsed, or recorded as a failure.

    Sixteen new tokens cannot hold a pair, so this checks the path (prompt → template → generate →
    ask_json → cache and failure log), not the model's quality.
    """
    from amauta.data.build_qa import BuildQAConfig, run
    from amauta.documents import chunk_document, load_document

    monkeypatch.setenv("AMAUTA_HOME", str(tmp_path / "home"))
    doc = tmp_path / "ley.md"
    doc.write_text("# Ley\n\nArt. 1.- La tarifa general del IVA es del 15% desde abril de 2024.\n", encoding="utf-8")
    llm = LocalLLM(smollm2)
    out = run(BuildQAConfig(docs=[str(doc)], out=str(tmp_path / "qa.jsonl"), pairs_per_chunk=1, retries=0, min_chars=0,
                            max_tokens=16), llm=llm)
    assert llm.calls == 1 and len(chunk_document(load_document(doc))) == 1
    # Sixteen tokens cannot close a pair with an answer: the failure is recorded with the model's reply.
    assert out.read_text(encoding="utf-8") == ""
    [failure] = [json.loads(line) for line in (tmp_path / "qa.failures.jsonl").read_text(encoding="utf-8").splitlines()]
    assert failure["model"] == "smollm2-135m-instruct" and failure["article"] == "Art. 1"
    assert len(failure["raw_replies"]) == 1 and failure["raw_replies"][0].strip()
