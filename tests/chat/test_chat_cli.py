"""`amauta generate` and `amauta chat` as a person types them."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from typer.testing import CliRunner

from amauta.cli import app
from amauta.core.errors import AmautaError

runner = CliRunner()


@pytest.mark.parametrize("strategy", ["greedy", "sampling", "beam", "contrastive"])
def test_generate_json(strategy):
    result = runner.invoke(app, ["generate", "--model", "tiny-mistral", "--strategy", strategy, "--max-new-tokens", "5",
                                 "--json", "--system", "Responde en español.", "¿Qué es el IVA?"])
    assert result.exit_code == 0, result.output
    row = json.loads(result.output.strip().splitlines()[-1])
    assert row["strategy"] == strategy and 1 <= row["tokens"] <= 5 and row["tokens_per_second"] > 0
    assert set(row) >= {"text", "tokens", "seconds", "tokens_per_second", "finish_reason"}


def test_generate_json_never_ends_in_half_a_character(monkeypatch):
    from amauta.chat import generate as gen
    from amauta.models.load import load_tokenizer

    tokenizer, _ = load_tokenizer("tiny-llama")
    ids = [tokenizer.convert_tokens_to_ids(p) for p in ["h", "o", "Ã"]]  # "ho" + the first byte of "ñ"
    monkeypatch.setattr(gen, "token_steps", lambda *a, **k: iter(ids))
    result = runner.invoke(app, ["generate", "-m", "tiny-llama", "-s", "greedy", "-n", "3", "--json", "--raw", "x"])
    assert result.exit_code == 0, result.output
    row = json.loads(result.output.strip().splitlines()[-1])
    assert row["text"] == "ho" and row["tokens"] == 3 and row["finish_reason"] == "length"


def test_generate_prints_text_and_reads_stdin():
    result = runner.invoke(app, ["generate", "-m", "tiny-llama", "-s", "greedy", "-n", "4", "--raw", "-"],
                           input="Hola")
    assert result.exit_code == 0, result.output
    assert "tokens" in result.output and "greedy" in result.output


def test_chat_reads_commands_from_stdin():
    result = runner.invoke(app, ["chat", "--model", "tiny-falcon", "--strategy", "greedy", "-n", "4",
                                 "--system", "Eres breve."], input="Hola\n/strategy beam\nOtra vez\n/exit\n")
    assert result.exit_code == 0, result.output
    assert "Amauta chat · tiny-falcon · greedy" in result.output
    assert "· greedy" in result.output and "· beam" in result.output


@pytest.mark.parametrize("argv, message", [
    (["generate", "--model", "tiny-lama", "hola"], "tiny-lama"),
    (["generate", "--model", "tiny-llama", "   "], "the prompt is empty"),
    (["generate", "--model", "tiny-llama", "--raw", "--system", "x", "hola"], "--system needs the chat template"),
    (["generate", "--model", "tiny-llama", "--raw", "palabra " * 600], "but the model's context holds 512"),
    (["chat", "--model", "tiny-llama", "--strategy", "bean"], "unknown decoding strategy 'bean' (did you mean: beam"),
])
def test_bad_input_raises_one_line(argv, message):
    result = runner.invoke(app, argv)
    assert isinstance(result.exception, AmautaError), result.output
    assert message in str(result.exception) and "\n" not in str(result.exception)


def test_bad_input_through_the_console_script_is_exit_2():
    # The real entry point: one line on stderr, exit code 2, no traceback.
    argv = ["generate", "--model", "tiny-llama", "--strategy", "contrastiv", "hola"]
    proc = subprocess.run([sys.executable, "-c", "from amauta.cli import main; main()", *argv], capture_output=True,
                          text=True, env={"COLUMNS": "300", "PATH": "", "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"},
                          timeout=180)
    assert proc.returncode == 2, proc.stderr
    assert "unknown decoding strategy 'contrastiv' (did you mean: contrastive" in proc.stderr
    assert "Traceback" not in proc.stderr and len(proc.stderr.strip().splitlines()) == 1
