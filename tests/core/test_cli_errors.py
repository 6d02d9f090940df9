"""The `amauta` command as a person runs it: every handled error, a mistyped option included, is one line
`error: ...` on stderr and exit code 2, never click's "Usage: ... Error: ..." block nor a traceback."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

PNG = b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00\x00\x10"


def amauta(*args: str, cwd=None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "amauta.cli", *args], capture_output=True, text=True, timeout=300,
                          cwd=cwd)


def error_line(run: subprocess.CompletedProcess) -> str:
    """The one line of stderr, checked to be `error: ...` with exit code 2."""
    lines = [line for line in run.stderr.splitlines() if line.strip()]
    assert run.returncode == 2, run.stderr
    assert len(lines) == 1 and lines[0].startswith("error: "), run.stderr
    assert "Error:" not in run.stderr and "Traceback" not in run.stderr and "Usage:" not in run.stderr
    return lines[0]


@pytest.mark.parametrize("args, message", [
    (["data", "prepare", "x.yaml", "--bogus"], "No such option: --bogus"),
    (["data", "prepare"], "Missing argument 'config'"),
    (["eval", "belebele", "--limit", "muchos"], "Invalid value for '--limit'"),
    (["evaluar"], "No such command 'evaluar'"),
])
def test_usage_errors_are_one_error_line_with_exit_2(args, message):
    line = error_line(amauta(*args))
    assert message.lower() in line.lower() and line.endswith(" --help')")


def test_binary_or_latin1_config_is_one_line_naming_file_and_line(tmp_path):
    config = tmp_path / "prepare.yaml"
    config.write_bytes(PNG)
    assert error_line(amauta("data", "prepare", str(config))).startswith(
        f"error: {config}:1: not UTF-8 text (byte 0x89 at column 1); save the file as UTF-8")
    config.write_bytes("sources:\n  - path: datos.jsonl\n# configuración\n".encode("latin-1"))
    assert error_line(amauta("data", "prepare", str(config))).startswith(
        f"error: {config}:3: not UTF-8 text (byte 0xf3 at column 14)")


def test_eval_belebele_on_a_latin1_file_is_one_line(tmp_path):
    item = {"passage": "El IVA grava el consumo.", "question": "¿Qué grava el IVA?",
            "options": ["el consumo", "la renta", "el patrimonio", "nada"], "gold": "A"}
    data = tmp_path / "belebele.jsonl"
    data.write_bytes(json.dumps(item, ensure_ascii=False).encode("latin-1") + b"\n")
    line = error_line(amauta("eval", "belebele", "--data", str(data), "--model", "tiny-llama", "--out",
                             str(tmp_path / "eval")))
    assert line.startswith(f"error: {data}:1: not UTF-8 text (byte 0xbf at column ")


def test_a_message_with_brackets_is_printed_as_it_is(tmp_path):
    """Rich would read '[red]' in a path as markup and drop it: the message is printed as text."""
    missing = tmp_path / "[red]config[/red].yaml"
    assert error_line(amauta("data", "prepare", str(missing))) == f"error: {missing}: config file not found"
