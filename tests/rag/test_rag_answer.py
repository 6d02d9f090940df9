"""Answering with citations over the example law documents, through a fake endpoint and a tiny local model."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from amauta.core.errors import AmautaError
from amauta.llm import OpenAICompatibleLLM
from amauta.llm.fake_server import FakeOpenAIServer
from amauta.rag.answer import NOT_FOUND, SYSTEM_PROMPT, RagAnswerer


def test_answer_cites_the_article_the_model_used(law_index):
    seen = {}

    def reply(messages):
        seen["messages"] = messages
        user = messages[-1]["content"]
        # Answer from the passage that holds the general rate, citing its number as instructed.
        number = next(line.split("]")[0].strip("[") for line in user.splitlines()
                      if line.startswith("[") and "Art. 2" in line and "iva.md" in line)
        return f"La tarifa general del IVA es del 15% [{number}]."

    answerer = RagAnswerer(law_index, top_k=3)
    with FakeOpenAIServer(reply) as url:
        result = answerer.answer("¿Cuál es la tarifa general del IVA en Ecuador?", OpenAICompatibleLLM(url, "fake-model"))
    assert result.found and "15%" in result.text
    assert len(result.sources) == 1
    source = result.sources[0]
    assert source.article == "Art. 2" and Path(source.source).is_file() and source.source.endswith("iva.md")
    assert "Fuentes:" in result.format() and f"{source.source}, Art. 2" in result.format()
    messages = seen["messages"]
    assert messages[0] == {"role": "system", "content": SYSTEM_PROMPT}
    assert "Pregunta: ¿Cuál es la tarifa general del IVA en Ecuador?" in messages[-1]["content"]
    as_dict = result.to_dict()
    assert as_dict["sources"][0]["article"] == "Art. 2" and json.dumps(as_dict, ensure_ascii=False)


def test_nothing_relevant_means_no_model_call_and_no_invention(law_index):
    answerer = RagAnswerer(law_index)
    with FakeOpenAIServer("inventado") as url:
        server_llm = OpenAICompatibleLLM(url, "fake-model")
        result = answerer.answer("¿Cuántos minutos se hierve un huevo para que quede tibio?", server_llm)
    assert not result.found and result.text == NOT_FOUND and result.sources == []
    messages, hits = answerer.build_messages("¿Cuál es la receta del encebollado?")
    assert hits == [] and "No se encontró ningún fragmento relevante" in messages[-1]["content"]


def test_build_messages_keeps_history_and_custom_system(law_index):
    answerer = RagAnswerer(law_index, top_k=2)
    history = [{"role": "system", "content": "viejo"}, {"role": "user", "content": "Hola"},
               {"role": "assistant", "content": "¡Hola! ¿En qué te ayudo?"}]
    messages, hits = answerer.build_messages("¿Quiénes deben sacar el RUC?", history=history, system="Sé breve.")
    assert [m["role"] for m in messages] == ["system", "user", "assistant", "user"]
    assert messages[0]["content"] == "Sé breve."
    assert 1 <= len(hits) <= 2 and hits[0].source.endswith("ruc.html")
    assert "[1] (ruc.html" in messages[-1]["content"]
    with pytest.raises(AmautaError, match="empty"):
        answerer.answer("  ", llm=None)
    with pytest.raises(AmautaError, match="top_k"):
        RagAnswerer(law_index, top_k=0)


def test_answer_with_a_local_model(law_index, tiny):
    from amauta.chat.decoding import GenerationSettings
    from amauta.chat.generate import generate
    from amauta.llm import LocalLLM
    from amauta.rag.answer import _count_tokens, cited_numbers

    loaded = tiny("llama")  # a 512-token context: the passages must be shortened to fit
    answerer = RagAnswerer(law_index, top_k=3)
    messages, hits = answerer.build_messages("¿Qué es el RIMPE?", loaded=loaded, max_new_tokens=8)
    assert hits and _count_tokens(loaded, messages) <= 512 - 8
    result = answerer.answer("¿Qué es el RIMPE?", LocalLLM(loaded), max_tokens=8)
    assert result.found and result.sources and all(s in result.hits for s in result.sources)
    assert result.hits == hits  # the passages the prompt above was built from
    # The text is the model's own greedy reply (temperature 0) to those messages, at most 8 tokens.
    reply = generate(loaded, messages, GenerationSettings.from_profile(loaded.profile, strategy="greedy",
                                                                        max_new_tokens=8))
    assert result.text == reply.text.strip() and reply.new_tokens <= 8
    # The citation contract: the passages it cites by number, or every retrieved one when it cites none.
    cited = cited_numbers(result.text, len(hits))
    assert result.sources == ([hits[n - 1] for n in cited] if cited else hits)


def run_cli(*args: str, env: dict) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "amauta.cli", *args], capture_output=True, text=True, env=env,
                          timeout=300)


def test_cli_ask_json_and_errors(law_index, home):
    from amauta.rag.index import close_index, open_index

    env = {**os.environ, "AMAUTA_HOME": str(home), "OMP_NUM_THREADS": "1"}
    open_index(str(law_index))  # this process holds the embedded store, as `amauta serve --rag` would
    busy = run_cli("rag", "ask", "¿Qué es el RUC?", "--index", str(law_index), "--retrieve-only", env=env)
    assert busy.returncode == 2 and "open in another process" in busy.stderr and "Traceback" not in busy.stderr
    close_index(law_index)  # embedded Qdrant allows one process at a time
    with FakeOpenAIServer("Se inscriben en el RUC quienes tienen una actividad económica [1].") as url:
        done = run_cli("rag", "ask", "¿Quién debe inscribirse en el RUC?", "--index", str(law_index),
                       "--base-url", url, "--json", "-k", "2", env=env)
    assert done.returncode == 0, done.stderr
    reply = json.loads(done.stdout)
    assert reply["found"] and reply["sources"][0]["number"] == 1 and reply["sources"][0]["source"].endswith("ruc.html")

    missing = run_cli("rag", "ask", "¿Hola?", "--index", "no-existe", env=env)
    assert missing.returncode == 2
    assert "index 'no-existe' not found" in missing.stderr and "Traceback" not in missing.stderr
    assert len(missing.stderr.strip().splitlines()) == 1
    empty = run_cli("rag", "ask", "  ", "--index", str(law_index), env=env)
    assert empty.returncode == 2 and "question is empty" in empty.stderr


@pytest.mark.integration
def test_smollm2_answers_a_law_question_from_the_index(law_index, smollm2):
    from amauta.llm import LocalLLM

    answerer = RagAnswerer(law_index, top_k=2)
    messages, hits = answerer.build_messages("¿Cuál es la tarifa general del IVA?", loaded=smollm2, max_new_tokens=48)
    assert hits and any(h.article == "Art. 2" and h.source.endswith("iva.md") for h in hits)
    result = answerer.answer("¿Cuál es la tarifa general del IVA?", LocalLLM(smollm2), max_tokens=48)
    assert result.found and result.text.strip() and result.sources
    assert "Fuentes:" in result.format()
