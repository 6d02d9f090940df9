"""Library noise off the screen: what transformers, peft, accelerate, bitsandbytes, datasets and the hub
print goes to `amauta.log` in the run's output folder, unless `--verbose`.

A newcomer's first run printed "Loading weights" bars on every model load, deprecation warnings from
inside peft and notes from bitsandbytes: lines that say nothing about their run. `capture_libraries()`
routes, for as long as it is open:

- `logging` records (the libraries' loggers propagate to a handler on the root logger; transformers',
  datasets' and the hub's own stderr handlers are taken off while it is open),
- `warnings` (a `showwarning` that writes them to the log),
- the progress bars of transformers, datasets and the hub (their own switches, and the environment
  variables they read when imported later, e.g. `HF_HUB_DISABLE_PROGRESS_BARS`),

into one sink: held in memory until the log file is known, then appended to it. `amauta run` knows its
folder from the start; a single-stage command learns it when its output folder is released
(`folder_claimed` / `folder_released`, called by core/outdir.py's `claim`), because a stage may build
its folder aside and rename it into place. A command that claims no folder keeps nothing.

`everything=True` (what `amauta run` uses) sends the stages' own printing there too (stdout and stderr),
so the screen shows one line per stage (`stage_line`) and the closing summary. Everything is put back as
it was on exit. `AMAUTA_VERBOSE=1` (the `--verbose` flag) turns all of it off.
"""

from __future__ import annotations

import contextlib
import importlib.abc
import io
import logging
import os
import sys
import threading
import time
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

LOG_NAME = "amauta.log"
VERBOSE_ENV = "AMAUTA_VERBOSE"
PENDING_LIMIT = 5_000  # chunks kept in memory before the log file is known (older ones are dropped)

# Read by the hub, datasets and (through the hub) transformers when they are imported: bars off.
PROGRESS_ENV = {"HF_HUB_DISABLE_PROGRESS_BARS": "1", "HF_DATASETS_DISABLE_PROGRESS_BARS": "1"}


def verbose_requested() -> bool:
    """True when the user asked for the libraries' own output (`--verbose` or AMAUTA_VERBOSE=1)."""
    return os.environ.get(VERBOSE_ENV, "") not in ("", "0")


class LogSink(io.TextIOBase):
    """Text bound for `amauta.log`: kept in memory until `attach(path)`, then appended there.

    It remembers the last line a stage printed (`last_line`), which the on-screen stage line shows; what
    the libraries log and warn is written with `write_library`, which does not count.
    """

    def __init__(self) -> None:
        super().__init__()
        self.path: Path | None = None
        self.last_line = ""
        self._pending: list[str] = []
        self._file: Any = None
        self._lock = threading.Lock()

    def writable(self) -> bool:
        return True

    def isatty(self) -> bool:
        return False

    @property
    def encoding(self) -> str:  # rich and tqdm ask
        return "utf-8"

    def write(self, text: str) -> int:
        self.write_library(text)
        lines = [line.strip() for line in text.replace("\r", "\n").split("\n") if line.strip()]
        if lines:
            self.last_line = lines[-1]
        return len(text)

    def write_library(self, text: str) -> None:
        """Append `text` (a library's record or warning) without making it the stage's last line."""
        with self._lock:
            if self._file is not None:
                self._file.write(text)
                self._file.flush()  # a user may `tail -f` it while the run goes on
            elif not self.closed:
                self._pending.append(text)
                del self._pending[:-PENDING_LIMIT]
            else:  # a library kept a reference to this sink after the capture ended
                sys.__stderr__.write(text)

    def flush(self) -> None:
        with self._lock:
            if self._file is not None:
                self._file.flush()

    def attach(self, path: Path) -> None:
        """Append to `path` from now on, starting with what was held in memory."""
        with self._lock:
            if self._file is not None:
                return
            self._file = open(path, "a", encoding="utf-8")  # closed by close()
            self.path = path
            command = " ".join(Path(a).name if i == 0 else a for i, a in enumerate(sys.argv))
            self._file.write(f"--- {time.strftime('%Y-%m-%d %H:%M:%S')} · pid {os.getpid()} · {command}\n")
            self._file.write("".join(self._pending))
            self._file.flush()
            self._pending.clear()

    @property
    def attached(self) -> bool:
        return self._file is not None

    def close(self) -> None:
        with self._lock:
            if self._file is not None:
                self._file.close()
                self._file = None
            self._pending.clear()
        super().close()


# --------------------------------------------------------------------------- the libraries' own switches

def _quiet_transformers(module: ModuleType, undo: contextlib.ExitStack) -> None:
    """transformers' logger has its own stderr handler and no propagation; its bars have a switch."""
    module.disable_default_handler()
    undo.callback(module.enable_default_handler)
    propagated = logging.getLogger("transformers").propagate
    module.enable_propagation()
    undo.callback(setattr, logging.getLogger("transformers"), "propagate", propagated)
    if module.is_progress_bar_enabled():
        module.disable_progress_bar()
        undo.callback(module.enable_progress_bar)


