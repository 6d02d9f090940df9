"""Command-line options derived from the configs (core/cli_options.py): one source for a field's flag, type,
default and help; YAML first, flags over it, `--set` over both; every config-backed command uses it."""

from __future__ import annotations

import ast
import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Literal

import pytest
import typer
from pydantic import Field
from rich.markup import escape
from typer.testing import CliRunner

from amauta.cli import app
from amauta.core.cli_options import ConfigArgs, Flag, config_options
from amauta.core.config import StageConfig

SRC = Path(__file__).resolve().parents[2] / "src" / "amauta"
runner = CliRunner()


class Section(StageConfig):
    size: int = Field(3, description="How big.")
    name: str = Field("x", description="What it is called.")


class Toy(StageConfig):
    docs: list[str] = Field(min_length=1, description="Files to read.")
    batch_size: int = Field(8, ge=1, description="Items per step.")
    out: Path = Field(Path("runs/toy"), description="Where it goes.")
    mode: Literal["fast", "slow"] = Field("fast", description="How to go.")
    verbose: bool = Field(False, description="Say more.")
    tags: list[str] = Field(default_factory=lambda: ["a"], description="Labels.")
    steps: int | Literal["auto"] = Field("auto", description="Steps, or auto.")
    section: Section = Field(default_factory=Section, description="A nested section.")


def toy_app(flags=None, **options) -> tuple[typer.Typer, list]:
    """An app whose one command records the config it was given (and its own --extra)."""
    seen: list = []
    toy = typer.Typer()

    @toy.command()
    @config_options(Toy, flags or {"docs": Flag(argument=True), "batch_size": "-b", "out": "-o"}, **options)
    def run(config: ConfigArgs, extra: bool = typer.Option(False, "--extra", help="Not a config key.")) -> None:
        """Run the toy."""
        seen.append((config.load(missing={"docs": "no docs; pass DOCS..."}), extra))

    @toy.callback()
    def _root() -> None:  # keeps `run` a subcommand, as the stages' commands are
        pass

    return toy, seen


def test_flags_parse_into_the_config_with_its_types():
    toy, seen = toy_app()
    result = runner.invoke(toy, ["run", "a.txt", "b.txt", "-b", "4", "-o", "elsewhere", "--mode", "slow",
                                 "--verbose", "--tags", "x, y,,z", "--steps", "12", "--extra"])
    assert result.exit_code == 0, result.output
    cfg, extra = seen[0]
    assert (cfg.docs, cfg.batch_size, cfg.out, cfg.mode, cfg.verbose, cfg.tags, cfg.steps, extra) == \
        (["a.txt", "b.txt"], 4, Path("elsewhere"), "slow", True, ["x", "y", "z"], 12, True)
    assert cfg.section == Section()  # untouched: the class's defaults


def test_yaml_first_then_flags_then_set(tmp_path):
    path = tmp_path / "toy.yaml"
    path.write_text("docs: [from-yaml]\nbatch_size: 2\nverbose: true\nsection:\n  size: 5\n  name: yaml\n")
    toy, seen = toy_app()
    result = runner.invoke(toy, ["run", "--config", str(path), "--batch-size", "6", "--no-verbose",
                                 "--set", "section.size=7", "--set", "batch_size=9"])
    assert result.exit_code == 0, result.output
    cfg = seen[0][0]
    assert (cfg.docs, cfg.batch_size, cfg.verbose, cfg.section.size, cfg.section.name) == \
        (["from-yaml"], 9, False, 7, "yaml")
    runner.invoke(toy, ["run", "-c", str(path)])  # nothing on the command line: the file as it is
    assert (seen[1][0].batch_size, seen[1][0].verbose) == (2, True)


def test_bad_values_are_refused_before_the_command_runs():
    toy, seen = toy_app()
    assert runner.invoke(toy, ["run", "a", "--mode", "medium"]).exit_code == 2  # not one of the choices
    assert runner.invoke(toy, ["run", "a", "--batch-size", "many"]).exit_code == 2
    result = runner.invoke(toy, ["run", "a", "--batch-size", "0"])  # pydantic's bound, as one line
    assert "'batch_size': Input should be greater than or equal to 1" in str(result.exception)
    result = runner.invoke(toy, ["run"])
    assert str(result.exception) == "no docs; pass DOCS..."
    assert seen == []


def test_help_shows_each_description_and_default():
    toy, _ = toy_app()
    output = runner.invoke(toy, ["run", "--help"], env={"COLUMNS": "240"}).output
    text = " ".join(re.sub(r"[│╭╮╰╯─]", " ", output).split())
    for needle in ("Items per step.", "[default: (8)]", "Where it goes.", "[default: (runs/toy)]", "--mode",
                   "fast|slow", "--verbose --no-verbose", "Labels. Comma-separated.", "[default: (a)]",
                   "--set KEY=VALUE", "e.g. --set section.size=3", "--extra", "Not a config key."):
        assert needle in text, needle


