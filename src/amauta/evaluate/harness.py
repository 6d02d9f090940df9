"""`amauta eval harness`: lm-evaluation-harness's own tasks on Amauta's loaded model (+ adapter).

The field's standard Spanish suite (`belebele_spa_Latn`, `xnli_es`, `paws_es`, `xstorycloze_es`, the
`spanish_bench` group...) lives in lm-eval as task YAMLs. This command runs them unchanged: each model of
`--compare` is loaded by the models room (base, or base + LoRA adapter, with Amauta's dtype and device
rules), wrapped in lm-eval's `HFLM(pretrained=model, tokenizer=tokenizer)` and handed to
`lm_eval.simple_evaluate(..., log_samples=True)`. Amauta adds its eval folder around it:

- one unit of work is (model, requested task): `results/LABEL.TASK.KEY.json` (lm-eval's metrics, task
  versions, n-shot) and `samples/LABEL.SUBTASK.KEY.jsonl` (lm-eval's per-item log), written atomically,
  the results file last; a rerun skips finished units and never loads a model whose units are all done;
  KEY hashes the weights, the task, the data, the options and lm-eval's version (`runner.cache_key`);
- inside a unit, lm-eval's request cache (`cache/LABEL.KEY_rank0.db`) keeps every answer as it is
  computed, so a killed run goes on where it stopped;
- `summary.json` puts every model's metrics side by side, with each model's paired difference to the
  first one per item (bootstrap interval; lost/gained and McNemar for 0/1 metrics), as the other evals do.

Amauta ships local tasks (`harness_tasks/`, e.g. `amauta_belebele_es` over a Belebele JSONL) that run
without the internet; lm-eval's hub tasks download their data sets, and with the hub out of reach they
are refused in one line before anything is loaded.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import re
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from pydantic import Field

from amauta.core.errors import AmautaError, did_you_mean
from amauta.core.files import atomic_write_json, atomic_write_text, sha256_file
from amauta.evaluate import stats
from amauta.evaluate.runner import (
    SUMMARY_FILE,
    EvalModelsConfig,
    ModelSpec,
    cache_key,
    default_loader,
    eval_numerics,
)

TASK = "harness"
STAGE = f"evaluate.{TASK}"
BUNDLED_DIR = Path(__file__).parent / "harness_tasks"
INSTALL_HINT = "pip install 'amauta[eval]' (or: pip install 'lm-eval>=0.4.13')"


class HarnessConfig(EvalModelsConfig):
    """`amauta eval harness`: lm-eval tasks on one model or a base-vs-adapters comparison."""

    tasks: list[str] = Field(default_factory=lambda: ["amauta_belebele_es"],
                             description="lm-eval tasks or groups: amauta_belebele_es (local), "
                                         "belebele_spa_Latn, xnli_es, paws_es, xstorycloze_es, spanish_bench...")
    include_path: list[str] = Field(default_factory=list, description="Folders of your own lm-eval task YAMLs, "
                                    "as lm_eval's --include_path.")
    data: str | None = Field(None, description="Data file of Amauta's local tasks (amauta_belebele_es...): a "
                             "Belebele JSONL; default the path in their YAML, ../shared/data/belebele-es/dev.jsonl.")
    limit: int | None = Field(None, ge=1, description="Score only the first N items of each task (quick checks).")
    num_fewshot: int | None = Field(None, ge=0, description="Solved examples before each item; default each task's own.")
    apply_chat_template: bool = Field(False, description="Render prompts with the model's chat template "
                                      "(lm-eval's --apply_chat_template).")
    system_prompt: str | None = Field(None, description="With --apply-chat-template: the system prompt (None = the "
                                      "model profile's, as amauta models show lists; '' = none).")
    bootstrap_iters: int = Field(1000, ge=0, description="lm-eval's bootstrap resamples for the stderr of "
                                 "metrics that are not means (0 = none).")
    batch_size: int = Field(8, ge=1, description="Requests per forward pass (lm-eval's --batch_size).")
    out: str = Field("runs/eval-harness", description="Eval folder (summary.json, results/, samples/, manifest.json).")


# --------------------------------------------------------------------------- lm-eval, tasks, offline

def require_lm_eval() -> str:
    """lm-eval's version, or a one-line refusal saying how to install it."""
    try:
        import lm_eval
    except ImportError:
        raise AmautaError(f"eval harness needs lm-evaluation-harness, which is not installed; install it with: "
                          f"{INSTALL_HINT}") from None
    return str(lm_eval.__version__)


