"""Run a YAML list of stages — what `make demo` runs.

A pipeline file names steps; each step `uses` a stage's entry point and passes it a config (`with`).
Each entry point is a plain function `run(config) -> Path` whose `config` parameter is typed with the
stage's pydantic config class, so the runner validates `with` against that class and needs no table of
config names. `${out}` in any string is replaced by the pipeline's output folder, `${steps.NAME}` by the
folder an earlier step wrote.

A finished step is recorded in `<out>/pipeline-state.json` with a hash of its config; rerunning the
pipeline skips it while its config is unchanged and its output still exists, so a killed demo resumes
where it stopped. A step run again (its config changed, or `--force`) gets `overwrite=True` when its entry
point takes it: it may replace the folder of its own stage it wrote before, and nothing else (core/outdir.py).
"""

from __future__ import annotations

import hashlib
import importlib
import inspect
import json
import re
import time
import typing
from pathlib import Path
from typing import Any

import typer
from pydantic import Field

from amauta.core.config import StageConfig, read_yaml, validate_config
from amauta.core.console import make_console
from amauta.core.errors import AmautaError, did_you_mean
from amauta.core.files import atomic_write_json
from amauta.core.manifest import write_manifest
from amauta.core.outdir import claim
from amauta.core.threads import THREADS_OPTION, apply_threads

console = make_console()

# Step names a pipeline file may use → "module:function". The function's `config` annotation gives the config class.
ENTRY_POINTS: dict[str, str] = {
    "data.prepare": "amauta.data.prepare:run",
    "data.build_qa": "amauta.data.build_qa:run",
    "train": "amauta.train.recipe:run",
    "eval.belebele": "amauta.evaluate.belebele:run",
    "eval.judge": "amauta.judge.judge:run",
    "eval.perplexity": "amauta.evaluate.perplexity:run",
    "eval.xquad": "amauta.evaluate.xquad:run",
    "eval.mgsm": "amauta.evaluate.mgsm:run",
    "eval.exam": "amauta.evaluate.exam:run",
    "chat.demo": "amauta.chat.demo:run",
    "rag.index": "amauta.rag.index:run",
    "report": "amauta.report.report:run",
}


class Step(StageConfig):
    """One step of a pipeline."""

    name: str = Field(description="A short name, unique in the file; later steps refer to it as ${steps.NAME}.")
    uses: str = Field(description="The stage entry point: one of ENTRY_POINTS.")
    with_: dict[str, Any] = Field(default_factory=dict, alias="with", description="The stage's config.")


class PipelineConfig(StageConfig):
    """A pipeline file: a name, an output folder and the steps in order."""

    name: str = "pipeline"
    out: str = Field("runs/pipeline", description="Folder for every step's output and the pipeline state.")
    steps: list[Step]


def _entry_point(uses: str):
    if uses not in ENTRY_POINTS:
        raise AmautaError(f"unknown step '{uses}'{did_you_mean(uses, ENTRY_POINTS)}; known: {', '.join(ENTRY_POINTS)}")
    module_name, function_name = ENTRY_POINTS[uses].split(":")
    function = getattr(importlib.import_module(module_name), function_name)
    config_class = typing.get_type_hints(function)["config"]
    return function, config_class


def _substitute(value: Any, variables: dict[str, str]) -> Any:
    """Replace ${name} in every string inside `value` (lists and mappings included)."""
    if isinstance(value, str):
        def lookup(match: re.Match) -> str:
            key = match.group(1)
            if key not in variables:
                raise AmautaError(f"unknown variable ${{{key}}}{did_you_mean(key, variables)}")
            return variables[key]

        return re.sub(r"\$\{([^}]+)\}", lookup, value)
    if isinstance(value, list):
        return [_substitute(v, variables) for v in value]
    if isinstance(value, dict):
        return {k: _substitute(v, variables) for k, v in value.items()}
    return value


def _config_hash(uses: str, config: dict) -> str:
    return hashlib.sha256(json.dumps([uses, config], sort_keys=True, default=str).encode()).hexdigest()[:16]


def run_pipeline(path: str | Path, *, only: list[str] | None = None, force: bool = False) -> Path:
    """Run the pipeline file at `path`; return its output folder.

    path: the pipeline YAML.
    only: run just these step names (their inputs must exist already).
    force: rerun steps even when the state says they are done.
    """
    config = validate_config(PipelineConfig, read_yaml(path), source=str(path))
    names = [step.name for step in config.steps]
    if len(set(names)) != len(names):
        raise AmautaError(f"{path}: step names must be unique (got {', '.join(names)})")
    for name in only or []:
        if name not in names:
            raise AmautaError(f"{path}: no step named '{name}'{did_you_mean(name, names)}")
    out = Path(config.out)
    # The pipeline's folder follows the output-folder rule (core/outdir.py) like every step's own folder.
    with claim(out, "pipeline", legacy=lambda folder: (folder / "pipeline-state.json").is_file()) as folder:
        folder.start(config)
        return _run_steps(path, config, out, only=only, force=force)


def _run_steps(path: str | Path, config: PipelineConfig, out: Path, *, only: list[str] | None, force: bool) -> Path:
    """The steps of `run_pipeline`, while it holds `out`."""
    state_path = out / "pipeline-state.json"
    state = json.loads(state_path.read_text()) if state_path.is_file() else {}
    variables = {"out": str(out)}
    started = time.time()

    for index, step in enumerate(config.steps, start=1):
        function, config_class = _entry_point(step.uses)
        raw = _substitute(step.with_, variables)
        step_config = validate_config(config_class, raw, source=f"{path}: step '{step.name}'")
        digest = _config_hash(step.uses, step_config.model_dump(mode="json"))
        done = state.get(step.name, {})
        header = f"[{index}/{len(config.steps)}] {step.name} ({step.uses})"
        skip_by_choice = only is not None and step.name not in only
        if skip_by_choice or (not force and done.get("hash") == digest and Path(done.get("out", "")).exists()):
            if done.get("out"):
                variables[f"steps.{step.name}"] = done["out"]
            console.rule(f"[dim]{header}: {'skipped' if skip_by_choice else 'done already'}")
            continue
        console.rule(f"[bold]{header}")
        step_started = time.time()
        # A step this pipeline ran before may replace its own earlier output (its config changed, or --force).
        options = {"overwrite": True} if (force or done) and "overwrite" in inspect.signature(function).parameters else {}
        result_path = str(Path(function(step_config, **options)))  # the contract: a stage returns its output folder (or file)
        variables[f"steps.{step.name}"] = result_path
        state[step.name] = {"uses": step.uses, "hash": digest, "out": result_path,
                            "seconds": round(time.time() - step_started, 1)}
        atomic_write_json(state_path, state)

    write_manifest(out, "pipeline", config, complete=True, steps=state)
    console.rule(f"[green]{config.name}: finished in {time.time() - started:.0f} s; outputs in {out}")
    return out


def register(app: typer.Typer) -> None:
    """Add `amauta run` to the CLI."""

    @app.command("run")
    def run_command(
        pipeline: Path = typer.Argument(..., help="Pipeline YAML, e.g. examples/quickstart.yaml."),
        only: list[str] = typer.Option(None, "--only", help="Run only this step (repeatable)."),
        force: bool = typer.Option(False, "--force", help="Rerun steps that are already done."),
        threads: int | None = THREADS_OPTION,
    ) -> None:
        """Run a pipeline of stages (data → train → evaluate → report) from a YAML file."""
        apply_threads(threads)
        run_pipeline(pipeline, only=only or None, force=force)
