"""One runner for every evaluation task: per-item JSONL cache, resume, progress, summary and manifest.

A task (Belebele, perplexity, XQuAD, MGSM) only knows how to turn a batch of items into per-item result
rows and how to summarise rows into metrics. The runner does the rest, the same way for all of them:

- each model to evaluate is a `ModelSpec` (the base, or the base plus a LoRA adapter); `--compare`
  evaluates several in one folder so their per-item results can be paired;
- every result row is appended to `OUT/items.jsonl` the moment its batch finishes, tagged with a cache
  key (model, adapter, task config, numerics) and the item id: a killed run started again with the same
  command skips what is already there and never loads a model whose items are all cached;
- the numerics are chosen so that a result does not depend on how it was computed: on a CPU `dtype:
  auto` means float32, where a score does not depend on the other items of its batch; in bf16, fp16 or
  quantized, where it does, the batch size (and device) join the cache key (`eval_numerics`);
- at the end `summary.json` and `manifest.json` are written atomically.
"""

from __future__ import annotations

import gc
import hashlib
import json
import os
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from pydantic import Field

from amauta.core.config import StageConfig
from amauta.core.errors import AmautaError
from amauta.core.files import append_jsonl, atomic_write_json, atomic_write_text, read_jsonl, sha256_file
from amauta.core.manifest import write_manifest
from amauta.evaluate import stats
from amauta.models.types import Device, DType, Quantization

ITEMS_FILE = "items.jsonl"
SUMMARY_FILE = "summary.json"
# Bumped whenever the cache key gains a part, so that rows written under an older key are refused, not
# silently mixed in. 2: the numerics (dtype; batch size, device and quantization when not exact fp32).
CACHE_KEY_VERSION = 2


@dataclass(frozen=True)
class ModelSpec:
    """One model to evaluate.

    label: the name used in tables and in `items.jsonl` ("base", or the adapter's run folder name).
    model: a registry profile name, hub id, local folder or GGUF path (what `load_model` accepts).
    adapter: a LoRA adapter folder or a training run folder, or None for the base model.
    """

    label: str
    model: str
    adapter: str | None = None

    def fingerprint(self) -> dict[str, Any]:
        """What identifies these weights for the cache: the spec, and the adapter file's hash."""
        facts: dict[str, Any] = {"model": self.model, "adapter": None}
        if self.adapter:
            path = Path(self.adapter)
            weights = [p for name in ("adapter/adapter_model.safetensors", "adapter_model.safetensors",
                                      "adapter/adapter_model.bin", "adapter_model.bin")
                       if (p := path / name).is_file()]
            facts["adapter"] = str(path.resolve())
            facts["adapter_sha256"] = sha256_file(weights[0]) if weights else None
        return facts


def parse_models(model: str, adapter: str | None = None, compare: str | None = None) -> list[ModelSpec]:
    """Turn the CLI's `--model`, `--adapter` and `--compare` into the list of models to evaluate.

    model: the base model every adapter is applied to.
    adapter: evaluate only base+adapter (ignored when `compare` is given).
    compare: comma-separated entries, `base` for the bare model and a run or adapter folder for each
        fine-tuned one, optionally named `label=path`; the first entry is the reference for flips.
    """
    if not compare:
        if adapter:
            return [ModelSpec(_label_for(adapter), model, adapter)]
        return [ModelSpec("base", model, None)]
    specs: list[ModelSpec] = []
    for raw in (part.strip() for part in compare.split(",")):
        if not raw:
            continue
        label, _, path = raw.partition("=") if "=" in raw else ("", "", raw)
        if path == "base":
            specs.append(ModelSpec(label or "base", model, None))
            continue
        if not Path(path).exists():
            raise AmautaError(f"--compare: '{path}' is neither 'base' nor an existing run/adapter folder; "
                              "pass base,RUN_DIR1,RUN_DIR2")
        specs.append(ModelSpec(label or _label_for(path), model, path))
    labels = [s.label for s in specs]
    if not specs:
        raise AmautaError("--compare: no models given; pass e.g. --compare base,runs/es-lora")
    if len(set(labels)) != len(labels):
        raise AmautaError(f"--compare: two entries share the label {labels}; name them with label=path")
    return specs