def _quiet_library_logger(name: str) -> Callable[[ModuleType, contextlib.ExitStack], None]:
    """datasets and the hub give their root logger a StreamHandler to stderr when imported."""

    def quiet(module: ModuleType, undo: contextlib.ExitStack) -> None:
        logger = logging.getLogger(name)
        for handler in list(logger.handlers):
            if type(handler) is logging.StreamHandler:
                logger.removeHandler(handler)
                undo.callback(logger.addHandler, handler)
        undo.callback(setattr, logger, "propagate", logger.propagate)
        logger.propagate = True

    return quiet


def _quiet_bars(disable: str, enable: str, disabled: str) -> Callable[[ModuleType, contextlib.ExitStack], None]:
    """A library whose progress bars have module-level switches (the hub, datasets)."""

    def quiet(module: ModuleType, undo: contextlib.ExitStack) -> None:
        if not getattr(module, disabled)():
            with warnings.catch_warnings():  # the hub warns when its environment variable says otherwise
                warnings.simplefilter("ignore")
                getattr(module, disable)()
            undo.callback(getattr(module, enable))

    return quiet


# Module → what to do once it is imported (now, or later while the capture is open).
_LIBRARY_SWITCHES: dict[str, Callable[[ModuleType, contextlib.ExitStack], None]] = {
    "transformers.utils.logging": _quiet_transformers,
    "datasets.utils.logging": _quiet_library_logger("datasets"),
    "huggingface_hub.utils.logging": _quiet_library_logger("huggingface_hub"),
    "huggingface_hub.utils.tqdm": _quiet_bars("disable_progress_bars", "enable_progress_bars",
                                              "are_progress_bars_disabled"),
    "datasets.utils.tqdm": _quiet_bars("disable_progress_bars", "enable_progress_bars", "are_progress_bars_disabled"),
}


class _AfterImport(importlib.abc.MetaPathFinder):
    """Runs a callback right after one of `hooks`' modules is imported (the libraries are imported lazily,
    inside the stages, so their handlers appear after the capture opened; importing them up front would
    cost every command seconds)."""

    def __init__(self, hooks: dict[str, Callable[[ModuleType], None]]):
        self.hooks = hooks

    def find_spec(self, name: str, path: Any, target: Any = None) -> Any:
        hook = self.hooks.get(name)
        if hook is None:
            return None
        for finder in sys.meta_path:
            if finder is self or not hasattr(finder, "find_spec"):
                continue
            spec = finder.find_spec(name, path, target)
            if spec is not None and spec.loader is not None and hasattr(spec.loader, "exec_module"):
                spec.loader = _HookedLoader(spec.loader, hook)
                return spec
        return None


class _HookedLoader(importlib.abc.Loader):
    def __init__(self, loader: Any, hook: Callable[[ModuleType], None]):
        self.loader, self.hook = loader, hook

    def create_module(self, spec: Any) -> Any:
        return self.loader.create_module(spec)

    def exec_module(self, module: ModuleType) -> None:
        self.loader.exec_module(module)
        self.hook(module)

    def __getattr__(self, name: str) -> Any:  # resources, get_source...: the real loader's
        return getattr(self.loader, name)


def _switch_off_libraries(undo: contextlib.ExitStack) -> None:
    """Apply `_LIBRARY_SWITCHES` to the libraries imported already, and to the others when they are."""
    for name, value in PROGRESS_ENV.items():
        undo.callback(_restore_env, name, os.environ.get(name))
        os.environ[name] = value
    later: dict[str, Callable[[ModuleType], None]] = {}
    for name, switch in _LIBRARY_SWITCHES.items():
        if name in sys.modules:
            switch(sys.modules[name], undo)
        else:
            later[name] = lambda module, switch=switch: switch(module, undo)
    finder = _AfterImport(later)
    sys.meta_path.insert(0, finder)
    undo.callback(lambda: finder in sys.meta_path and sys.meta_path.remove(finder))


def _restore_env(name: str, value: str | None) -> None:
    if value is None:
        os.environ.pop(name, None)
    else:
        os.environ[name] = value


class _LibraryStream:
    """The sink as the log handler's stream: records are kept, but never shown as the stage's last line."""

    def __init__(self, sink: LogSink):
        self.sink = sink

    def write(self, text: str) -> None:
        self.sink.write_library(text)

    def flush(self) -> None:
        self.sink.flush()


def _route_logging_and_warnings(sink: LogSink, undo: contextlib.ExitStack) -> None:
    """Every logger that propagates to the root (the libraries') writes to `sink`; so do warnings."""
    handler = logging.StreamHandler(_LibraryStream(sink))
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s", "%H:%M:%S"))
    root = logging.getLogger()
    root.addHandler(handler)
    undo.callback(root.removeHandler, handler)

    def show(message, category, filename, lineno, file=None, line=None) -> None:
        sink.write_library(warnings.formatwarning(message, category, filename, lineno, line))

    saved = warnings.showwarning
    warnings.showwarning = show
    undo.callback(setattr, warnings, "showwarning", saved)


# --------------------------------------------------------------------------- the capture

