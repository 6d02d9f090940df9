"""Tokens per second of each decoding strategy on the embedded SmolLM2: fp32 vs bf16, batch 1 vs batch 8.

    .venv/bin/python benchmarks/generate.py                 # both dtypes, ~3-6 minutes on 2 cores
    .venv/bin/python benchmarks/generate.py --dtypes float32 --max-new-tokens 16 --prompts 2

Every row answers the same Spanish prompts with eos and stop strings switched off, so each answer has
exactly --max-new-tokens tokens and rows compare like with like. The baseline in the same run is
transformers' own `generate` (greedy, batch 1); the headline is contrastive search's time per token
relative to our greedy loop's (issue target: at most 1.5×). Batch 8 runs greedy, sampling and beam
through `generate_batch` (left-padded); contrastive search is batch 1 by design, so its batch-8 row is the
same prompts one after another. Prints a table, then one JSON line.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import time

import torch

PROMPTS = [
    "¿Qué es el Servicio de Rentas Internas del Ecuador?",
    "Escribe un poema corto sobre la montaña y el mar.",
    "Explica en dos oraciones qué es el impuesto al valor agregado.",
    "Dame tres consejos para aprender un idioma nuevo.",
    "¿Por qué el cielo es azul?",
    "Resume en una oración la historia de Quito.",
    "¿Cómo se prepara un ceviche ecuatoriano?",
    "Describe un día de mercado en Otavalo.",
]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="smollm2-135m-instruct")
    parser.add_argument("--dtypes", nargs="+", default=["float32", "bfloat16"])
    parser.add_argument("--max-new-tokens", type=int, default=32)
    parser.add_argument("--prompts", type=int, default=4, help="prompts for the batch-1 rows (batch 8 uses 8)")
    parser.add_argument("--threads", type=int, default=int(os.environ.get("OMP_NUM_THREADS", "2")))
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    from rich.console import Console
    from rich.table import Table

    from amauta.chat.decoding import GenerationSettings
    from amauta.chat.generate import encode_prompt, generate, generate_batch
    from amauta.models.load import load_model

    n = args.max_new_tokens
    rows = []
    for dtype in args.dtypes:
        loaded = load_model(args.model, dtype=dtype)
        # No eos, no stops: every answer is exactly n tokens long.
        loaded = dataclasses.replace(loaded, profile=loaded.profile.model_copy(update={"stop_strings": []}))
        messages = [[{"role": "user", "content": p}] for p in PROMPTS]
        few = messages[:args.prompts]
        generate(loaded, few[0], GenerationSettings(strategy="greedy", max_new_tokens=4))  # warm-up
        pad = loaded.tokenizer.pad_token_id

        def record(strategy: str, batch: int, seconds: float, tokens: int, impl: str = "amauta",
                   dtype: str = dtype) -> None:
            rows.append({"dtype": dtype, "strategy": strategy, "impl": impl, "batch": batch, "tokens": tokens,
                         "seconds": round(seconds, 3), "tokens_per_second": round(tokens / seconds, 2),
                         "ms_per_token": round(1000 * seconds / tokens, 2)})

        # Baseline: transformers' generate, greedy, batch 1, same prompts and length.
        started, tokens = time.perf_counter(), 0
        for m in few:
            ids = encode_prompt(loaded, m)
            out = loaded.model.generate(ids, attention_mask=torch.ones_like(ids), do_sample=False, max_new_tokens=n,
                                        min_new_tokens=n, pad_token_id=pad)
            tokens += out.shape[1] - ids.shape[1]
        record("greedy", 1, time.perf_counter() - started, tokens, impl="transformers")

        for strategy in ("greedy", "sampling", "beam", "contrastive"):
            settings = GenerationSettings.from_profile(loaded.profile, strategy=strategy, max_new_tokens=n, seed=0,
                                                       ignore_eos=True)
            started, tokens = time.perf_counter(), 0
            for m in few:
                tokens += generate(loaded, m, settings).new_tokens
            record(strategy, 1, time.perf_counter() - started, tokens)
        for strategy in ("greedy", "sampling", "beam", "contrastive"):
            settings = GenerationSettings.from_profile(loaded.profile, strategy=strategy, max_new_tokens=n, seed=0,
                                                       ignore_eos=True)
            started = time.perf_counter()
            results = generate_batch(loaded, messages, settings, batch_size=8)
            record(strategy, 8, time.perf_counter() - started, sum(r.new_tokens for r in results))

    table = Table(title=f"{args.model}: {n} new tokens per answer, {args.threads} threads (CPU shared: noisy)")
    for column in ("dtype", "strategy", "impl", "batch", "tokens", "seconds", "tok/s", "ms/token"):
        table.add_column(column, justify="right" if column in ("batch", "tokens", "seconds", "tok/s", "ms/token") else "left")
    for r in rows:
        table.add_row(r["dtype"], r["strategy"], r["impl"], str(r["batch"]), str(r["tokens"]), f"{r['seconds']:.2f}",
                      f"{r['tokens_per_second']:.1f}", f"{r['ms_per_token']:.1f}")
    Console().print(table)

    def ms(dtype: str, strategy: str, batch: int = 1, impl: str = "amauta") -> float:
        return next(r["ms_per_token"] for r in rows if (r["dtype"], r["strategy"], r["batch"], r["impl"]) ==
                    (dtype, strategy, batch, impl))

    ratios = {d: round(ms(d, "contrastive") / ms(d, "greedy"), 3) for d in args.dtypes}
    print(f"contrastive / greedy time per token (batch 1): {ratios} (target <= 1.5)")
    print(json.dumps({"benchmark": "generate", "model": args.model, "max_new_tokens": n, "threads": args.threads,
                      "contrastive_vs_greedy": ratios, "rows": rows}))


if __name__ == "__main__":
    main()
