"""Perplexity on held-out Spanish text: the most sensitive sign that fine-tuning made a model forget Spanish.

Accuracy on 244 multiple-choice items moves in steps of 0.4 points and mostly by noise; the average
log-likelihood of every token of a few hundred Spanish paragraphs moves smoothly. Each paragraph is one
item (so the runner caches it and the bootstrap resamples whole paragraphs); the summary reports corpus
perplexity exp(Σ nll / Σ tokens) and bits per byte (comparable across tokenizers).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from pydantic import Field

from amauta.core.errors import AmautaError
from amauta.core.files import parse_json, read_text
from amauta.evaluate import stats
from amauta.evaluate.runner import EvalModelsConfig, run_eval


class PerplexityConfig(EvalModelsConfig):
    """`amauta eval perplexity`: per-token log-likelihood of held-out Spanish text."""

    data: str = Field("examples/data/belebele_sample.jsonl",
                      description="SQuAD/XQuAD JSON (its paragraphs), JSONL with text/passage/context, or a .txt/.md file.")
    limit: int | None = Field(None, ge=1, description="Use only the first N texts.")
    max_length: int = Field(1024, ge=16, description="Longer texts are cut into windows of this many tokens.")
    batch_size: int = Field(4, ge=1, description="Texts per forward pass.")
    out: str = Field("runs/eval-perplexity", description="Eval folder (items.jsonl, summary.json, manifest.json).")


def load_texts(source: str | Path) -> list[dict[str, str]]:
    """Held-out texts as `{id, text}`: unique paragraphs of a SQuAD-style JSON, JSONL rows, or a text file.

    source: `xquad.es.json` (each distinct `context`), a JSONL whose rows have `text`, `passage` or
        `context` (the Belebele sample works), or a .txt/.md file split on blank lines.
    """
    path = Path(source)
    if not path.is_file():
        raise AmautaError(f"{source}: file not found; pass XQuAD-style JSON, JSONL with a 'text' field, or a .txt file")
    texts: list[str] = []
    if path.suffix == ".json":
        from amauta.evaluate.xquad import read_squad_articles

        texts = [p["context"] for article in read_squad_articles(path) for p in article.get("paragraphs", [])]
    elif path.suffix == ".jsonl":
        for number, line in enumerate(read_text(path).split("\n"), start=1):
            if not line.strip():
                continue
            row = parse_json(line, path, first_line=number)
            text = next((row[k] for k in ("text", "passage", "context") if isinstance(row, dict) and row.get(k)), None)
            if text is None:
                raise AmautaError(f"{path}:{number}: no 'text', 'passage' or 'context' field")
            texts.append(text)
    else:
        texts = [block for block in read_text(path).split("\n\n")]
    unique = list(dict.fromkeys(t.strip() for t in texts if t and t.strip()))
    if not unique:
        raise AmautaError(f"{path}: no text found; the file is empty")
    return [{"id": f"t{n:04d}", "text": text} for n, text in enumerate(unique, start=1)]


def text_nll(model, tokenizer, texts: list[str], max_length: int = 1024) -> list[tuple[float, int]]:
    """(Σ negative log-likelihood in nats, tokens predicted) of each text; long texts in windows."""
    import torch  # here, not at the top: the CLI imports this module for its config's options

    with torch.inference_mode():
        device = next(model.parameters()).device
        pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else (tokenizer.eos_token_id or 0)
        windows, owner = [], []
        for k, text in enumerate(texts):
            ids = tokenizer(text).input_ids
            for start in range(0, max(len(ids) - 1, 1), max_length - 1):  # windows share one token of context
                windows.append(ids[start:start + max_length])
                owner.append(k)
        width = max(len(w) for w in windows)
        inp = torch.full((len(windows), width), pad, dtype=torch.long)
        mask = torch.zeros_like(inp)
        for row, w in enumerate(windows):
            inp[row, :len(w)] = torch.tensor(w)
            mask[row, :len(w)] = 1
        logits = model(input_ids=inp.to(device), attention_mask=mask.to(device)).logits[:, :-1].float()
        target, valid = inp[:, 1:].to(device), mask[:, 1:].to(device).bool()
        nll = -torch.log_softmax(logits, -1).gather(-1, target.unsqueeze(-1)).squeeze(-1)
        totals = [[0.0, 0] for _ in texts]
        for row, k in enumerate(owner):
            totals[k][0] += float((nll[row] * valid[row]).sum())
            totals[k][1] += int(valid[row].sum())
        return [(n, t) for n, t in totals]


class PerplexityTask:
    """Perplexity as a runner task: one row per text."""

    name = "perplexity"
    renders_chat = False  # raw text: no chat template, so no system prompt in the cache key

    def __init__(self, texts: list[dict[str, str]], max_length: int = 1024, source: str = ""):
        self.texts, self.max_length, self.source = texts, max_length, source

    def config_key(self) -> dict[str, Any]:
        return {"max_length": self.max_length, "source": self.source}

    def items(self) -> list[dict[str, str]]:
        return self.texts

    def length(self, item: dict[str, str]) -> int:
        """The same for every text: they are scored in file order, so each batch holds the same texts."""
        return 0

    def evaluate(self, loaded: Any, batch: list[dict]) -> list[dict]:
        results = text_nll(loaded.model, loaded.tokenizer, [t["text"] for t in batch], self.max_length)
        return [{"nll": round(nll, 4), "tokens": tokens, "bytes": len(t["text"].encode("utf-8")),
                 "text_sha": _short_hash(t["text"])} for t, (nll, tokens) in zip(batch, results, strict=True)]

    def summarize(self, rows: list[dict]) -> dict[str, Any]:
        nll = sum(r["nll"] for r in rows)
        tokens = sum(r["tokens"] for r in rows)
        size = sum(r["bytes"] for r in rows)
        return {"ppl": math.exp(nll / max(tokens, 1)),
                "ppl_ci": list(stats.perplexity_ci([r["nll"] for r in rows], [r["tokens"] for r in rows])),
                "nll_per_token": nll / max(tokens, 1), "bits_per_byte": nll / math.log(2) / max(size, 1),
                "tokens": tokens, "n": len(rows)}


def _short_hash(text: str) -> str:
    import hashlib

    return hashlib.sha256(text.encode()).hexdigest()[:12]


def run(config: PerplexityConfig, *, loader=None, show_progress: bool = True) -> Path:
    """Pipeline entry point: perplexity of the model (or the `compare` list) into `config.out`; return it."""
    texts = load_texts(config.data)
    task = PerplexityTask(texts[: config.limit] if config.limit else texts, config.max_length,
                          source=f"{Path(config.data).name}:{_short_hash(''.join(t['text'] for t in texts))}")
    specs, load_kwargs = config.model_specs(), config.load_kwargs()
    return run_eval(task, specs, config.out, batch_size=config.batch_size, loader=loader, load_kwargs=load_kwargs,
                    config=config, inputs=[config.data], show_progress=show_progress).folder
