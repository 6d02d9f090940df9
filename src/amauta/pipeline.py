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

import contextlib
import hashlib
import importlib
import inspect
import json
import re
import sys
import time
import typing
from pathlib import Path
from typing import Any

import typer
from pydantic import Field
from rich.markup import escape

from amauta.core import logs
from amauta.core.config import StageConfig, read_yaml, validate_config
from amauta.core.console import make_console
from amauta.core.errors import AmautaError, did_you_mean
from amauta.core.files import atomic_write_json
from amauta.core.manifest import write_manifest
from amauta.core.outdir import claim
from amauta.core.threads import THREADS_OPTION, apply_threads

# Step names a pipeline file may use → "module:function". The function's `config` annotation gives the config class.
ENTRY_POINTS: dict[str, str] = {
    "data.prepare": "amauta.data.prepare:run",
    "data.build_qa": "amauta.data.build_qa:run",
    "data.build_exam": "amauta.data.build_exam:run",
    "data.preferences": "amauta.data.preferences:run",
    "data.augment": "amauta.data.augment:run",
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


def run_pipeline(path: str | Path, *, only: list[str] | None = None, force: bool = False,
                 verbose: bool | None = None) -> Path:
    """Run the pipeline file at `path`; return its output folder.

    path: the pipeline YAML.
    only: run just these step names (their inputs must exist already).
    force: rerun steps even when the state says they are done.
    verbose: show every step's own output and the libraries' (default: `--verbose` / AMAUTA_VERBOSE);
        otherwise the screen shows one line per step and a closing summary, the rest goes to `out/amauta.log`.
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
    screen = make_console(file=sys.stdout)  # the screen, also while the steps' own printing goes to the log
    with claim(out, "pipeline", legacy=lambda folder: (folder / "pipeline-state.json").is_file()) as folder:
        folder.start(config)
        started = time.time()
        with logs.capture_libraries(out / logs.LOG_NAME, everything=True, verbose=verbose) as capture:
            state = _run_steps(path, config, out, only=only, force=force, screen=screen, capture=capture)
    _print_closing(screen, config, out, state, time.time() - started, capture)
    return out


def _run_steps(path: str | Path, config: PipelineConfig, out: Path, *, only: list[str] | None, force: bool,
               screen: Any, capture: logs.Capture | None) -> dict[str, Any]:
    """The steps of `run_pipeline`, while it holds `out`; return the pipeline state (step → its folder).

    With a `capture`, each step is one line on `screen` while its own output goes to the log; without
    one (verbose), a rule heads each step's output as before."""
    state_path = out / "pipeline-state.json"
    state = json.loads(state_path.read_text()) if state_path.is_file() else {}
    variables = {"out": str(out)}

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
            _print_skipped(screen, header, "skipped" if skip_by_choice else "done already", done.get("out"), capture)
            continue
        step_started = time.time()
        # A step this pipeline ran before may replace its own earlier output (its config changed, or --force).
        options = {"overwrite": True} if (force or done) and "overwrite" in inspect.signature(function).parameters else {}
        with _step_display(screen, header, capture) as line:
            result_path = str(Path(function(step_config, **options)))  # the contract: a stage returns its folder
            line.result = f"→ {result_path}"
        variables[f"steps.{step.name}"] = result_path
        state[step.name] = {"uses": step.uses, "hash": digest, "out": result_path,
                            "seconds": round(time.time() - step_started, 1)}
        atomic_write_json(state_path, state)

    write_manifest(out, "pipeline", config, complete=True, steps=state)
    return state


def _step_display(screen: Any, header: str, capture: logs.Capture | None) -> Any:
    """The step's one line (captured), or the rule that heads its own output (verbose)."""
    if capture is not None:
        return logs.stage_line(screen, header, capture)
    screen.rule(f"[bold]{header}")
    return contextlib.nullcontext(logs.StageLine(header, None))


def _print_skipped(screen: Any, header: str, why: str, folder: str | None, capture: logs.Capture | None) -> None:
    if capture is None:
        screen.rule(f"[dim]{header}: {why}")
    else:
        screen.print(f"[dim]· {escape(header)}: {why}{f' → {escape(folder)}' if folder else ''}[/]", highlight=False)


def _print_closing(screen: Any, config: PipelineConfig, out: Path, state: dict[str, Any], seconds: float,
                   capture: logs.Capture | None) -> None:
    """The pipeline's last lines: how long it took and what its steps made (report/closing.py)."""
    from amauta.report.closing import closing_summary

    folders = [Path(state[step.name]["out"]) for step in config.steps if state.get(step.name, {}).get("out")]
    screen.rule(f"[green]{escape(config.name)}: finished in {logs.duration(seconds)}")
    log = capture.sink.path if capture is not None else None
    for line in closing_summary(folders, log=log):
        screen.print(line, highlight=False, soft_wrap=True)


def register(app: typer.Typer) -> None:
    """Add `amauta run` to the CLI."""

    @app.command("run")
    def run_command(
        pipeline: Path = typer.Argument(..., help="Pipeline YAML, e.g. examples/quickstart.yaml."),
        only: list[str] = typer.Option(None, "--only", help="Run only this step (repeatable)."),
        force: bool = typer.Option(False, "--force", help="Rerun steps that are already done."),
        threads: int | None = THREADS_OPTION,
        verbose: bool = typer.Option(False, "--verbose", help="Show each step's own output and the libraries' "
                                     "warnings and progress bars (otherwise in OUT/amauta.log)."),
    ) -> None:
        """Run a pipeline of stages (data → train → evaluate → report) from a YAML file."""
        apply_threads(threads)
        run_pipeline(pipeline, only=only or None, force=force, verbose=True if verbose else None)
