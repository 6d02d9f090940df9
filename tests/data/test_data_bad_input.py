"""Broken inputs: one line naming the file, the line or record and what is wrong; --skip-invalid counts and goes on;
nothing partial is written; input files are never modified."""

from __future__ import annotations

import codecs
import json
import subprocess
import sys

import pytest

from amauta.core.errors import AmautaError
from amauta.core.files import sha256_file
from amauta.data.readers import SourceConfig, read_source

GOOD = '{"instruction": "¿Qué es el IVA?", "input": "", "output": "Un impuesto al consumo."}\n'
GOOD2 = '{"instruction": "¿Qué es el RUC?", "input": "", "output": "El registro de contribuyentes."}\n'

# (name, file name, bytes, source options, expected message part, location part, fatal even with skip_invalid)
CASES = [
    ("invalid JSON line", "a.jsonl", (GOOD + '{"instruction": "x", "output": \n' + GOOD2).encode(), {}, "invalid JSON", ":2:", False),
    ("missing field", "a.jsonl", (GOOD + '{"instruction": "x", "outptu": "y"}\n').encode(), {"format": "alpaca"},
     "lacks 'output' (did you mean: outptu?)", ":2:", False),
    ("number instead of text", "a.jsonl", (GOOD + '{"instruction": "x", "output": 42}\n').encode(), {},
     "'output' must be a string, got int 42", ":2:", False),
    ("list instead of text", "a.jsonl", (GOOD + '{"instruction": ["x"], "output": "y"}\n').encode(), {},
     "'instruction' must be a string, got list", ":2:", False),
    ("empty file", "a.jsonl", b"", {}, "file is empty", "a.jsonl:", False),
    ("whitespace only", "a.jsonl", b"\n  \n\t\n", {}, "file is empty", "a.jsonl:", False),
    ("UTF-16 with BOM", "a.jsonl", codecs.BOM_UTF16_LE + GOOD.encode("utf-16-le"), {}, "UTF-16 encoded", "a.jsonl:", False),
    ("UTF-16 without BOM", "a.jsonl", GOOD.encode("utf-16-le"), {}, "NUL bytes", "a.jsonl:", False),
    ("mixed encodings (a Latin-1 line)", "a.jsonl", GOOD.encode() + GOOD2.encode()
     + '{"instruction": "¿Cuál es la tarifa?", "output": "Depende."}\n'.encode("latin-1"), {},
     "not UTF-8 text (byte 0xbf at column 18); save the file as UTF-8", ":3:", False),
    ("10 MB single line", "a.jsonl", GOOD.encode() + b'{"instruction": "' + b"a" * 10_000_000 + b'", "output": "y"}\n', {},
     "line is 10.0 MB long", ":2:", False),
    ("JSON array cut short", "a.json", ('[\n' + GOOD.strip() + ',\n' + GOOD2.strip()[:30]).encode(), {}, "cut short",
     ":3 (record 2)", False),
    ("JSON array without closing bracket", "a.json", ('[\n' + GOOD.strip() + ',\n' + GOOD2.strip()).encode(), {}, "cut short",
     "a.json:", False),
    ("broken element inside an array", "a.json", ('[\n' + GOOD.strip() + ',\n{"instruction": "x" "output": "y"},\n'
                                                  + GOOD2.strip() + "\n]").encode(), {}, "invalid JSON", ":3 (record 2)", False),
    ("text after the array", "a.json", ('[' + GOOD.strip() + ']\nextra').encode(), {}, "after the JSON array", ":2:", False),
    ("duplicate ids", "a.jsonl", ('{"id": "7", ' + GOOD[1:] + '{"id": "7", ' + GOOD2[1:]).encode(), {}, "duplicate id '7'",
     ":2:", False),
    ("record is not an object", "a.jsonl", (GOOD + "[1, 2, 3]\n").encode(), {}, "expected a JSON object", ":2:", False),
    ("unknown keys", "a.jsonl", b'{"pregunta": "x", "respuesta": "y"}\n', {}, "cannot tell the format", ":1:", False),
    ("CSV missing mapped column", "a.csv", b"pregunta,respta\nx,y\n",
     {"columns": {"instruction": "pregunta", "output": "respuesta"}}, "no column 'respuesta'", "a.csv:1:", True),
    ("CSV row with too many fields", "a.csv", b"instruction,output\nx,y\nx,y,z\n", {}, "row has 3 fields", "a.csv:3:",
     False),
    ("chat with an unknown role", "a.jsonl", b'{"messages": [{"role": "human", "content": "x"}, {"role": "assistant", "content": "y"}]}\n',
     {}, "role 'human'", ":1:", False),
    ("chat ending with the user", "a.jsonl", b'{"messages": [{"role": "user", "content": "x"}, {"role": "assistant", "content": "y"}, {"role": "user", "content": "z"}]}\n',
     {}, "ends with a 'user' turn", ":1:", False),
    ("chat without an assistant", "a.jsonl", b'{"messages": [{"role": "user", "content": "x"}]}\n', {}, "no 'assistant' reply",
     ":1:", False),
    ("chat messages not a list", "a.jsonl", b'{"messages": "hola"}\n', {}, "must be a non-empty list", ":1:", False),
    ("ShareGPT unknown speaker", "a.jsonl", b'{"conversations": [{"from": "robot", "value": "x"}]}\n', {}, "from='robot'",
     ":1:", False),
    ("SQuAD without data", "s.json", b'{"version": "1.1", "datos": []}', {"format": "squad"}, "'data' list", "s.json:", True),
    ("SQuAD cut short", "s.json", b'{"version": "1.1", "data": [{"title": "x", "paragraphs": [{"context": "abc",',
     {"format": "squad"}, "cut short", "s.json:1:", True),
    ("SQuAD answer of wrong type", "s.json", json.dumps({"data": [{"paragraphs": [{"context": "abc", "qas": [
        {"id": "q", "question": "¿?", "answers": [{"text": 3}]}]}]}]}).encode(), {"format": "squad"},
     "'text' must be a string", "qas[0] (id q)", False),
    ("binary file", "a.jsonl", b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR", {}, "NUL bytes", "a.jsonl:", False),
    # issue 10, item 9
    ("null output", "a.jsonl", (GOOD + '{"instruction": "x", "output": null}\n').encode(), {},
     "Alpaca field 'output' is null; write its text", ":2:", False),
    ("unterminated string", "a.jsonl", (GOOD + '{"instruction": "sin cerrar}\n').encode(), {},
     "invalid JSON (Unterminated string starting at column 17)", ":2:", False),
    ("deeply nested line", "a.jsonl", (GOOD + '{"instruction": "x", "output": "y", "meta": ' + "[" * 100_000
                                       + "]" * 100_000 + "}\n").encode(), {}, "nested too deeply to read", ":2:", False),
    ("deeply nested first line", "a.jsonl", ('{"a": ' + "[" * 100_000 + "]" * 100_000 + "}\n" + GOOD).encode(), {},
     "nested too deeply to read", ":1:", False),
    ("deeply nested element of an array", "a.json", ("[\n" + GOOD.strip() + ",\n" + "[" * 100_000 + "]" * 100_000
                                                     + "\n]").encode(), {}, "nested too deeply to read", ":3 (record 2)",
     False),
    ("deeply nested SQuAD", "s.json", ('{"version": "1.1",\n"data": ' + "[" * 100_000 + "]" * 100_000 + "}").encode(),
     {"format": "squad"}, "nested too deeply to read", "s.json:2:", True),
    ("semicolon CSV", "a.csv", "instruction;output\n¿Qué es el IVA?;Un impuesto.\n".encode(), {},
     'the header is separated by \';\': set delimiter: ";" in the source', "a.csv:1:", True),
    ("semicolon CSV with mapped columns", "a.csv", "pregunta;respuesta\n¿Qué es el IVA?;Un impuesto.\n".encode(),
     {"columns": {"instruction": "pregunta", "output": "respuesta"}}, 'set delimiter: ";"', "a.csv:1:", True),
]


@pytest.mark.parametrize("name,filename,data,options,message,location,fatal", CASES, ids=[c[0] for c in CASES])
def test_broken_file_gives_one_clear_line(tmp_path, name, filename, data, options, message, location, fatal):
    path = tmp_path / filename
    path.write_bytes(data)
    before = sha256_file(path)
    with pytest.raises(AmautaError) as info:
        read_source(SourceConfig(path=str(path), **options))
    text = str(info.value)
    print(f"{name}: {text[:200]}")
    assert "\n" not in text and len(text) < 600
    assert str(path) in text and location in text and message in text
    if fatal:
        with pytest.raises(AmautaError):
            read_source(SourceConfig(path=str(path), **options), skip_invalid=True)
    else:
        result = read_source(SourceConfig(path=str(path), **options), skip_invalid=True)
        assert len(result.invalid) >= 1 and message in result.invalid[0]
    assert sha256_file(path) == before


def test_skip_invalid_keeps_the_good_rows(tmp_path):
    path = tmp_path / "a.jsonl"
    path.write_bytes((GOOD + "{not json}\n" + '{"instruction": "x", "output": 1}\n' + GOOD2).encode())
    result = read_source(SourceConfig(path=str(path)), skip_invalid=True)
    assert [r.messages[1]["content"] for r in result.records] == ["Un impuesto al consumo.", "El registro de contribuyentes."]
    assert len(result.invalid) == 2


def test_cut_array_keeps_complete_records_with_skip_invalid(tmp_path):
    path = tmp_path / "a.json"
    path.write_text("[\n" + GOOD.strip() + ",\n" + GOOD2.strip() + ",\n" + GOOD.strip()[:20], encoding="utf-8")
    result = read_source(SourceConfig(path=str(path)), skip_invalid=True)
    assert len(result.records) == 2 and "cut short" in result.invalid[0]


def test_utf8_bom_is_accepted(tmp_path):
    path = tmp_path / "a.jsonl"
    path.write_bytes(codecs.BOM_UTF8 + GOOD.encode())
    (record,) = read_source(SourceConfig(path=str(path))).records
    assert record.messages[0]["content"] == "¿Qué es el IVA?"


def test_missing_file_and_bad_config(tmp_path):
    with pytest.raises(AmautaError, match="input file not found"):
        read_source(SourceConfig(path=str(tmp_path / "nope.jsonl")), skip_invalid=True)
    with pytest.raises(Exception, match="exactly one of 'path'"):
        SourceConfig()


def _config(tmp_path, path, extra=""):
    cfg = tmp_path / "prepare.yaml"
    cfg.write_text(f"sources:\n  - path: {path}\nmodel: tiny-llama\nclean:\n  language: null\n{extra}", encoding="utf-8")
    return cfg


def test_cli_refuses_and_writes_nothing_then_skips_with_flag(tmp_path):
    good = tmp_path / "good.jsonl"
    good.write_text(GOOD + GOOD2, encoding="utf-8")
    bad = tmp_path / "bad.jsonl"
    bad.write_bytes((GOOD + '{"instruction": "x", "output": \n' + GOOD2).encode())
    cfg = tmp_path / "prepare.yaml"
    cfg.write_text(f"sources:\n  - path: {good}\n  - path: {bad}\nmodel: tiny-llama\nclean:\n  language: null\n", encoding="utf-8")
    hashes = {p: sha256_file(p) for p in (good, bad, cfg)}
    out = tmp_path / "out"
    cmd = [sys.executable, "-m", "amauta.cli", "data", "prepare", str(cfg), "--out", str(out)]
    run = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert run.returncode == 2, run.stderr
    lines = [line for line in run.stderr.splitlines() if line.strip()]
    assert lines[-1].startswith("error:") and f"{bad}:2: invalid JSON" in " ".join(lines[-3:])
    assert "Traceback" not in run.stderr
    assert not out.exists() and not [p for p in tmp_path.iterdir() if p.name.startswith(".out")]
    run = subprocess.run(cmd + ["--skip-invalid"], capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr
    stats = json.loads((out / "stats.json").read_text(encoding="utf-8"))
    assert stats["sources"]["bad"]["invalid"] == 1 and stats["totals"]["invalid"] == 1
    assert stats["sources"]["bad"]["read"] == 2
    assert {p: sha256_file(p) for p in hashes} == hashes


def test_killed_run_leaves_no_half_written_folder(tmp_path, monkeypatch):
    from amauta.core.config import load_config
    from amauta.data import prepare

    good = tmp_path / "good.jsonl"
    good.write_text(GOOD + GOOD2, encoding="utf-8")
    config = load_config(prepare.PrepareConfig, _config(tmp_path, good))

    def boom(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(prepare, "plot_lengths", boom)  # dies in the middle of writing
    with pytest.raises(KeyboardInterrupt):
        prepare.run(config, out=tmp_path / "out")
    assert not (tmp_path / "out").exists()
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


def test_bad_bytes_inside_an_array_and_a_csv(tmp_path):
    array = tmp_path / "a.json"
    array.write_bytes(b'[\n' + GOOD.strip().encode() + b',\n{"instruction": "caf\xe9", "output": "x"}\n]')
    with pytest.raises(AmautaError, match=r"a.json:3 \(record 2\): not UTF-8 text \(byte 0xe9 at column 21\)"):
        read_source(SourceConfig(path=str(array)))
    assert len(read_source(SourceConfig(path=str(array)), skip_invalid=True).records) == 1
    table = tmp_path / "a.csv"
    table.write_bytes(b"instruction,output\nhola,adios\ncaf\xe9,x\n")
    with pytest.raises(AmautaError, match=r"a.csv:3: not UTF-8 text \(byte 0xe9"):
        read_source(SourceConfig(path=str(table)))


def test_pretty_printed_squad_and_single_object(tmp_path):
    squad = tmp_path / "s.json"
    squad.write_text(json.dumps({"data": [{"paragraphs": [{"context": "Quito es la capital.", "qas": [
        {"id": "a", "question": "¿Cuál es la capital?", "answers": [{"text": "Quito"}]}]}]}]}, indent=2), encoding="utf-8")
    assert len(read_source(SourceConfig(path=str(squad))).records) == 1
    one = tmp_path / "o.json"
    one.write_text(json.dumps({"instruction": "x", "output": "y"}, indent=2), encoding="utf-8")
    with pytest.raises(AmautaError, match="one JSON object spread over many lines"):
        read_source(SourceConfig(path=str(one)))


def test_cli_refuses_a_deeply_nested_line_in_one_line(tmp_path):
    bad = tmp_path / "deep.jsonl"
    bad.write_text(GOOD + '{"instruction": "x", "output": ' + "[" * 100_000 + "]" * 100_000 + "}\n", encoding="utf-8")
    cmd = [sys.executable, "-m", "amauta.cli", "data", "prepare", str(_config(tmp_path, bad)), "--out", str(tmp_path / "out")]
    run = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert run.returncode == 2, run.stderr
    assert "Traceback" not in run.stderr and "RecursionError" not in run.stderr
    assert f"{bad}:2: nested too deeply to read" in run.stderr