def test_a_field_mapped_to_none_has_no_flag_and_a_nested_one_can_have_one():
    toy, seen = toy_app({"docs": Flag(argument=True), "tags": None, "section.name": ("--section-name", "-n")})
    assert runner.invoke(toy, ["run", "a", "--tags", "x"]).exit_code == 2
    result = runner.invoke(toy, ["run", "a", "-n", "short"])
    assert result.exit_code == 0, result.output
    assert seen[0][0].section.name == "short"


def test_a_misspelt_field_in_the_flags_mapping_fails_at_import():
    with pytest.raises(ValueError, match="Toy has no field batch"):
        config_options(Toy, {"batch": "-b"})


# --------------------------------------------------------------------------------------------------------
# The real commands

def _commands(command, path=()):
    found = {" ".join(path): command}
    for name, sub in (getattr(command, "commands", None) or {}).items():
        found.update(_commands(sub, (*path, name)))
    return found


def _configs() -> dict[str, type]:
    """Command → the config its options come from."""
    from amauta.chat.decoding import GenerationSettings
    from amauta.data.augment import AugmentConfig
    from amauta.data.build_exam import BuildExamConfig
    from amauta.data.build_qa import BuildQAConfig
    from amauta.data.preferences import PreferencesConfig
    from amauta.data.prepare import PrepareConfig
    from amauta.evaluate.belebele import BelebeleConfig
    from amauta.evaluate.exam import ExamConfig
    from amauta.evaluate.mgsm import MgsmConfig
    from amauta.evaluate.perplexity import PerplexityConfig
    from amauta.evaluate.xquad import XquadConfig
    from amauta.judge.judge import JudgeConfig
    from amauta.rag.index import IndexConfig
    from amauta.report.report import ReportConfig
    from amauta.serve.config import ServeConfig
    from amauta.train.config import TrainConfig

    return {"eval belebele": BelebeleConfig, "eval perplexity": PerplexityConfig, "eval xquad": XquadConfig,
            "eval mgsm": MgsmConfig, "eval exam": ExamConfig, "eval judge": JudgeConfig, "train": TrainConfig, "data prepare": PrepareConfig,
            "data build-qa": BuildQAConfig, "data build-exam": BuildExamConfig, "data augment": AugmentConfig,
            "data preferences": PreferencesConfig, "rag index": IndexConfig, "report": ReportConfig, "serve": ServeConfig,
            "generate": GenerationSettings, "chat": GenerationSettings}


# Fields no flag can carry (nested sections, a list of sources): `--set` or the YAML file reaches them.
SECTIONS = {"quantization", "lora", "optimizer", "guard", "early_stopping", "preference", "clean", "split", "sources",
            "llm"}
# Fields a command leaves off on purpose (the YAML file still sets them): perplexity scores raw text, with no
# chat prompt for a system prompt to go in.
LEFT_OFF = {("eval perplexity", "system_prompt")}


TREE = _commands(typer.main.get_command(app))


@pytest.mark.parametrize("path", sorted(_configs()))
def test_every_flat_field_of_a_command_config_is_an_option_with_its_description(path):
    """No option list is a hand copy of its config: each field's parameter carries the field's own help."""
    cls = _configs()[path]
    params = {p.name: p for p in TREE[path].params}
    for name, info in cls.model_fields.items():
        if (name in SECTIONS and path != "serve") or (path, name) in LEFT_OFF:
            continue
        assert name in params, f"`amauta {path}` has no option for {cls.__name__}.{name}"
        assert params[name].help and params[name].help.startswith(escape(info.description)), (path, name)


def test_help_of_a_command_shows_its_config_fields_descriptions():
    from amauta.evaluate.belebele import BelebeleConfig

    result = runner.invoke(app, ["eval", "belebele", "--help"], env={"COLUMNS": "240"})
    text = " ".join(re.sub(r"[│╭╮╰╯─]", " ", result.output).split())
    for name in ("data", "formulation", "shots_from", "compare", "batch_size"):
        assert BelebeleConfig.model_fields[name].description in text, name


def test_the_cli_starts_without_torch_transformers_numpy_or_fastapi():
    """The options come from the config classes, so importing them may not pull the heavy libraries in."""
    code = ("import sys, typer, amauta.cli; typer.main.get_command(amauta.cli.app); "
            "print(sorted(m for m in ('torch', 'transformers', 'fastapi', 'peft', 'datasets', 'numpy') "
            "if m in sys.modules))")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True)
    assert proc.stdout.strip() == "[]"