def bundled_tasks() -> dict[str, Path]:
    """Amauta's own local task YAMLs, by task name."""
    import yaml

    found = {}
    for path in sorted(BUNDLED_DIR.glob("*.yaml")):
        name = (yaml.safe_load(path.read_text(encoding="utf-8")) or {}).get("task")
        if name:
            found[str(name)] = path
    return found


def bundled_spec(name: str, data: str | None) -> tuple[dict[str, Any], Path]:
    """The bundled task `name` as an lm-eval config dict with its data file made absolute, and that file.

    data: the `--data` file; None keeps the YAML's path (relative to the current folder, as lm_eval reads it).
    """
    import yaml

    spec = yaml.safe_load(bundled_tasks()[name].read_text(encoding="utf-8"))
    files = spec["dataset_kwargs"]["data_files"]
    split = spec["test_split"]
    path = Path(data if data is not None else files[split])
    if not path.is_file():
        raise AmautaError(f"{name}: data file {path} not found; pass --data FILE (a Belebele JSONL with passage, "
                          "question, options, gold, e.g. examples/data/belebele_sample.jsonl)")
    spec["dataset_kwargs"] = {**spec["dataset_kwargs"], "data_files": {split: str(path.resolve())}}
    return spec, path


def _check_include_paths(paths: list[str]) -> None:
    for path in paths:
        if not Path(path).is_dir():
            raise AmautaError(f"--include-path: {path} is not a folder; pass folders of lm-eval task YAMLs")


def _datasets_offline_by_setting() -> bool:
    return os.environ.get("HF_DATASETS_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on")


class TaskSet:
    """The requested tasks as lm-eval specs (a name, or a config dict for a bundled task) and their TaskManager.

    lm-eval's full index (every task it ships, ~15 000) takes 10-50 s to build; it is built only when a
    requested name is neither bundled nor under --include-path, and only when the hub can serve its data
    (or HF_DATASETS_OFFLINE=1 asks for the local data-set cache): offline, such a task is refused at once.
    """

    def __init__(self, config: HarnessConfig):
        from lm_eval.tasks import TaskManager

        _check_include_paths(config.include_path)
        bundled = bundled_tasks()
        self.specs: dict[str, str | dict[str, Any]] = {}
        self.data_files: list[Path] = []
        for name in config.tasks:
            if name in bundled:
                self.specs[name], path = bundled_spec(name, config.data)
                self.data_files.append(path)
        others = [n for n in config.tasks if n not in bundled]
        # The bundled folder too, so that a group of yours may list Amauta's tasks (with their YAML's data path).
        self.include_path = [str(BUNDLED_DIR), *config.include_path]
        local = TaskManager(include_path=self.include_path, include_defaults=False)
        self.manager, self.local_only = local, True
        if any(n not in local.all_tasks for n in others):
            self._need_hub([n for n in others if n not in local.all_tasks], sorted(bundled))
            self.manager, self.local_only = TaskManager(include_path=self.include_path), False
        for name in others:
            if name not in self.manager.all_tasks:
                raise AmautaError(f"--tasks: '{name}' is not an lm-eval task, group or tag"
                                  f"{did_you_mean(name, self.manager.all_tasks)}; list them with `lm_eval ls tasks`")
            self.specs[name] = name
        self.include_digest = _folder_digest([Path(p) for p in config.include_path])

    @staticmethod
    def _need_hub(names: list[str], bundled: list[str]) -> None:
        """Refuse hub tasks in one line when the hub is out of reach and no local data-set cache was asked for."""
        from amauta.models.hub import hub_offline, offline_reason

        if hub_offline() and not _datasets_offline_by_setting():
            raise AmautaError(f"--tasks: '{names[0]}' is not a local task (Amauta's {', '.join(bundled)}, or your "
                              f"--include-path) and {offline_reason()}; lm-eval's hub tasks download their data "
                              "sets: run with internet, or set HF_DATASETS_OFFLINE=1 to use data sets already in "
                              "your Hugging Face cache")


