"""The terminal chat behind `amauta chat`: streaming answers, slash commands, Ctrl-C that only stops the answer.

`run_chat` reads lines from `read_line` (the keyboard by default; a test passes a script) and writes to a
rich `Console` (a test passes one over a StringIO). While an answer streams, Ctrl-C sets the generation's
stop event instead of ending the program, so the chat goes on with the next question.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager

from rich.console import Console
from rich.markup import escape

from amauta.chat.decoding import STRATEGIES
from amauta.chat.session import ChatSession
from amauta.core.errors import AmautaError, did_you_mean

COMMANDS = {
    "/help": "show this help",
    "/reset": "forget the conversation (system prompt and strategy stay)",
    "/strategy NAME": f"decode with {', '.join(STRATEGIES)}",
    "/system TEXT": "set the system prompt (/system alone removes it)",
    "/save FILE.json": "save the conversation as JSON",
    "/exit": "leave (Ctrl-D too)",
}
PROMPT = "[bold cyan]tú>[/] "


def script_reader(lines: Iterable[str]) -> Callable[[str], str]:
    """A `read_line` that returns `lines` one by one, then raises EOFError (for tests and piped input)."""
    iterator = iter(lines)

    def read(_prompt: str) -> str:
        try:
            return next(iterator)
        except StopIteration:
            raise EOFError from None

    return read


@contextmanager
def ctrl_c_sets(event: threading.Event) -> Iterator[None]:
    """Inside the block, Ctrl-C (SIGINT) sets `event` instead of raising KeyboardInterrupt."""
    if threading.current_thread() is not threading.main_thread():
        yield  # signal handlers live in the main thread only
        return
    previous = signal.signal(signal.SIGINT, lambda *_: event.set())
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


def describe_hit(number: int, hit) -> str:
    """One line naming a retrieved passage: [n] document, page, article."""
    where = [getattr(hit, "title", "") or str(getattr(hit, "source", ""))]
    if getattr(hit, "page", None):
        where.append(f"p. {hit.page}")
    if getattr(hit, "article", None):
        where.append(str(hit.article))
    return f"[{number}] " + ", ".join(w for w in where if w)


def _answer(session: ChatSession, question: str, console: Console) -> None:
    """Stream one answer, then its statistics and (with RAG) its sources."""
    stop = threading.Event()
    console.print("[bold green]amauta>[/] ", end="")
    noticed = False
    with ctrl_c_sets(stop):
        for delta in session.send(question, stop_event=stop):
            if not noticed and session.dropped_turns:
                console.print(f"\n[yellow](context window full: dropped the {session.dropped_turns} oldest "
                              f"exchange(s))[/]")
                noticed = True
            console.print(delta, end="", markup=False, highlight=False, soft_wrap=True)
    console.print()
    if session.dropped_turns and not noticed:
        console.print(f"[yellow](context window full: dropped the {session.dropped_turns} oldest exchange(s))[/]")
    result = session.last_result
    if result is not None:
        note = " · stopped" if result.finish_reason == "cancelled" else (
            " · token limit" if result.finish_reason == "length" else "")
        console.print(f"[dim]{result.new_tokens} tokens · {result.tokens_per_second:.1f} tok/s · "
                      f"{session.settings.strategy}{note}[/]")
    if session.rag is not None:
        if session.last_hits:
            console.print("[dim]sources:[/]")
            for number, hit in enumerate(session.last_hits, start=1):
                console.print(f"[dim]  {escape(describe_hit(number, hit))}[/]")
        else:
            console.print("[dim](no relevant passage in the index)[/]")


def _command(session: ChatSession, line: str, console: Console) -> bool:
    """Run a slash command; False means leave the chat."""
    name, _, arg = line.partition(" ")
    arg = arg.strip()
    if name in ("/exit", "/quit"):
        return False
    if name == "/help":
        for usage, what in COMMANDS.items():
            console.print(f"  [bold]{escape(usage)}[/]  {what}")
        console.print("  Ctrl-C stops an answer; the chat goes on.")
    elif name == "/reset":
        session.reset()
        console.print("[dim](conversation cleared)[/]")
    elif name == "/strategy":
        if not arg:
            console.print(f"[dim]strategy: {session.settings.strategy} (choose {', '.join(STRATEGIES)})[/]")
        elif arg not in STRATEGIES:
            console.print(f"[red]unknown strategy '{escape(arg)}'{did_you_mean(arg, STRATEGIES)}; "
                          f"choose {', '.join(STRATEGIES)}[/]")
        else:
            session.set_strategy(arg)
            console.print(f"[dim](strategy: {arg})[/]")
    elif name == "/system":
        session.set_system(arg)
        console.print(f"[dim](system prompt {'set' if session.system else 'removed'})[/]")
    elif name == "/save":
        if not arg:
            console.print("[red]usage: /save FILE.json[/]")
        else:
            try:
                path = session.save(arg)
                console.print(f"[dim](saved {escape(str(path))})[/]")
            except (AmautaError, OSError) as exc:
                console.print(f"[red]{escape(str(exc))}[/]")
    else:
        choices = [c.split()[0] for c in COMMANDS]
        console.print(f"[red]unknown command {escape(name)}{did_you_mean(name, choices)}; /help lists them[/]")
    return True


def run_chat(session: ChatSession, *, read_line: Callable[[str], str] | None = None,
             console: Console | None = None) -> None:
    """The chat loop: read a line, run a command or stream an answer, until /exit or end of input."""
    console = console or Console()
    read_line = read_line or (lambda prompt: console.input(prompt))
    profile = session.loaded.profile
    adapter = session.loaded.extra.get("adapter")
    console.print(f"[bold]Amauta chat[/] · {profile.name}{' + ' + escape(str(adapter)) if adapter else ''} · "
                  f"{session.settings.strategy} · /help for commands, /exit to leave")
    while True:
        try:
            line = read_line(PROMPT).strip()
        except EOFError:
            console.print()
            break
        except KeyboardInterrupt:  # Ctrl-C at the prompt clears the line
            console.print("\n[dim](Ctrl-C: type /exit to leave)[/]")
            continue
        if not line:
            continue
        if line.startswith("/"):
            if not _command(session, line, console):
                break
            continue
        try:
            _answer(session, line, console)
        except AmautaError as exc:  # e.g. a question longer than the context: say so and go on
            console.print(f"\n[red]error:[/] {escape(str(exc))}")
