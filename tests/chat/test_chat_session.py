"""ChatSession (history within the window, save) and the terminal loop driven by a script of commands."""

from __future__ import annotations

import dataclasses
import io
import json
import signal
import threading

from rich.console import Console

from amauta.chat import terminal
from amauta.chat.decoding import GenerationSettings
from amauta.chat.session import ChatSession


def tiny_chat(tiny, arch="llama", **kw):
    loaded = tiny(arch)
    loaded = dataclasses.replace(loaded, profile=loaded.profile.model_copy(update={"eos_tokens": [], "stop_strings": []}))
    return ChatSession(loaded, GenerationSettings(strategy="greedy", max_new_tokens=kw.pop("max_new_tokens", 6)), **kw)


def run_script(session, lines):
    out = io.StringIO()
    terminal.run_chat(session, read_line=terminal.script_reader(lines), console=Console(file=out, width=200))
    return out.getvalue()


def test_history_and_system_prompt(tiny):
    session = tiny_chat(tiny, system="Eres un asistente.")
    first = session.ask("Hola")
    session.ask("¿Y el IVA?")
    assert [m["role"] for m in session.history] == ["user", "assistant", "user", "assistant"]
    assert session.history[1]["content"] == first
    messages = session.build_messages("otra")
    assert messages[0] == {"role": "system", "content": "Eres un asistente."} and messages[-1]["content"] == "otra"
    session.reset()
    assert session.history == [] and session.system == "Eres un asistente."


def test_oldest_turns_are_dropped_to_fit_the_window(tiny):
    session = tiny_chat(tiny, context_length=120, max_new_tokens=8)
    for i in range(8):
        session.ask(f"Pregunta número {i} sobre la declaración del impuesto a la renta")
    assert session.dropped_total >= 1
    assert session.history[0]["role"] == "user" and "número 0" not in session.history[0]["content"]
    assert "número 7" in session.history[-2]["content"]
    prompt = session._prompt_tokens(session.build_messages("¿algo más?"))
    assert prompt + 8 <= 120


def test_save_writes_json(tiny, tmp_path):
    session = tiny_chat(tiny, system="Sé breve.")
    session.ask("Hola")
    saved = json.loads(session.save(tmp_path / "c.json").read_text(encoding="utf-8"))
    assert saved["model"] == "tiny-llama" and saved["settings"]["strategy"] == "greedy"
    assert [m["role"] for m in saved["messages"]] == ["system", "user", "assistant"]


def test_terminal_script_of_commands(tiny, tmp_path):
    session = tiny_chat(tiny)
    out = run_script(session, [
        "/help", "Hola, ¿cómo estás?", "/strategy contrastive", "Cuéntame del IVA", "/strategy gredy",
        "/system Responde en español.", f"/save {tmp_path / 'chat.json'}", "/save", "/nada", "/reset",
        "¿Sigues ahí?", "/exit", "never read"])
    assert "/strategy NAME" in out and "Ctrl-C stops an answer" in out
    assert "strategy: contrastive" in out and "· contrastive" in out
    assert "unknown strategy 'gredy' (did you mean: greedy" in out
    assert "system prompt set" in out and "usage: /save FILE.json" in out and "unknown command /nada" in out
    assert "conversation cleared" in out
    saved = json.loads((tmp_path / "chat.json").read_text(encoding="utf-8"))
    assert [m["content"] for m in saved["messages"] if m["role"] == "user"] == ["Hola, ¿cómo estás?", "Cuéntame del IVA"]
    assert saved["messages"][0] == {"role": "system", "content": "Responde en español."}
    assert [m["content"] for m in session.history if m["role"] == "user"] == ["¿Sigues ahí?"]
    assert session.system == "Responde en español." and session.settings.strategy == "contrastive"


def test_ctrl_c_stops_the_answer_not_the_chat(tiny):
    session = tiny_chat(tiny, "gemma3", max_new_tokens=40)
    # Whatever handled SIGINT before the chat (default_int_handler in a terminal, SIG_IGN under nohup or a
    # background CI job) must handle it again afterwards.
    before = signal.getsignal(signal.SIGINT)

    class InterruptingFile(io.StringIO):
        """Presses Ctrl-C (a real SIGINT) while the first answer is being printed."""
        pressed = False

        def write(self, text):
            if "amauta>" in self.getvalue() and not self.pressed and text.strip():
                self.pressed = True
                signal.raise_signal(signal.SIGINT)
            return super().write(text)

    out = InterruptingFile()
    terminal.run_chat(session, read_line=terminal.script_reader(["Hola", "¿Y ahora?"]),
                      console=Console(file=out, width=200))
    text = out.getvalue()
    assert "stopped" in text
    assert [m["content"] for m in session.history if m["role"] == "user"] == ["Hola", "¿Y ahora?"]
    assert session.last_result.finish_reason == "length"  # the second answer ran to its end
    assert signal.getsignal(signal.SIGINT) is before


def test_ctrl_c_sets_restores_the_handler_it_found():
    def custom(*_):
        pass

    saved = signal.signal(signal.SIGINT, custom)
    try:
        event = threading.Event()
        with terminal.ctrl_c_sets(event):
            signal.raise_signal(signal.SIGINT)
        assert event.is_set() and signal.getsignal(signal.SIGINT) is custom
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # as under nohup
        with terminal.ctrl_c_sets(threading.Event()):
            assert signal.getsignal(signal.SIGINT) is not signal.SIG_IGN
        assert signal.getsignal(signal.SIGINT) is signal.SIG_IGN
    finally:
        signal.signal(signal.SIGINT, saved)


def test_too_long_question_is_one_line_and_the_chat_goes_on(tiny):
    session = tiny_chat(tiny, context_length=60)
    out = run_script(session, ["palabra " * 80, "Hola"])
    assert "error:" in out and "context holds 60" in out
    assert [m["content"] for m in session.history if m["role"] == "user"] == ["Hola"]
    before = list(session.history)
    run_script(session, ["palabra " * 80])
    assert session.history == before  # a refused message loses nothing