def test_config_fields_are_documented_with_field_description_only():
    """One style: an attribute docstring under a config field would be silently ignored by pydantic."""
    for path in SRC.rglob("*.py"):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if not isinstance(node, ast.ClassDef) or not any(getattr(b, "id", "").endswith("Config") or
                                                             getattr(b, "id", "") == "StageConfig"
                                                             for b in node.bases):
                continue
            for field_node, after in zip(node.body, node.body[1:], strict=False):
                docstring = isinstance(after, ast.Expr) and isinstance(getattr(after, "value", None), ast.Constant)
                assert not (isinstance(field_node, ast.AnnAssign) and docstring), \
                    f"{path.name}:{after.lineno}: use Field(description=...) for {node.name}'s field"


def test_generate_with_another_strategy_keeps_that_strategys_own_top_k(monkeypatch):
    """A flag left out is not passed as None: `from_profile` then drops the profile's contrastive top_k (4)
    for sampling, which uses its own (50), as chat/decoding.py promises."""
    from amauta.chat import generate as gen

    seen = []
    real = gen.Generation
    monkeypatch.setattr(gen, "Generation", lambda loaded, request, settings: seen.append(settings) or
                        real(loaded, request, settings))
    result = runner.invoke(app, ["generate", "-m", "tiny-llama", "-s", "sampling", "-n", "2", "--json", "hola"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.output.strip().splitlines()[-1])["strategy"] == "sampling"
    assert (seen[0].top_k, seen[0].effective_top_k) == (None, 50)


def test_dtype_device_and_quantization_fields_use_the_shared_literals():
    """One source for their choices: every config's dtype, device and quantization field is typed with
    `amauta.models.types`' DType, Device and Quantization (a hand-written Literal or a plain str would drift)."""
    shared = {"dtype": "DType", "device": "Device", "quantization": "Quantization"}
    checked = []
    for path in SRC.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if not isinstance(node, ast.ClassDef) or not any(getattr(b, "id", "").endswith("Config") for b in node.bases):
                continue
            for field_node in node.body:
                if not isinstance(field_node, ast.AnnAssign) or not isinstance(field_node.target, ast.Name):
                    continue
                name, annotation = field_node.target.id, ast.unparse(field_node.annotation)
                if name in shared and not annotation.endswith("Config"):  # a nested section has its own fields
                    assert annotation == shared[name], f"{path.name}: {node.name}.{name} is {annotation}"
                    checked.append(f"{node.name}.{name}")
    assert {"EvalModelsConfig.dtype", "ExamConfig.device", "DemoConfig.dtype", "ServeConfig.quantization",
            "TrainConfig.dtype", "JudgeConfig.quantization"} <= set(checked)
    from amauta.models.types import Quantization
    from amauta.train.config import QuantizationConfig

    assert QuantizationConfig.model_fields["mode"].annotation is Quantization


@pytest.mark.parametrize("command", [["eval", "exam"], ["eval", "belebele"], ["serve"], ["generate", "hola"]])
def test_a_dtype_outside_the_shared_choices_is_refused_before_anything_loads(command):
    result = runner.invoke(app, [*command, "--dtype", "fp32"])
    assert result.exit_code == 2
    assert "fp32" in result.output and "float32" in result.output  # names the bad value and the choices


def test_eval_exam_options_come_from_exam_config_with_its_yaml(tmp_path, monkeypatch):
    """`eval exam --config exam.yaml --limit 3 ...`: the file's keys, the flags over them, validated as ExamConfig."""
    from amauta.evaluate import exam
    from amauta.evaluate import runner as eval_runner

    seen = []
    monkeypatch.setattr(exam, "run", lambda cfg, show_progress: seen.append((cfg, show_progress)) or tmp_path)
    monkeypatch.setattr(eval_runner, "load_summary", lambda folder: {})
    monkeypatch.setattr(exam, "print_exam_summary", lambda summary, out: None)
    (tmp_path / "exam.yaml").write_text("split: dev\nlimit: 10\ncandidates: base,runs/a\ndtype: float32\n",
                                        encoding="utf-8")
    result = runner.invoke(app, ["eval", "exam", "--config", str(tmp_path / "exam.yaml"), "--limit", "3",
                                 "-m", "tiny-llama", "--no-short-answer", "--no-progress"])
    assert result.exit_code == 0, result.output
    (cfg, progress), = seen
    assert isinstance(cfg, exam.ExamConfig) and progress is False
    assert (cfg.split, cfg.limit, cfg.model, cfg.short_answer, cfg.candidates, cfg.dtype, cfg.options_only) == \
        ("dev", 3, "tiny-llama", False, "base,runs/a", "float32", True)


def test_a_system_prompt_field_is_spelt_system_on_every_command():
    """`system_prompt` (eval, data prepare, train) takes the `--system` of chat, generate and serve."""
    found = [path for path, command in TREE.items() for p in command.params if p.name == "system_prompt"]
    assert {"eval belebele", "data prepare", "train"} <= set(found)
    for path in found:
        (param,) = [p for p in TREE[path].params if p.name == "system_prompt"]
        assert param.opts == ["--system"], (path, param.opts)
