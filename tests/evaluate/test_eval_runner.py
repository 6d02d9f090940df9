"""The runner: per-item cache, resume after a kill, torn lines, summary and manifest, --compare."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from eval_adapters import random_adapter

from amauta.core.errors import AmautaError
from amauta.evaluate.belebele import BelebeleConfig, run
from amauta.evaluate.runner import ModelSpec, load_summary, parse_models, repair_torn_tail

REPO = Path(__file__).resolve().parents[2]
SAMPLE = REPO / "examples" / "data" / "belebele_sample.jsonl"


def _counting_loader(tiny, calls):
    def loader(spec, **kwargs):
        calls.append(spec.label)
        return tiny("llama")
    return loader


def _rows(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "items.jsonl").read_text().splitlines()]


def test_run_writes_items_summary_manifest_and_resumes(tiny, tmp_path):
    calls: list[str] = []
    cfg = BelebeleConfig(model="tiny-llama", data=str(SAMPLE), limit=6, batch_size=4, out=str(tmp_path / "ev"))
    folder = run(cfg, loader=_counting_loader(tiny, calls), show_progress=False)
    assert folder == tmp_path / "ev"  # the stage contract: run returns its output folder
    summary = load_summary(folder)
    assert calls == ["base"] and summary["models"][0]["computed"] == 6
    assert len(_rows(tmp_path / "ev")) == 6
    saved = json.loads((tmp_path / "ev" / "summary.json").read_text())
    assert saved["task"] == "belebele" and saved["models"][0]["metrics"]["n"] == 6
    manifest = json.loads((tmp_path / "ev" / "manifest.json").read_text())
    assert manifest["stage"] == "evaluate.belebele" and manifest["config"]["formulation"] == "cloze"
    # The same command again: everything cached, the model is not even loaded.
    again = load_summary(run(cfg, loader=_counting_loader(tiny, calls), show_progress=False))
    assert calls == ["base"] and again["models"][0]["computed"] == 0
    assert again["models"][0]["metrics"]["acc"] == summary["models"][0]["metrics"]["acc"]
    # More items: only the new ones are computed; another formulation is a different cache key.
    more = load_summary(run(cfg.model_copy(update={"limit": 8}), loader=_counting_loader(tiny, calls),
                            show_progress=False))
    assert more["models"][0]["computed"] == 2
    letter = load_summary(run(cfg.model_copy(update={"formulation": "letter"}), loader=_counting_loader(tiny, calls),
                              show_progress=False))
    assert letter["models"][0]["computed"] == 6 and len(_rows(tmp_path / "ev")) == 14


def test_torn_last_line_is_dropped(tmp_path):
    path = tmp_path / "items.jsonl"
    path.write_text('{"key": "k", "item_id": "1"}\n{"key": "k", "it', encoding="utf-8")
    repair_torn_tail(path)
    assert path.read_text() == '{"key": "k", "item_id": "1"}\n'


def test_killed_run_resumes_without_recomputing(tiny, tmp_path):
    out = tmp_path / "ev"
    script = tmp_path / "slow_eval.py"
    script.write_text(textwrap.dedent(f"""
        import time
        from amauta.evaluate.belebele import BelebeleConfig, run
        from amauta.models.load import load_model

        def slow_loader(spec, **kwargs):
            loaded = load_model("tiny-llama")
            forward = loaded.model.forward
            def slow(*args, **kw):
                time.sleep(0.3)
                return forward(*args, **kw)
            loaded.model.forward = slow
            return loaded

        cfg = BelebeleConfig(model="tiny-llama", data={str(SAMPLE)!r}, limit=20, batch_size=1, out={str(out)!r})
        run(cfg, loader=slow_loader, show_progress=False)
    """))
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen([sys.executable, str(script)], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    items = out / "items.jsonl"
    deadline = time.time() + 240
    while time.time() < deadline and (not items.is_file() or len(items.read_text().splitlines()) < 3):
        assert proc.poll() is None, proc.stderr.read().decode()[-2000:]
        time.sleep(0.2)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    done = len(_rows(out))
    assert 3 <= done < 20 and not (out / "summary.json").exists()
    calls: list[str] = []
    cfg = BelebeleConfig(model="tiny-llama", data=str(SAMPLE), limit=20, batch_size=4, out=str(out))
    summary = load_summary(run(cfg, loader=_counting_loader(tiny, calls), show_progress=False))
    assert summary["models"][0]["computed"] == 20 - done
    ids = [r["item_id"] for r in _rows(out)]
    assert len(ids) == len(set(ids)) == 20


def test_parse_models(tmp_path):
    assert parse_models("tiny-llama") == [ModelSpec("base", "tiny-llama", None)]
    run_dir = tmp_path / "runs" / "es-lora"
    (run_dir / "adapter").mkdir(parents=True)
    assert parse_models("m", adapter=str(run_dir / "adapter"))[0].label == "es-lora"
    specs = parse_models("m", compare=f"base,{run_dir},otro={run_dir}")
    assert [s.label for s in specs] == ["base", "es-lora", "otro"] and specs[0].adapter is None
    with pytest.raises(AmautaError, match="neither 'base' nor an existing"):
        parse_models("m", compare="base,runs/typo")
    with pytest.raises(AmautaError, match="share the label"):
        parse_models("m", compare=f"base,{run_dir},{run_dir}")




def test_compare_base_and_adapter_gives_flips(tiny, tmp_path):
    run_dir = random_adapter(tmp_path / "runs" / "es-lora")
    cfg = BelebeleConfig(model="tiny-llama", compare=f"base,{run_dir}", data=str(SAMPLE), limit=12,
                         out=str(tmp_path / "cmp"))
    summary = load_summary(run(cfg, show_progress=False))
    assert [m["label"] for m in summary["models"]] == ["base", "es-lora"]
    (comparison,) = summary["comparisons"]
    assert comparison["n"] == 12
    assert comparison["both_correct"] + comparison["both_wrong"] + comparison["lost"] + comparison["gained"] == 12
    base, tuned = (m["metrics"]["acc"] for m in summary["models"])
    assert tuned - base == pytest.approx(comparison["delta"])
    rows = _rows(tmp_path / "cmp")
    assert {r["model"] for r in rows} == {"base", "es-lora"}
    scores = {(r["model"], r["item_id"]): r["logprobs"] for r in rows}
    assert any(scores[("base", i)] != scores[("es-lora", i)] for _, i in scores)  # the adapter was applied

    from amauta.evaluate.compare import markdown_table, table_rows

    headers, table = table_rows(summary)
    assert "lost" in headers and table[0][0] == "base" and table[1][0] == "es-lora"
    assert "| base |" in markdown_table(headers, table)


def _files(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_eval_into_a_folder_another_stage_made_is_refused_untouched(tiny, tmp_path):
    """Issue 10, item 3: `amauta eval ... --out <a training run>` overwrote its summary.json and manifest.json."""
    from amauta.core.manifest import write_manifest

    run_dir = tmp_path / "runs" / "sri"
    (run_dir / "adapter").mkdir(parents=True)
    (run_dir / "log.jsonl").write_text('{"step": 1, "loss": 2.5}\n')
    (run_dir / "summary.json").write_text('{"steps": 1, "completed": true}\n')
    write_manifest(run_dir, "train", {"model": "tiny-llama"}, complete=True)
    before = _files(run_dir)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    result = subprocess.run([sys.executable, "-m", "amauta.cli", "eval", "belebele", "--model", "tiny-llama",
                             "--data", str(SAMPLE), "--limit", "2", "--out", str(run_dir), "--no-progress"],
                            cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 2, result.stderr[-2000:]
    assert f"{run_dir}: is an Amauta run folder (stage 'train'), not an eval folder" in " ".join(result.stderr.split())
    assert _files(run_dir) == before

    calls: list[str] = []
    ppl = tmp_path / "ppl"
    ppl.mkdir()
    write_manifest(ppl, "evaluate.perplexity", {})
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.md").write_text("mis notas")
    for folder, message in ((ppl, "stage 'evaluate.perplexity'"), (mine, "is not an Amauta eval folder")):
        cfg = BelebeleConfig(model="tiny-llama", data=str(SAMPLE), limit=2, out=str(folder))
        with pytest.raises(AmautaError, match=re.escape(message)):
            run(cfg, loader=_counting_loader(tiny, calls), show_progress=False)
    assert calls == [] and (mine / "notes.md").read_text() == "mis notas" and not (mine / "items.jsonl").exists()
def test_system_prompt_is_part_of_the_cache_key_of_chat_rendered_tasks(tmp_path, capsys):
    out = tmp_path / "ev"
    cfg = BelebeleConfig(model="tiny-llama", data=str(SAMPLE), limit=2, batch_size=2, formulation="generate",
                         max_new_tokens=2, out=str(out))
    first = load_summary(run(cfg, show_progress=False))
    assert first["task_config"]["system_prompt"] == ""  # tiny-llama's profile: none
    spanish = load_summary(run(cfg.model_copy(update={"system_prompt": "Responde con una letra."}), show_progress=False))
    assert spanish["models"][0]["computed"] == 2 and spanish["models"][0]["key"] != first["models"][0]["key"]
    said = capsys.readouterr().err
    assert "made with the system prompt none; this run uses 'Responde con una letra.'" in " ".join(said.split())
    # A cache from before the system prompt was recorded (SmolLM2's English default was in those prompts).
    summary = json.loads((out / "summary.json").read_text())
    del summary["task_config"]["system_prompt"]
    (out / "summary.json").write_text(json.dumps(summary))
    again = load_summary(run(cfg.model_copy(update={"system_prompt": "Otra."}), show_progress=False))
    assert again["models"][0]["computed"] == 2
    assert "before Amauta set it" in " ".join(capsys.readouterr().err.split())
    # Log-likelihood scoring renders no chat template: its key ignores the system prompt.
    cloze = cfg.model_copy(update={"formulation": "cloze"})
    load_summary(run(cloze, show_progress=False))
    assert load_summary(run(cloze.model_copy(update={"system_prompt": "Otra."}), show_progress=False))["models"][0]["computed"] == 0