class Capture:
    """An open capture: its sink, and how many output folders are claimed inside it right now."""

    def __init__(self, sink: LogSink):
        self.sink = sink
        self.claimed_depth = 0


_active: Capture | None = None


def active() -> Capture | None:
    """The open capture, or None (none opened, or --verbose)."""
    return _active


@contextlib.contextmanager
def capture_libraries(log_file: str | Path | None = None, *, everything: bool = False,
                      verbose: bool | None = None) -> Iterator[Capture | None]:
    """Send the libraries' logging, warnings and progress bars to `log_file` (or to the first output
    folder a stage finishes, see `folder_released`) while the block runs; yield the capture.

    everything: the stages' own stdout and stderr go there too (the pipeline's one line per stage).
    verbose: leave everything on screen (default: `verbose_requested()`); yields None then.
    Nested inside an open capture, it attaches that capture to `log_file` and adds `everything`.
    """
    global _active
    if verbose if verbose is not None else verbose_requested():
        yield None
        return
    with contextlib.ExitStack() as undo:
        if _active is None:
            capture = Capture(LogSink())
            undo.callback(capture.sink.close)
            _route_logging_and_warnings(capture.sink, undo)
            _switch_off_libraries(undo)
            _active = capture
            undo.callback(_forget, capture)
        capture = _active
        if log_file is not None:
            capture.sink.attach(Path(log_file))
        if everything:
            undo.enter_context(contextlib.redirect_stdout(capture.sink))
            undo.enter_context(contextlib.redirect_stderr(capture.sink))
        yield capture


def _forget(capture: Capture) -> None:
    global _active
    if _active is capture:
        _active = None


def folder_claimed(folder: Path) -> None:
    """A stage took an output folder (core/outdir.py's `claim`)."""
    if _active is not None:
        _active.claimed_depth += 1


def folder_released(folder: Path, ours: bool = True) -> None:
    """A stage let go of its output folder: the first one a command finishes gets the log, when the
    stage's own (`ours`: the claim accepted it, and it has a manifest); a folder claimed inside another
    one does not."""
    if _active is None:
        return
    _active.claimed_depth = max(0, _active.claimed_depth - 1)
    if (ours and _active.claimed_depth == 0 and not _active.sink.attached
            and (folder / "manifest.json").is_file()):
        _active.sink.attach(folder / LOG_NAME)


# --------------------------------------------------------------------------- one line per stage on screen

def duration(seconds: float) -> str:
    """'42 s', '3 min 05 s', '1 h 02 min'."""
    seconds = int(round(seconds))
    if seconds < 60:
        return f"{seconds} s"
    if seconds < 3600:
        return f"{seconds // 60} min {seconds % 60:02d} s"
    return f"{seconds // 3600} h {seconds % 3600 // 60:02d} min"


class StageLine:
    """What `stage_line` shows at the end: set `result` (e.g. '→ runs/x/train') before the block ends."""

    def __init__(self, title: str, capture: Capture | None):
        self.title = title
        self.capture = capture
        self.started = time.monotonic()
        self.result = ""
        if capture is not None:
            capture.sink.last_line = ""  # the previous stage's last words are not this one's

    def __rich__(self) -> Any:
        """The running line: title, time so far, and the last line the stage wrote to the log."""
        from rich.text import Text

        last = self.capture.sink.last_line if self.capture else ""
        return Text.assemble(self.title, (f" · {duration(time.monotonic() - self.started)}", "dim"),
                             (f" · {last}" if last else "", "dim"), no_wrap=True, overflow="ellipsis")


@contextlib.contextmanager
def stage_line(console: Any, title: str, capture: Capture | None) -> Iterator[StageLine]:
    """One line on `console` for a stage: on a terminal a spinner with its latest message that collapses
    to `✓ title · time result` when done; piped, `title … time result` written as the stage starts and
    ends, so each stage stays one plain line. A failing stage ends its line with where its log is."""
    from rich.live import Live
    from rich.markup import escape
    from rich.spinner import Spinner

    line = StageLine(title, capture)
    if console.is_terminal:  # not rich's Status: that one would put the stage's own printing back on screen
        status = Live(Spinner("dots", text=line, style="green"), console=console, transient=True,
                      refresh_per_second=8, redirect_stdout=False, redirect_stderr=False)
    else:
        console.print(f"{escape(title)} …", end=" ", highlight=False, soft_wrap=True)
        console.file.flush()
        status = contextlib.nullcontext()
    try:
        with status:
            yield line
    except BaseException:
        where = f"; see {capture.sink.path}" if capture and capture.sink.path else ""
        _finish(console, f"[red]✗[/] {escape(title)}" if console.is_terminal else "",
                f"failed after {duration(time.monotonic() - line.started)}{where}")
        raise
    _finish(console, f"[green]✓[/] {escape(title)}" if console.is_terminal else "",
            f"{duration(time.monotonic() - line.started)} {line.result}".rstrip())


def _finish(console: Any, head: str, tail: str) -> None:
    from rich.markup import escape

    text = f"{head} · {escape(tail)}" if head else escape(tail)
    console.print(text, highlight=False, soft_wrap=True)
