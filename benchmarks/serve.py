"""Serving speed: tokens/s and time to first token per backend, at 1 and 8 concurrent streaming clients.

    .venv/bin/python benchmarks/serve.py [--model smollm2-135m-instruct] [--max-tokens 64] [--threads N]
                                         [--backends raw,llamacpp,transformers] [--repeats 3]

Rows, on the same embedded GGUF and the same greedy prompt (so every row generates the same tokens):

- `raw`: llama.cpp itself (`llama_cpp.Llama.create_completion(stream=True)` in this process): the baseline.
  At 8 clients, 8 threads share the one `Llama` behind a lock (what a script without a server does).
- `llamacpp`: `amauta serve --backend llamacpp` over HTTP (uvicorn on a local port, OpenAI streaming).
- `transformers`: `amauta serve` (default backend, Amauta's decoding) over HTTP on the converted model.

One client repeats its request `--repeats` times (the table shows medians); 8 clients send one request each
at once, so their time to first token includes waiting in the model's queue. Aggregate tok/s = all tokens
/ wall time. Target: llamacpp ≥ 0.8× raw tok/s at 1 client. Prints a table and one JSON line. On a shared
CPU the numbers are noisy; raw and llamacpp run back to back.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

QUESTION = "Explica en pocas frases qué es el impuesto al valor agregado y quién lo paga."


def raw_llama(llama, prompt_ids: list[int], max_tokens: int, stops: list[str], lock: threading.Lock) -> dict:
    """One streamed greedy completion straight through llama.cpp."""
    started, first, parts = time.perf_counter(), None, []
    with lock:
        for chunk in llama.create_completion(prompt_ids, max_tokens=max_tokens, stream=True, temperature=0.0,
                                             top_k=1, min_p=0.0, stop=stops):
            text = chunk["choices"][0]["text"]
            if first is None and text:
                first = time.perf_counter()
            parts.append(text)
    end = time.perf_counter()
    # Counted as the backend counts (re-tokenizing the answer), so both rows divide the same number.
    tokens = len(llama.tokenize("".join(parts).encode(), add_bos=False, special=False))
    return {"ttft": (first or end) - started, "seconds": end - started, "tokens": tokens}


def http_stream(url: str, model: str, max_tokens: int) -> dict:
    """One streamed greedy chat completion through the OpenAI client."""
    from openai import OpenAI

    client = OpenAI(base_url=url + "/v1", api_key="-", max_retries=0, timeout=600)
    started, first, usage = time.perf_counter(), None, None
    for chunk in client.chat.completions.create(model=model, max_tokens=max_tokens, temperature=0, stream=True,
                                                stream_options={"include_usage": True},
                                                messages=[{"role": "user", "content": QUESTION}]):
        if first is None and chunk.choices and chunk.choices[0].delta.content:
            first = time.perf_counter()
        if chunk.usage is not None:
            usage = chunk.usage
    end = time.perf_counter()
    return {"ttft": (first or end) - started, "seconds": end - started, "tokens": usage.completion_tokens}


def measure(call, clients: int, repeats: int) -> dict:
    """Median per-request numbers at 1 client; at N clients one request each, all at once."""
    if clients == 1:
        runs = [call() for _ in range(repeats)]
        wall = statistics.median(r["seconds"] for r in runs)
        tokens = statistics.median(r["tokens"] for r in runs)
        return {"ttft_s": statistics.median(r["ttft"] for r in runs), "tokens": tokens,
                "client_tok_s": tokens / wall, "aggregate_tok_s": tokens / wall}
    started = time.perf_counter()
    with ThreadPoolExecutor(clients) as pool:
        runs = list(pool.map(lambda _: call(), range(clients)))
    wall = time.perf_counter() - started
    total = sum(r["tokens"] for r in runs)
    return {"ttft_s": statistics.mean(r["ttft"] for r in runs), "tokens": total,
            "client_tok_s": statistics.mean(r["tokens"] / r["seconds"] for r in runs), "aggregate_tok_s": total / wall}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="smollm2-135m-instruct", help="A registry model with a GGUF source.")
    parser.add_argument("--max-tokens", type=int, default=64)
    parser.add_argument("--threads", type=int, default=None, help="llama.cpp threads (default: half the cores).")
    parser.add_argument("--backends", default="raw,llamacpp,transformers")
    parser.add_argument("--clients", default="1,8")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    backends = args.backends.split(",")
    client_counts = [int(c) for c in args.clients.split(",")]

    import torch

    from amauta.serve.app import ServeConfig, create_app
    from amauta.serve.backends import LlamaCppBackend, TransformersBackend, default_threads
    from amauta.serve.server import BackgroundServer

    threads = args.threads or default_threads()
    config = ServeConfig(max_tokens_limit=max(args.max_tokens, 64))
    rows: list[dict] = []
    gguf = LlamaCppBackend([args.model], threads=threads)  # raw and llamacpp share the weights and the warm-up
    entry = gguf.entries[args.model]
    prompt_ids = entry.llama.tokenize(entry.render([{"role": "user", "content": QUESTION}]).encode(), add_bos=True,
                                      special=True)
    lock = threading.Lock()
    with BackgroundServer(create_app(gguf, config)) as url:
        for clients in client_counts:
            # Raw and served rounds back to back, so both see about the same machine load.
            if "raw" in backends:
                rows.append({"backend": "raw", "clients": clients, **measure(
                    lambda: raw_llama(entry.llama, prompt_ids, args.max_tokens, entry.stops, lock), clients, args.repeats)})
            if "llamacpp" in backends:
                rows.append({"backend": "llamacpp", "clients": clients, **measure(
                    lambda: http_stream(url, args.model, args.max_tokens), clients, args.repeats)})
    if "transformers" in backends:
        from amauta.models.load import load_model

        transformers_backend = TransformersBackend({args.model: load_model(args.model)})
        with BackgroundServer(create_app(transformers_backend, config)) as url:
            http_stream(url, args.model, 4)  # warm-up
            for clients in client_counts:
                rows.append({"backend": "transformers", "clients": clients,
                             **measure(lambda: http_stream(url, args.model, args.max_tokens), clients, args.repeats)})

    print(f"\nServing {args.model}, greedy, {args.max_tokens} new tokens, llama.cpp threads={threads}, "
          f"torch threads={torch.get_num_threads()} (shared CPU: noisy)")
    print(f"{'backend':<13}{'clients':>8}{'TTFT s':>9}{'tok/s/client':>14}{'aggregate tok/s':>17}{'tokens':>8}")
    for row in rows:
        print(f"{row['backend']:<13}{row['clients']:>8}{row['ttft_s']:>9.3f}{row['client_tok_s']:>14.1f}"
              f"{row['aggregate_tok_s']:>17.1f}{row['tokens']:>8}")
    by = {(r["backend"], r["clients"]): r for r in rows}
    ratio = None
    if ("raw", 1) in by and ("llamacpp", 1) in by:
        ratio = by[("llamacpp", 1)]["client_tok_s"] / by[("raw", 1)]["client_tok_s"]
        print(f"\nllamacpp backend / raw llama.cpp at 1 client: {ratio:.2f}x tok/s (target >= 0.80x: "
              f"{'met' if ratio >= 0.8 else 'NOT met'})")
    print(json.dumps({"benchmark": "serve", "model": args.model, "max_tokens": args.max_tokens, "threads": threads,
                      "rows": [{k: (round(v, 4) if isinstance(v, float) else v) for k, v in r.items()} for r in rows],
                      "llamacpp_vs_raw": round(ratio, 3) if ratio else None, "target": 0.8,
                      "met": bool(ratio and ratio >= 0.8)}))


if __name__ == "__main__":
    main()
