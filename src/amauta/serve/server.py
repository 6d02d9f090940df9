"""Run the app with uvicorn on a background thread (tests, benchmarks, notebooks).

    with BackgroundServer(create_app(backend)) as url:   # http://127.0.0.1:<free port>
        OpenAI(base_url=url + "/v1", api_key="-").models.list()
"""

from __future__ import annotations

import socket
import threading
import time

from amauta.core.errors import AmautaError


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port nobody listens on right now."""
    with socket.socket() as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


class BackgroundServer:
    """uvicorn serving `app` on `host:port` (a free port by default) until `stop()` or the `with` ends."""

    def __init__(self, app, host: str = "127.0.0.1", port: int | None = None, timeout: float = 30.0):
        import uvicorn

        self.host, self.port = host, port or free_port(host)
        self.server = uvicorn.Server(uvicorn.Config(app, host=self.host, port=self.port, log_level="warning",
                                                    timeout_graceful_shutdown=2))
        self.thread = threading.Thread(target=self.server.run, name="amauta-uvicorn", daemon=True)
        self.timeout = timeout

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def start(self) -> str:
        self.thread.start()
        deadline = time.monotonic() + self.timeout
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() > deadline:
                raise AmautaError(f"the server did not start on {self.url}")
            time.sleep(0.02)
        return self.url

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)

    def __enter__(self) -> str:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
