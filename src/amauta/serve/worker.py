"""One worker thread per model: generations wait in a queue and run one at a time.

A model on a CPU cannot run two generations at once safely (they would share the tokenizer, the peft
adapter switch and the cores), so each model gets one thread that takes jobs in arrival order. The
asyncio side submits a job and awaits events on an asyncio queue that the thread feeds through
`loop.call_soon_threadsafe`: ("start", run), ("delta", text)..., then ("end", result) or ("error", exc).
A job whose client went away (its stop_event set) is skipped if still queued and stopped after the
current token if running.
"""

from __future__ import annotations

import asyncio
import queue
import threading
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any


class QueueFull(Exception):
    """The worker already holds `max_queue` jobs."""


@dataclass
class _Job:
    make_run: Callable[[], Any]
    stop_event: threading.Event
    emit: Callable[[tuple[str, Any]], None]


class ModelWorker:
    """A thread that runs one model's generations in order.

    name: shown in the thread name and errors.
    max_queue: most jobs waiting or running; more are refused (the API answers 503).
    """

    def __init__(self, name: str, max_queue: int = 64):
        self.name, self.max_queue = name, max_queue
        self._jobs: queue.Queue[_Job | None] = queue.Queue()
        self._pending = 0
        self._lock = threading.Lock()
        self.busy = False
        self._thread = threading.Thread(target=self._loop, name=f"amauta-worker-{name}", daemon=True)
        self._thread.start()

    @property
    def pending(self) -> int:
        """Jobs waiting or running."""
        return self._pending

    def close(self) -> None:
        self._jobs.put(None)

    def _loop(self) -> None:
        while (job := self._jobs.get()) is not None:
            self.busy = True
            try:
                self._run(job)
            finally:
                self.busy = False
                with self._lock:
                    self._pending -= 1

    @staticmethod
    def _run(job: _Job) -> None:
        if job.stop_event.is_set():  # the client left while the job waited
            job.emit(("cancelled", None))
            return
        try:
            run = job.make_run()
            job.emit(("start", run))
            for delta in run:
                job.emit(("delta", delta))
            job.emit(("end", getattr(run, "result", None)))
        except Exception as exc:  # reported to the client as an error event; the worker lives on
            job.emit(("error", exc))

    async def events(self, make_run: Callable[[], Any], stop_event: threading.Event) -> AsyncIterator[tuple[str, Any]]:
        """Queue `make_run` (called on the worker thread) and yield its events as they come."""
        with self._lock:
            if self._pending >= self.max_queue:
                raise QueueFull(f"model '{self.name}' already has {self._pending} requests queued")
            self._pending += 1
        loop = asyncio.get_running_loop()
        inbox: asyncio.Queue[tuple[str, Any]] = asyncio.Queue()

        def emit(event: tuple[str, Any]) -> None:
            try:
                loop.call_soon_threadsafe(inbox.put_nowait, event)
            except RuntimeError:  # the event loop closed (server shutting down): nobody is listening
                stop_event.set()

        self._jobs.put(_Job(make_run, stop_event, emit))
        try:
            while True:
                event = await inbox.get()
                yield event
                if event[0] in ("end", "error", "cancelled"):
                    return
        finally:
            stop_event.set()  # the consumer stopped early (client disconnected): end the generation
