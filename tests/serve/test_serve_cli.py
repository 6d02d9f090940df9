"""`amauta serve` as a user runs it: a real process on a local port, the key from the environment."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import httpx
from openai import OpenAI

from amauta.serve.server import free_port


def test_amauta_serve_process_answers_and_stops_cleanly():
    port = free_port()
    env = {**os.environ, "AMAUTA_API_KEY": "clave-de-prueba", "OMP_NUM_THREADS": "1"}
    process = subprocess.Popen([sys.executable, "-m", "amauta.cli", "serve", "--model", "tiny-llama", "--port",
                                str(port), "--max-tokens-limit", "64"], env=env, stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, text=True)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            assert process.poll() is None, process.stdout.read()
            try:
                if httpx.get(url + "/health", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.2)
        assert httpx.get(url + "/health").json() == {"status": "ok"}  # without the key: nothing about the models
        health = httpx.get(url + "/health", headers={"Authorization": "Bearer clave-de-prueba"}).json()
        assert health["auth"] and health["max_tokens_limit"] == 64 and health["models"] == ["tiny-llama"]
        assert httpx.get(url + "/v1/models").status_code == 401
        client = OpenAI(base_url=url + "/v1", api_key="clave-de-prueba", max_retries=0)
        reply = client.chat.completions.create(model="tiny-llama", max_tokens=4,
                                               messages=[{"role": "user", "content": "Hola"}])
        assert reply.usage.completion_tokens >= 1
        assert "text/html" in httpx.get(url + "/").headers["content-type"]
        assert "serverEvents" in httpx.get(url + "/static/app.js").text
    finally:
        process.send_signal(signal.SIGINT)
        output, _ = process.communicate(timeout=30)
    assert process.returncode in (0, 130), output
    assert f"serving tiny-llama on http://127.0.0.1:{port}" in output and "API key required" in output
