"""End to end: config → dataset folder (contract files), read back, template check, CLI."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from amauta.core.config import load_config, validate_config
from amauta.core.errors import AmautaError
from amauta.data.dataset import read_dataset_dir
from amauta.data.prepare import PrepareConfig, run

REPO = Path(__file__).resolve().parents[2]
ALPACA = REPO / "examples" / "data" / "alpaca_es.jsonl"
DOLLY = REPO / "examples" / "data" / "dolly_es.jsonl"


def config(**overrides) -> PrepareConfig:
    data = {"sources": [{"path": str(ALPACA), "name": "alpaca_es", "cap": 120},
                        {"path": str(DOLLY), "name": "dolly_es", "weight": 2.0}],
            "model": "tiny-llama", "length_templates": ["chatml"],
            "clean": {"language": None, "max_tokens": 400}, "split": {"val_fraction": 0.1}}
    data.update(overrides)
    return validate_config(PrepareConfig, data)


def test_prepare_writes_the_contract_folder(tmp_path):
    out = run(config(), out=tmp_path / "ds")
    assert sorted(p.name for p in out.iterdir()) == ["lengths.png", "manifest.json", "stats.json", "train.jsonl", "val.jsonl"]
    line = json.loads((out / "train.jsonl").read_text(encoding="utf-8").splitlines()[0])
    assert list(line) == ["id", "messages", "source", "category"]
    stats = json.loads((out / "stats.json").read_text(encoding="utf-8"))
    assert stats["sources"]["alpaca_es"]["selected"] == 120
    assert stats["sources"]["alpaca_es"]["removed"]["exact_duplicate"] == 2
    assert stats["sources"]["alpaca_es"]["removed"]["empty"] == 1
    assert stats["sources"]["dolly_es"]["train"] > stats["sources"]["dolly_es"]["kept"]  # weight 2 repeats it
    assert set(stats["token_lengths"]) == {"llama2", "chatml"}
    assert stats["token_lengths"]["llama2"]["p95"] <= 400 and stats["token_lengths"]["llama2"]["count"] > 0
    assert (out / "lengths.png").read_bytes()[:4] == b"\x89PNG"
    manifest = json.loads((out / "manifest.json").read_text(encoding="utf-8"))
    assert manifest["stage"] == "data.prepare" and manifest["template"] == "llama2" and manifest["model"] == "tiny-llama"
    assert str(ALPACA) in manifest["inputs"]

    ds = read_dataset_dir(out, template="llama2")
    assert len(ds.train) == stats["totals"]["train"] and len(ds.val) == stats["totals"]["val"]
    assert ds.template == "llama2" and ds.train[0].messages[-1]["role"] == "assistant"
    with pytest.raises(AmautaError, match="prepared for template 'llama2'.*uses 'chatml'"):
        read_dataset_dir(out, template="chatml", model="smollm2-135m-instruct")


def test_prepare_is_deterministic(tmp_path):
    a = run(config(), out=tmp_path / "a")
    b = run(config(), out=tmp_path / "b")
    for name in ("train.jsonl", "val.jsonl"):
        assert (a / name).read_bytes() == (b / name).read_bytes()


def _snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_rerun_skips_when_unchanged_refuses_when_changed_and_overwrite_replaces_atomically(tmp_path):
    out = run(config(), out=tmp_path / "ds")
    before = _snapshot(out)
    assert run(config(), out=out) == out  # same config and inputs: nothing to do
    assert _snapshot(out) == before
    with pytest.raises(AmautaError, match=r"ds: holds a dataset made from other inputs \(split.val_fraction: 0.1 → 0.2\); "
                                          r"pass --overwrite to replace it, or choose another folder"):
        run(config(split={"val_fraction": 0.2}), out=out)
    assert _snapshot(out) == before
    (out / "notas.txt").write_text("mías", encoding="utf-8")
    with pytest.raises(AmautaError, match="holds notas.txt, which Amauta did not write there"):
        run(config(split={"val_fraction": 0.2}), out=out, overwrite=True)
    assert (out / "notas.txt").read_text(encoding="utf-8") == "mías"
    (out / "notas.txt").unlink()
    run(config(split={"val_fraction": 0.2}), out=out, overwrite=True)
    assert json.loads((out / "manifest.json").read_text(encoding="utf-8"))["config"]["split"]["val_fraction"] == 0.2
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


def _cli(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, "-m", "amauta.cli", *args], cwd=REPO, env=env, capture_output=True,
                          text=True, timeout=300)


def test_prepare_into_a_folder_it_did_not_make_is_refused_and_nothing_is_deleted(tmp_path):
    """Issue 10, item 1: `out: x` where x holds keep.txt and the very file the config reads."""
    x = tmp_path / "x"
    x.mkdir()
    (x / "keep.txt").write_text("hi\n", encoding="utf-8")
    shutil.copy(ALPACA, x / "alpaca_es.jsonl")
    cfg = tmp_path / "p.yaml"
    cfg.write_text(f"sources:\n  - path: {x / 'alpaca_es.jsonl'}\nout: {x}\nmodel: tiny-llama\n"
                   "clean:\n  language: null\n", encoding="utf-8")
    before = _snapshot(x)
    for extra in ([], ["--overwrite"]):
        result = _cli("data", "prepare", str(cfg), *extra)
        assert result.returncode == 2, result.stderr[-2000:]
        message = " ".join(result.stderr.split())
        assert f"{x}: exists and is not an Amauta dataset folder" in message and "choose a new or empty folder" in message
        assert _snapshot(x) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["p.yaml", "x"]


def test_overwrite_never_replaces_a_dataset_folder_holding_a_source(tmp_path):
    ds = run(config(), out=tmp_path / "ds")
    source = ds / "alpaca_es.jsonl"
    shutil.copy(ALPACA, source)
    inside = config(sources=[{"path": str(source), "name": "alpaca_es", "cap": 120}])
    with pytest.raises(AmautaError, match=r"alpaca_es.jsonl is a new input.*pass --overwrite"):
        run(inside, out=ds)
    with pytest.raises(AmautaError, match=rf"{ds}: holds {source}, an input of this run, so it cannot be replaced"):
        run(inside, out=ds, overwrite=True)
    assert source.read_bytes() == ALPACA.read_bytes() and (ds / "train.jsonl").is_file()


def test_a_killed_prepare_leaves_temporaries_that_the_next_run_removes(tmp_path):
    """Issue 10, item 5: kill -9 during the write leaves `.NAME.XXXXXXXX.tmp` beside the dataset folder."""
    left = tmp_path / ".ds.k1ll3d00.tmp"
    left.mkdir()
    (left / "train.jsonl").write_text("{}\n", encoding="utf-8")
    not_ours = tmp_path / ".other.k1ll3d00.tmp"
    not_ours.mkdir()
    run(config(), out=tmp_path / "ds")
    assert not left.exists() and not_ours.is_dir()


def test_config_errors_are_one_line(tmp_path):
    cfg = tmp_path / "p.yaml"
    cfg.write_text(f"sources:\n  - path: {ALPACA}\n    wieght: 2\n", encoding="utf-8")
    with pytest.raises(AmautaError, match=r"p.yaml: unknown key 'sources.0.wieght'"):
        load_config(PrepareConfig, cfg)
    with pytest.raises(AmautaError, match="two sources are named"):
        validate_config(PrepareConfig, {"sources": [{"path": str(ALPACA)}, {"path": str(ALPACA)}]})
    with pytest.raises(AmautaError, match="no output folder"):
        run(config())
    with pytest.raises(AmautaError, match="every record was removed"):
        run(config(clean={"language": None, "min_answer_chars": 10_000}), out=tmp_path / "x")
    assert not (tmp_path / "x").exists()


def test_read_dataset_dir_refuses_other_folders(tmp_path):
    with pytest.raises(AmautaError, match="dataset folder not found"):
        read_dataset_dir(tmp_path / "none")
    (tmp_path / "half").mkdir()
    (tmp_path / "half" / "train.jsonl").write_text("", encoding="utf-8")
    with pytest.raises(AmautaError, match="missing val.jsonl, manifest.json"):
        read_dataset_dir(tmp_path / "half")
    out = run(config(), out=tmp_path / "ds")
    lines = (out / "train.jsonl").read_text(encoding="utf-8").splitlines()
    (out / "train.jsonl").write_text("\n".join(lines[:3] + [lines[1]]) + "\n", encoding="utf-8")
    with pytest.raises(AmautaError, match=r"train.jsonl:4: duplicate id"):
        read_dataset_dir(out)


def test_cli_prepare_prints_table(tmp_path, monkeypatch):
    from typer.testing import CliRunner

    from amauta.cli import app

    cfg = tmp_path / "p.yaml"
    cfg.write_text(f"sources:\n  - path: {DOLLY}\n    name: dolly\nmodel: tiny-mistral\nclean:\n  language: null\n",
                   encoding="utf-8")
    result = CliRunner().invoke(app, ["data", "prepare", str(cfg), "--out", str(tmp_path / "ds")])
    assert result.exit_code == 0, result.output
    assert "exact duplicate" in result.output and "tokens (mistral)" in result.output
    assert read_dataset_dir(tmp_path / "ds", template="mistral").train
    shown = CliRunner().invoke(app, ["data", "show", str(tmp_path / "ds"), "-n", "1", "--mask"])
    assert shown.exit_code == 0, shown.output
    assert "assistant:" in shown.output and "mask with tiny-mistral (mistral)" in shown.output
    assert "</s>" in shown.output and "trained on" in shown.output


@pytest.mark.integration
def test_demo_config_with_smollm2_and_language_filter(tmp_path, monkeypatch):
    monkeypatch.chdir(REPO)  # the demo config's paths are relative to the repository root
    cfg = load_config(PrepareConfig, REPO / "examples" / "prepare.yaml")
    out = run(cfg, out=tmp_path / "demo")
    stats = json.loads((out / "stats.json").read_text(encoding="utf-8"))
    assert stats["template"] == "chatml"
    assert stats["removed"]["language"] == 2 and stats["removed"]["near_duplicate"] == 1
    assert stats["totals"]["train"] > 150 and stats["totals"]["val"] > 5
    assert set(stats["token_lengths"]) == {"chatml", "llama2", "mistral"}


def test_target_model_from_a_local_folder(tmp_path):
    from amauta.models.tiny import tiny_model, tiny_tokenizer

    chatml = ("{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
              "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}")
    folder = tmp_path / "my-model"
    tiny_model("llama").save_pretrained(folder)
    tiny_tokenizer(chat_template=chatml).save_pretrained(folder)
    out = run(config(model=str(folder), length_templates=[]), out=tmp_path / "ds")
    manifest = json.loads((out / "manifest.json").read_text(encoding="utf-8"))
    assert manifest["model"] == str(folder)
    first = json.loads((out / "train.jsonl").read_text(encoding="utf-8").splitlines()[0])
    assert first["messages"][-1]["role"] == "assistant"
    with pytest.raises(AmautaError, match="cannot load its tokenizer"):
        run(config(model=str(tmp_path / "missing-model")), out=tmp_path / "x")


def test_manifest_records_the_system_prompt_and_reading_checks_it(tmp_path):
    out = run(config(system_prompt="Responde en español."), out=tmp_path / "ds")
    manifest = json.loads((out / "manifest.json").read_text(encoding="utf-8"))
    assert manifest["system_prompt"] == "Responde en español."
    assert json.loads((out / "stats.json").read_text(encoding="utf-8"))["system_prompt"] == "Responde en español."
    read_dataset_dir(out, template="llama2", system_prompt="Responde en español.")
    with pytest.raises(AmautaError, match="prepared with the system prompt 'Responde en español.', but this run uses none"):
        read_dataset_dir(out, template="llama2", system_prompt="")
    plain = run(config(), out=tmp_path / "plain")  # tiny-llama's profile has none
    assert json.loads((plain / "manifest.json").read_text(encoding="utf-8"))["system_prompt"] == ""


def test_lengths_include_the_system_prompt(tmp_path):
    short = json.loads((run(config(), out=tmp_path / "a") / "stats.json").read_text(encoding="utf-8"))
    long = json.loads((run(config(system_prompt="Responde siempre en español, con claridad y precisión."),
                           out=tmp_path / "b") / "stats.json").read_text(encoding="utf-8"))
    for template in ("llama2", "chatml"):
        assert long["token_lengths"][template]["mean"] > short["token_lengths"][template]["mean"]
