"""`amauta chat --rag INDEX`: the answer is grounded in retrieved passages and the sources follow it."""

from __future__ import annotations

import dataclasses
import io

from rich.console import Console

from amauta.chat import terminal
from amauta.chat.decoding import GenerationSettings
from amauta.chat.session import ChatSession


def test_chat_with_rag_shows_sources_and_keeps_plain_questions(tiny, law_index):
    from amauta.rag.answer import RagAnswerer

    loaded = tiny("llama")
    loaded = dataclasses.replace(loaded, profile=loaded.profile.model_copy(update={"eos_tokens": [], "stop_strings": []}))
    session = ChatSession(loaded, GenerationSettings(strategy="greedy", max_new_tokens=6),
                          rag=RagAnswerer(law_index, top_k=2))
    out = io.StringIO()
    terminal.run_chat(session, console=Console(file=out, width=200), read_line=terminal.script_reader(
        ["¿Quiénes deben sacar el RUC?", "¿Cuántos minutos se hierve un huevo para que quede tibio?"]))
    text = out.getvalue()
    assert "sources:" in text and "[1] " in text
    assert "(no relevant passage in the index)" in text
    # The history keeps what the user typed, not the passages sent with it.
    assert [m["content"] for m in session.history if m["role"] == "user"] == [
        "¿Quiénes deben sacar el RUC?", "¿Cuántos minutos se hierve un huevo para que quede tibio?"]
    messages = session.build_messages("¿Qué es el RIMPE?")
    assert "Fragmentos de los documentos" in messages[-1]["content"] and messages[0]["role"] == "system"
