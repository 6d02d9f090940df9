"""`amauta models`, `models show`, `models convert`: what a person types."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from typer.testing import CliRunner

from amauta.cli import app

runner = CliRunner()


def test_models_lists_the_registry():
    result = runner.invoke(app, ["models"], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    for name in ("llama2-7b-chat", "mistral-7b-instruct", "falcon-7b", "mixtral-8x7b", "smollm2-135m-instruct"):
        assert name in result.output
    assert "tiny-llama" not in result.output
    assert "query_key_value,dense" in result.output and "2e-05" in result.output


def test_models_json_includes_tiny_with_all():
    result = runner.invoke(app, ["models", "--json", "--all"])
    assert result.exit_code == 0
    rows = {row["name"]: row for row in json.loads(result.output)}
    assert rows["tiny-falcon"]["source"] == "tiny:falcon" and rows["mistral-7b"]["learning_rate"] == 2e-5


def test_models_show():
    result = runner.invoke(app, ["models", "show", "falcon-7b-instruct"])
    assert result.exit_code == 0 and "\\nUser:" in result.output


@pytest.mark.parametrize("argv, message", [
    (["models", "show", "falcn-7b"], "unknown model 'falcn-7b' (did you mean: falcon-7b"),
    (["models", "convert", "falcon-7b"], "falcon-7b is not an embedded model"),
    (["models", "convert", "nada.gguf"], "nada.gguf: file not found"),
])
def test_bad_input_is_one_line_exit_2(argv, message):
    # Through the real console script path: one line on stderr, exit code 2, no traceback.
    proc = subprocess.run([sys.executable, "-c", "from amauta.cli import main; main()", *argv],
                          capture_output=True, text=True, env={"COLUMNS": "300", "PATH": ""}, timeout=120)
    assert proc.returncode == 2, proc.stderr
    assert message in proc.stderr and "Traceback" not in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1
