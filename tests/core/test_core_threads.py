"""`--threads N` (on `amauta` or on each command that runs a model) and AMAUTA_THREADS set torch's threads."""

from __future__ import annotations

import click
import pytest
import torch
import typer
from typer.testing import CliRunner

from amauta.cli import app
from amauta.core.errors import AmautaError
from amauta.core.threads import THREADS_ENV, apply_threads

runner = CliRunner()

# Every command that runs a model (a language model or an embedder).
MODEL_COMMANDS = [("generate",), ("chat",), ("serve",), ("train",), ("run",), ("eval", "belebele"),
                  ("eval", "perplexity"), ("eval", "xquad"), ("eval", "mgsm"), ("eval", "judge"),
                  ("data", "build-qa"), ("rag", "ask"), ("rag", "index")]


@pytest.fixture()
def threads_restored(monkeypatch):
    """Starts every test at 3 torch threads (so setting 1 is seen) and gives the suite its own count back."""
    monkeypatch.delenv(THREADS_ENV, raising=False)
    before = torch.get_num_threads()
    torch.set_num_threads(3)
    yield
    torch.set_num_threads(before)


def _generate(*extra: str, root: tuple[str, ...] = ()):
    argv = [*root, "generate", "-m", "tiny-llama", "-s", "greedy", "-n", "1", "--json", "--raw", *extra, "Hola"]
    result = runner.invoke(app, argv)
    assert result.exit_code == 0, result.output
    return result


@pytest.mark.parametrize("path", MODEL_COMMANDS, ids=" ".join)
def test_every_command_that_runs_a_model_takes_threads(path):
    command = typer.main.get_command(app)
    for name in path:
        command = command.get_command(click.Context(command), name)
    assert any("--threads" in p.opts for p in command.params), f"amauta {' '.join(path)} has no --threads"


def test_the_command_option_sets_torch_threads(threads_restored):
    _generate("--threads", "1")
    assert torch.get_num_threads() == 1


def test_the_root_option_sets_torch_threads(threads_restored):
    _generate(root=("--threads", "1"))
    assert torch.get_num_threads() == 1


def test_the_environment_sets_torch_threads_and_a_flag_wins(threads_restored, monkeypatch):
    monkeypatch.setenv(THREADS_ENV, "1")
    _generate()
    assert torch.get_num_threads() == 1
    _generate("--threads", "2")
    assert torch.get_num_threads() == 2


def test_eval_and_serve_apply_it(threads_restored, tmp_path):
    text = tmp_path / "texto.txt"
    text.write_text("El impuesto al valor agregado grava la transferencia de bienes.\n" * 4, encoding="utf-8")
    result = runner.invoke(app, ["eval", "perplexity", "--model", "tiny-llama", "--data", str(text), "--limit", "1",
                                 "--out", str(tmp_path / "ppl"), "--no-progress", "--threads", "1"])
    assert result.exit_code == 0, result.output
    assert torch.get_num_threads() == 1
    torch.set_num_threads(3)
    result = runner.invoke(app, ["serve", "--backend", "vllm", "--model", "mistral-7b", "--dry-run", "--threads", "2"])
    assert result.exit_code == 0, result.output
    assert torch.get_num_threads() == 2


def test_nothing_asked_leaves_torch_alone(threads_restored):
    assert apply_threads(None) is None
    assert torch.get_num_threads() == 3


@pytest.mark.parametrize("value", ["0", "dos", "-1"])
def test_a_bad_count_is_one_line(threads_restored, monkeypatch, value):
    monkeypatch.setenv(THREADS_ENV, value)
    with pytest.raises(AmautaError, match=f"{THREADS_ENV}=.*1 or more") as info:
        apply_threads(None)
    assert "\n" not in str(info.value)
    with pytest.raises(AmautaError, match="--threads 0: give 1 or more"):
        apply_threads(0)
    assert torch.get_num_threads() == 3