def _folder_digest(folders: list[Path]) -> str:
    """A hash of every YAML under the include folders: an edited task recomputes its results."""
    digest = hashlib.sha256()
    for folder in folders:
        for path in sorted(folder.rglob("*.yaml")):
            digest.update(str(path.relative_to(folder)).encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()[:16]


@contextlib.contextmanager
def _quiet_lm_eval(show_progress: bool, offline: bool) -> Iterator[None]:
    """lm-eval's INFO logs off; its tqdm bars only with progress; the data-set library offline when the hub is
    (or every task is local)."""
    import lm_eval.evaluator

    with contextlib.ExitStack() as undo:
        logger = logging.getLogger("lm_eval")
        undo.callback(logger.setLevel, logger.level)
        logger.setLevel(logging.ERROR)
        # lm-eval records `git describe` of the folder it runs in (and git prints "fatal: not a git
        # repository" outside one): it says nothing about lm-eval's tasks, so it is not asked.
        undo.callback(setattr, lm_eval.evaluator, "get_git_commit_hash", lm_eval.evaluator.get_git_commit_hash)
        lm_eval.evaluator.get_git_commit_hash = lambda: None
        if not show_progress or os.environ.get("AMAUTA_NO_PROGRESS") == "1":
            # tqdm reads TQDM_DISABLE when imported, long before this: its bars go to a closed-off stderr
            undo.enter_context(contextlib.redirect_stderr(undo.enter_context(open(os.devnull, "w"))))
        if offline:
            previous = os.environ.get("HF_DATASETS_OFFLINE")
            undo.callback(_restore_env, "HF_DATASETS_OFFLINE", previous)
            os.environ["HF_DATASETS_OFFLINE"] = "1"
        yield


def _restore_env(name: str, value: str | None) -> None:
    if value is None:
        os.environ.pop(name, None)
    else:
        os.environ[name] = value


# --------------------------------------------------------------------------- one unit: (model, task)

def _safe(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", text)


def results_path(out: Path, label: str, task: str, key: str) -> Path:
    return out / "results" / f"{_safe(label)}.{_safe(task)}.{key}.json"


def samples_path(out: Path, label: str, subtask: str, key: str) -> Path:
    return out / "samples" / f"{_safe(label)}.{_safe(subtask)}.{key}.jsonl"


def _plain(value: Any) -> Any:
    """JSON for lm-eval's values: numpy scalars as numbers, anything else unknown as text."""
    return value.item() if hasattr(value, "item") and callable(value.item) else str(value)


def evaluate_unit(hflm: Any, tasks: TaskSet, name: str, config: HarnessConfig, out: Path, label: str,
                  key: str, version: str) -> dict[str, Any]:
    """Run one requested task on one wrapped model; write its samples and results; return the results."""
    import lm_eval

    started = time.perf_counter()
    (out / "cache").mkdir(parents=True, exist_ok=True)
    try:
        output = lm_eval.simple_evaluate(
            model=hflm, tasks=[tasks.specs[name]], task_manager=tasks.manager, num_fewshot=config.num_fewshot,
            limit=config.limit, log_samples=True, bootstrap_iters=config.bootstrap_iters,
            use_cache=str(out / "cache" / f"{_safe(label)}.{key}"),
            apply_chat_template=config.apply_chat_template)  # the system prompt: the model's profile (--system)
    except (OSError, ConnectionError) as exc:  # the data set: not downloadable, not in the cache, file gone
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise AmautaError(f"{name}: lm-eval cannot load its data ({first}); run with internet once, or use a "
                          "local task (--include-path, or Amauta's amauta_belebele_es with --data)") from exc
    samples_files = {}
    for subtask, rows in (output.get("samples") or {}).items():
        path = samples_path(out, label, subtask, key)
        atomic_write_text(path, "".join(json.dumps(row, ensure_ascii=False, default=_plain) + "\n" for row in rows))
        samples_files[subtask] = str(path.relative_to(out))
    unit = {"key": key, "model": label, "task": name, "lm_eval_version": version,
            "seconds": round(time.perf_counter() - started, 2), "samples_files": samples_files,
            **{k: output.get(k) for k in ("results", "groups", "group_subtasks", "versions", "n-shot",
                                          "n-samples", "higher_is_better", "configs")}}
    unit = json.loads(json.dumps(unit, default=_plain))
    atomic_write_json(results_path(out, label, name, key), unit)  # last: it marks the unit finished
    return unit


def _hub_offline() -> bool:
    from amauta.models.hub import hub_offline

    return hub_offline()


def read_unit(out: Path, label: str, task: str, key: str) -> dict[str, Any] | None:
    """A finished unit's results, or None (missing, or cut short by a kill before the atomic rename)."""
    path = results_path(out, label, task, key)
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError:
        return None


def wrap_model(loaded: Any, config: HarnessConfig) -> Any:
    """lm-eval's HFLM over the in-memory model and tokenizer (no second load, adapter included).

    With --apply-chat-template the prompts are rendered as everywhere in Amauta (`apply_template`: the
    profile's template or the tokenizer's, and the run's system prompt), not by lm-eval's call to
    `tokenizer.apply_chat_template`, which needs a jinja template that Amauta's own templates are not.
    """
    from lm_eval.models.huggingface import HFLM

    from amauta.models.templates import apply_template

    class AmautaHFLM(HFLM):
        def apply_chat_template(self, chat_history: list[dict[str, str]], add_generation_prompt: bool = True) -> str:
            if add_generation_prompt or not chat_history or chat_history[-1]["role"] != "assistant":
                return apply_template(loaded, chat_history, add_generation_prompt=True)
            # lm-eval's continue_final_message: the assistant's turn is open, its text so far after the prompt
            *before, last = chat_history
            return apply_template(loaded, before, add_generation_prompt=True) + last["content"]

    return AmautaHFLM(pretrained=loaded.model, tokenizer=loaded.tokenizer, batch_size=config.batch_size)


# --------------------------------------------------------------------------- the run

def task_key(config: HarnessConfig, tasks: TaskSet, name: str, version: str) -> dict[str, Any]:
    """Everything a unit's results depend on besides the weights and the numerics."""
    spec = tasks.specs[name]
    key: dict[str, Any] = {"harness_task": name, "lm_eval": version, "limit": config.limit,
                           "num_fewshot": config.num_fewshot, "apply_chat_template": config.apply_chat_template,
                           "include": tasks.include_digest}
    if config.apply_chat_template:  # the prompts go through the template, and the system prompt into them
        from amauta.models.load import recorded_system_prompt

        key["system_prompt"] = (config.system_prompt if config.system_prompt is not None
                                else recorded_system_prompt(config.model))
    if isinstance(spec, dict):  # a bundled task: its config and its data file's content
        path = Path(spec["dataset_kwargs"]["data_files"][spec["test_split"]])
        key["spec"] = {k: v for k, v in spec.items() if k != "dataset_kwargs"}
        key["data_sha256"] = sha256_file(path)
    return key


def run(config: HarnessConfig, *, loader: Callable[..., Any] | None = None, show_progress: bool = True) -> Path:
    """Pipeline entry point: evaluate the model (or the `compare` list) on lm-eval's tasks into `config.out`."""
    from amauta.core.outdir import claim

    version = require_lm_eval()
    specs, load_kwargs = config.model_specs(), config.load_kwargs()
    tasks = TaskSet(config)
    with claim(config.out, STAGE, subfolders=("results", "samples", "cache")) as folder:
        folder.start(config, tasks.data_files)
        return _run(config, tasks, specs, load_kwargs, version, loader or default_loader, show_progress)


def _run(config: HarnessConfig, tasks: TaskSet, specs: list[ModelSpec], load_kwargs: dict[str, Any], version: str,
         loader: Callable[..., Any], show_progress: bool) -> Path:
    from amauta.core.console import make_console
    from amauta.core.manifest import write_manifest

    out = Path(config.out)
    console = make_console(stderr=True)
    models = []
    for spec in specs:
        spec_load_kwargs, numerics = eval_numerics(spec, load_kwargs, config.batch_size)
        keys = {name: cache_key(spec, task_key(config, tasks, name, version), numerics) for name in config.tasks}
        units = {name: read_unit(out, spec.label, name, keys[name]) for name in config.tasks}
        todo = [name for name, unit in units.items() if unit is None]
        started = time.perf_counter()
        if todo:
            loaded = loader(spec, **spec_load_kwargs)
            with _quiet_lm_eval(show_progress, offline=tasks.local_only or _hub_offline()):
                hflm = wrap_model(loaded, config)
                for n, name in enumerate(todo, start=1):
                    if show_progress:
                        console.print(f"lm-eval · {spec.label} · {name} ({n}/{len(todo)})", highlight=False)
                    units[name] = evaluate_unit(hflm, tasks, name, config, out, spec.label, keys[name], version)
            del hflm, loaded
        models.append({"label": spec.label, "model": spec.model, "adapter": spec.adapter, "numerics": numerics,
                       "keys": keys, "computed": todo, "seconds": round(time.perf_counter() - started, 2),
                       "units": units})
    summary = build_summary(config, version, models, out)
    atomic_write_json(out / SUMMARY_FILE, summary)
    write_manifest(out, stage=STAGE, config=config, inputs=list(tasks.data_files),
                   models=[s.__dict__ for s in specs], load=load_kwargs)
    return out


# --------------------------------------------------------------------------- summary and comparisons

def split_metrics(results: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """lm-eval's `{"acc,none": v, "acc_stderr,none": s}` → `{"acc": {"value": v, "stderr": s}}`.

    A metric behind a filter other than `none` keeps it in its name (`exact_match,strict-match`).
    """
    metrics: dict[str, dict[str, Any]] = {}
    for raw, value in results.items():
        if "," not in raw or not isinstance(value, (int, float)) or isinstance(value, bool):
            continue
        name, _, filt = raw.partition(",")
        if name.endswith("_stderr"):
            continue
        metric = name if filt == "none" else f"{name},{filt}"
        stderr = results.get(f"{name}_stderr,{filt}")
        metrics[metric] = {"value": value, "stderr": stderr if isinstance(stderr, (int, float)) else None}
    return metrics


def build_summary(config: HarnessConfig, version: str, models: list[dict[str, Any]], out: Path) -> dict[str, Any]:
    """summary.json: per task (and subtask) each model's metrics, then the paired differences to the first."""
    tasks: dict[str, dict[str, Any]] = {}
    for model in models:
        for name, unit in model["units"].items():
            for sub, results in (unit.get("results") or {}).items():
                entry = tasks.setdefault(sub, {"requested": name, "version": (unit.get("versions") or {}).get(sub),
                                               "n_shot": (unit.get("n-shot") or {}).get(sub),
                                               "n_samples": (unit.get("n-samples") or {}).get(sub),
                                               "higher_is_better": (unit.get("higher_is_better") or {}).get(sub),
                                               "subtasks": (unit.get("group_subtasks") or {}).get(sub), "models": {}})
                entry["models"][model["label"]] = {"metrics": split_metrics(results),
                                                   "samples_file": unit["samples_files"].get(sub),
                                                   "results_file": str(results_path(out, model["label"], name,
                                                                                    unit["key"]).relative_to(out))}
    return {
        "task": TASK,
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "lm_eval_version": version,
        "task_config": {"tasks": config.tasks, "limit": config.limit, "num_fewshot": config.num_fewshot,
                        "apply_chat_template": config.apply_chat_template, "include_path": config.include_path,
                        "data": config.data},
        "models": [{k: m[k] for k in ("label", "model", "adapter", "numerics", "keys", "computed", "seconds")}
                   for m in models],
        "tasks": tasks,
        "comparisons": compare_models(models, tasks, out),
        "items_file": "samples",  # where the report says the per-item rows are
    }


def _per_item(out: Path, samples_file: str | None, metric: str) -> dict[str, float]:
    """(doc id, filter) → the metric's per-item value, from a samples file; {} when it has no such values."""
    if not samples_file:
        return {}
    name, _, filt = metric.partition(",")
    values = {}
    for line in (out / samples_file).read_text(encoding="utf-8").splitlines():
        row = json.loads(line)
        if filt and row.get("filter") != filt:
            continue
        value = row.get(name)
        if isinstance(value, bool):
            value = float(value)
        if not isinstance(value, (int, float)):
            return {}  # a corpus metric (tuples for BLEU, F1 pairs): no per-item difference
        values[f"{row.get('doc_id')}|{row.get('filter')}"] = float(value)
    return values


def compare_models(models: list[dict[str, Any]], tasks: dict[str, dict[str, Any]], out: Path) -> list[dict[str, Any]]:
    """Each model against the first, per subtask and metric, paired on the items both answered."""
    if len(models) < 2:
        return []
    reference = models[0]["label"]
    comparisons = []
    for sub, entry in tasks.items():
        base = entry["models"].get(reference)
        if not base or not base.get("samples_file"):
            continue
        for other in models[1:]:
            mine = entry["models"].get(other["label"])
            if not mine:
                continue
            for metric in base["metrics"]:
                comparison = paired(_per_item(out, base["samples_file"], metric),
                                    _per_item(out, mine.get("samples_file"), metric))
                if comparison:
                    comparisons.append({"task": sub, "metric": metric, "base": reference, "other": other["label"],
                                        **comparison})
    return comparisons


def paired(base: dict[str, float], other: dict[str, float]) -> dict[str, Any] | None:
    """The paired difference other - base on shared items: flips and McNemar for 0/1 values, else a bootstrap."""
    shared = [i for i in base if i in other]
    if not shared:
        return None
    if all(base[i] in (0.0, 1.0) and other[i] in (0.0, 1.0) for i in shared):
        return stats.paired_flips({i: bool(base[i]) for i in shared}, {i: bool(other[i]) for i in shared})
    diffs = [other[i] - base[i] for i in shared]
    low, high = stats.bootstrap_ci(diffs)
    return {"n": len(shared), "delta": sum(diffs) / len(diffs), "delta_ci": [low, high]}