class EvalModelsConfig(StageConfig):
    """What every eval command shares: the model(s) to score, how to load them, where to write."""

    model: str = Field("smollm2-135m-instruct", description="Base model: registry name, hub id, folder or GGUF.")
    adapter: str | None = Field(None, description="A LoRA adapter or training run folder to apply to the base.")
    compare: str | None = Field(None, description="Comma list: 'base' and run/adapter folders, evaluated together.")
    batch_size: int = Field(8, ge=1, description="Items per forward pass or generation batch.")
    out: str = Field("runs/eval", description="Eval folder (items.jsonl, summary.json, manifest.json).")
    dtype: DType = Field("auto", description="auto (float32 on a CPU, bf16 on a GPU), float32, bfloat16 or float16.")
    device: Device = Field("auto", description="auto, cpu or cuda.")
    quantization: Quantization = Field("none", description="none, 8bit or 4bit (bitsandbytes).")
    system_prompt: str | None = Field(None, description="System prompt of the tasks answered by chat: None = the "
                                      "model profile's (amauta models show), '' = none.")

    def model_specs(self) -> list[ModelSpec]:
        """The base model, or the base and each adapter of `compare`."""
        return parse_models(self.model, self.adapter, self.compare)

    def load_kwargs(self) -> dict[str, str | None]:
        """How `load_model` loads each of them."""
        return {"dtype": self.dtype, "device": self.device, "quantization": self.quantization,
                "system_prompt": self.system_prompt}


def _label_for(path: str) -> str:
    p = Path(path).resolve()
    return p.parent.name if p.name == "adapter" else p.name


class Task(Protocol):
    """What the runner calls on a task: exactly these, nothing found by `hasattr`."""

    name: str  # "belebele", "perplexity", "xquad", "mgsm": the `task` field of summary.json

    def config_key(self) -> dict[str, Any]:
        """Everything that changes a per-item result (prompt, formulation, shots, decoding)."""

    def items(self) -> list[dict[str, Any]]:
        """The items to score, each with a unique string `id`."""

    def length(self, item: dict[str, Any]) -> int:
        """A rough size of the item: the runner scores longer items first, so one batch holds similar
        lengths and wastes less on padding (as lm-eval sorts). Equal lengths keep the items' order."""

    def evaluate(self, loaded: Any, batch: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Score a batch; one result row per item, in order (the runner adds key, model and item id)."""

    def summarize(self, rows: list[dict[str, Any]]) -> dict[str, Any]:
        """Metrics over a model's result rows (with intervals)."""


def cache_key(spec: ModelSpec, task_key: dict[str, Any], numerics: dict[str, Any]) -> str:
    """A short stable hash of everything a per-item result depends on (the one place the key is built).

    spec: the weights (model, adapter and the adapter file's hash).
    task_key: the task's config (prompt, formulation, shots, decoding, data).
    numerics: how the numbers were computed, from `eval_numerics`.
    """
    blob = json.dumps({"version": CACHE_KEY_VERSION, "weights": spec.fingerprint(), "task": task_key,
                       "numerics": numerics}, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def eval_numerics(spec: ModelSpec, load_kwargs: dict[str, Any] | None, batch_size: int
                  ) -> tuple[dict[str, Any], dict[str, Any]]:
    """(the loader's kwargs with `dtype` made explicit, the numerics that go into the cache key).

    `dtype: auto` is float32 on a CPU, also on one with native bf16: in bf16 an item's log-probability
    moves by up to ~1 nat with the other items of its batch (padding changes the kernels' blocking),
    in float32 by ~1e-5, so only float32 makes a resumed run equal an uninterrupted one. On a GPU it
    stays `load_model`'s choice (bf16, or fp16 on old cards; the tiny test models fp32). When the result
    is not exact float32 (bf16, fp16, 8/4-bit), the batch size and the device join the key, so that a
    rerun with another --batch-size recomputes instead of mixing numbers of two groupings.
    """
    from amauta.models.load import resolve_device, resolve_dtype

    kwargs = dict(load_kwargs or {})
    device = resolve_device(kwargs.get("device", "auto"))
    dtype = kwargs.get("dtype", "auto")
    if dtype == "auto":
        dtype = "float32" if device == "cpu" or _is_tiny(spec.model) else resolve_dtype("auto", device)
    dtype = resolve_dtype(dtype, device)  # an unknown name fails here, in one line
    quantization = kwargs.get("quantization", "none")
    numerics: dict[str, Any] = {"dtype": dtype}
    if dtype != "float32" or quantization != "none":
        numerics.update(quantization=quantization, batch_size=batch_size, device=device)
    return {**kwargs, "dtype": dtype}, numerics


def _is_tiny(model: str) -> bool:
    """A registry tiny test model, which `load_model` keeps in float32 under `auto` everywhere."""
    from amauta.models.registry import get_profile, profile_names

    return model in profile_names() and get_profile(model).kind == "tiny"


def read_cache(items_path: Path) -> dict[tuple[str, str], dict]:
    """The cached rows of `items.jsonl` by (key, item id); refuses rows written under an older key."""
    cached: dict[tuple[str, str], dict] = {}
    if not items_path.is_file():
        return cached
    for row in read_jsonl(items_path, tolerate_torn_tail=True):
        if row.get("key_version") != CACHE_KEY_VERSION:
            raise AmautaError(f"{items_path}: made by an older Amauta whose cache key left out the dtype and "
                              "batch size (bf16 scores change with the batch), so its rows cannot be resumed; "
                              "evaluate into a new --out folder (or move items.jsonl away to recompute)")
        cached[(row.get("key", ""), str(row.get("item_id")))] = row
    return cached
def _system_prompt(specs: list[ModelSpec], load_kwargs: dict[str, Any] | None) -> str | None:
    """The system prompt the models get: the run's, else their profile's (None: known only once loaded)."""
    from amauta.models.load import recorded_system_prompt

    given = (load_kwargs or {}).get("system_prompt")
    return given.strip() if given is not None else recorded_system_prompt(specs[0].model)


def _say_why_recomputed(out: Path, task_key: dict[str, Any]) -> None:
    """One line when the cached results of a model were made with another system prompt (computed again)."""
    previous = out / SUMMARY_FILE
    if not previous.is_file():
        return
    try:
        old = json.loads(previous.read_text(encoding="utf-8")).get("task_config") or {}
    except (json.JSONDecodeError, UnicodeDecodeError, AttributeError):
        return
    new = task_key["system_prompt"]
    if old.get("system_prompt", "(unrecorded)") != new:
        before = ("before Amauta set it (the tokenizer template's own default, e.g. SmolLM2's English one)"
                  if "system_prompt" not in old else _shown(old["system_prompt"]))
        from rich.console import Console

        Console(stderr=True).print(f"{out / ITEMS_FILE}: cached results were made with the system prompt {before}; "
                                   f"this run uses {_shown(new)}: computing them again", highlight=False,
                                   markup=False, soft_wrap=True)


def _shown(prompt: str | None) -> str:
    return "the model's own" if prompt is None else repr(prompt) if prompt else "none"


def repair_torn_tail(path: Path) -> None:
    """Drop a last line cut short by a killed writer, so that new appends start on a clean line."""
    if not path.is_file() or path.stat().st_size == 0:
        return
    data = path.read_bytes()
    if data.endswith(b"\n"):
        return
    keep = data[: data.rfind(b"\n") + 1]
    atomic_write_text(path, keep.decode("utf-8"))


def batched(seq: Sequence, size: int) -> Iterator[list]:
    """Consecutive slices of `seq` of at most `size` elements."""
    for start in range(0, len(seq), max(1, size)):
        yield list(seq[start:start + size])


def default_loader(spec: ModelSpec, **load_kwargs: Any) -> Any:
    """Load a ModelSpec with the models room's `load_model` (adapter applied when given)."""
    from amauta.models.load import load_model

    return load_model(spec.model, adapter=spec.adapter, **load_kwargs)


@dataclass(frozen=True)
class EvalResult:
    """What `run_eval` wrote and scored.

    folder: the eval folder (items.jsonl, summary.json, manifest.json).
    summary: the content of summary.json.
    rows: model label → that model's result rows (as in items.jsonl), in the task's item order.
    """

    folder: Path
    summary: dict[str, Any]
    rows: dict[str, list[dict[str, Any]]]


def _is_legacy_eval(folder: Path) -> bool:
    """An eval folder killed before eval folders got a manifest at start: only items.jsonl (and a summary)."""
    names = {p.name for p in folder.iterdir() if not p.name.startswith(".")}
    return ITEMS_FILE in names and names <= {ITEMS_FILE, SUMMARY_FILE}


def run_eval(task: Task, specs: list[ModelSpec], out_dir: str | Path, **options: Any) -> EvalResult:
    """Evaluate into `out_dir` while holding it (see `_run_eval` for the options).

    The folder must be new, empty, or an eval folder of the same task (core/outdir.py): a training run,
    a dataset or any folder Amauta did not make is refused, untouched.
    """
    from amauta.core.outdir import claim

    stage = f"evaluate.{task.name}"
    with claim(out_dir, stage, legacy=_is_legacy_eval) as folder:
        folder.start(options.get("config") if options.get("config") is not None else task.config_key(),
                     list(options.get("inputs", ())))
        return _run_eval(task, specs, out_dir, **options)


def _run_eval(task: Task, specs: list[ModelSpec], out_dir: str | Path, *, batch_size: int = 8,
              loader: Callable[..., Any] | None = None, load_kwargs: dict[str, Any] | None = None,
              config: Any = None, inputs: Sequence[str | Path] = (), show_progress: bool = True,
              complete_summary: Callable[[dict[str, Any], dict[str, list[dict[str, Any]]]], dict[str, Any]] | None = None,
              ) -> EvalResult:
    """Evaluate every model of `specs` on `task` into `out_dir`, resuming from its `items.jsonl`.

    task: the task (items, scoring, summary).
    specs: the models; the first is the reference for per-item flips.
    out_dir: the eval folder (items.jsonl, summary.json, manifest.json).
    batch_size: items per forward pass or generation batch.
    loader: `loader(spec, **load_kwargs) -> LoadedModel`; the models room's `load_model` by default.
    load_kwargs: dtype, device, quantization passed to the loader (`dtype: auto` resolved by `eval_numerics`).
    config: the stage config recorded in the manifest.
    inputs: data files whose hashes the manifest records.
    show_progress: draw a rich progress bar per model.
    complete_summary: `(summary, rows by model) -> summary`, for what needs every model's rows (the exam's
        comparisons over facts); applied before summary.json is written.
    Returns the folder, its summary and every model's rows (`EvalResult`).
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    items_path = out / ITEMS_FILE
    repair_torn_tail(items_path)
    items = task.items()
    if not items:
        raise AmautaError(f"{task.name}: no items to evaluate; check the data file and --limit")
    ids = [str(item["id"]) for item in items]
    if len(set(ids)) != len(ids):
        dup = next(i for i in ids if ids.count(i) > 1)
        raise AmautaError(f"{task.name}: item id '{dup}' appears twice; ids must be unique")
    cached = read_cache(items_path)
    loader = loader or default_loader
    task_key = task.config_key()
    if getattr(task, "renders_chat", True):  # a chat template renders the prompts: the system prompt is in them
        task_key = {**task_key, "system_prompt": _system_prompt(specs, load_kwargs)}
    results: list[dict[str, Any]] = []
    rows_by_model: dict[str, list[dict[str, Any]]] = {}
    for spec in specs:
        spec_load_kwargs, numerics = eval_numerics(spec, load_kwargs, batch_size)
        key = cache_key(spec, task_key, numerics)
        todo = [item for item in items if (key, str(item["id"])) not in cached]
        if todo and "system_prompt" in task_key and any(k != key and row.get("model") == spec.label
                                                        for (k, _), row in cached.items()):
            _say_why_recomputed(out, task_key)
        todo.sort(key=task.length, reverse=True)  # a stable sort: equal lengths keep the items' order
        started = time.perf_counter()
        if todo:
            loaded = loader(spec, **spec_load_kwargs)
            with _progress(show_progress, f"{task.name} · {spec.label}", len(items), len(items) - len(todo)) as advance:
                for batch in batched(todo, batch_size):
                    for item, row in zip(batch, task.evaluate(loaded, batch), strict=True):
                        row = {"key": key, "key_version": CACHE_KEY_VERSION, "model": spec.label,
                               "item_id": str(item["id"]), **row}
                        append_jsonl(items_path, row)
                        cached[(key, row["item_id"])] = row
                    advance(len(batch))
            del loaded
            gc.collect()
        rows = rows_by_model[spec.label] = [cached[(key, i)] for i in ids]
        metrics = task.summarize(rows)
        results.append({"label": spec.label, "model": spec.model, "adapter": spec.adapter, "key": key,
                        "numerics": numerics, "n": len(rows), "computed": len(todo), "seconds": round(time.perf_counter() - started, 2),
                        "metrics": metrics})
    comparisons = _compare(task, results, cached, ids)
    summary = {
        "task": task.name,
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "task_config": task_key,
        "n_items": len(items),
        "models": results,
        "comparisons": comparisons,
        "items_file": ITEMS_FILE,
    }
    if complete_summary is not None:
        summary = complete_summary(summary, rows_by_model)
    atomic_write_json(out / SUMMARY_FILE, summary)
    write_manifest(out, stage=f"evaluate.{task.name}", config=config if config is not None else task_key,
                   inputs=list(inputs), models=[s.__dict__ for s in specs], load=load_kwargs or {})
    return EvalResult(out, summary, rows_by_model)


def _compare(task: Task, results: list[dict], cached: dict, ids: list[str]) -> list[dict[str, Any]]:
    """Per-item flips of each model against the first, for tasks whose rows say `correct`."""
    if len(results) < 2:
        return []
    first = results[0]
    base = {i: cached[(first["key"], i)] for i in ids}
    if not all("correct" in row for row in base.values()):
        return []
    comparisons = []
    for other in results[1:]:
        rows = {i: cached[(other["key"], i)] for i in ids}
        flips = stats.paired_flips({i: bool(r["correct"]) for i, r in base.items()},
                                   {i: bool(r["correct"]) for i, r in rows.items()})
        comparisons.append({"base": first["label"], "other": other["label"], **flips})
    return comparisons


class _progress:
    """A rich progress bar (or nothing) that yields an `advance(n)` function."""

    def __init__(self, enabled: bool, description: str, total: int, completed: int):
        self.enabled = enabled and os.environ.get("AMAUTA_NO_PROGRESS") != "1"
        self.description, self.total, self.completed = description, total, completed

    def __enter__(self) -> Callable[[int], None]:
        if not self.enabled:
            return lambda n: None
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

        self.bar = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                            TimeRemainingColumn(), transient=False)
        self.bar.start()
        task_id = self.bar.add_task(self.description, total=self.total, completed=self.completed)
        return lambda n: self.bar.advance(task_id, n)

    def __exit__(self, *exc: object) -> None:
        if self.enabled:
            self.bar.stop()


def load_summary(eval_dir: str | Path) -> dict[str, Any]:
    """Read an eval folder's summary.json, with a clear error when it is not an eval folder."""
    path = Path(eval_dir) / SUMMARY_FILE
    if not path.is_file():
        raise AmautaError(f"{eval_dir}: no {SUMMARY_FILE}; is this an eval folder (amauta eval ... --out)?")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise AmautaError(f"{path}:{exc.lineno}: invalid JSON ({exc.msg}); rerun the evaluation") from None
