"""A quiet pipeline (`make demo`'s shape on tiny models): one line per step, library noise in amauta.log,
a closing summary of at most 15 lines, and the chat demo's answers in the report."""

from __future__ import annotations

import json
import logging
import re
import textwrap
import warnings
from pathlib import Path

import pytest

from amauta import pipeline
from amauta.core import logs

REPO = Path(__file__).resolve().parents[2]

# A step that makes the noise the libraries make during the demo: a transformers log record, a
# FutureWarning from a library's file, a "Loading weights" bar, and its own printing.
NOISY_STAGE = '''
import warnings
from pathlib import Path
from amauta.core.config import StageConfig

class NoisyConfig(StageConfig):
    out: str

def run(config: NoisyConfig) -> Path:
    from transformers.utils import logging as hf_logging

    hf_logging.get_logger("transformers.modeling_utils").warning("LIBRARY-LOG-RECORD")
    warnings.warn_explicit("LIBRARY-FUTURE-WARNING", FutureWarning, "/site-packages/somelib/core.py", 7)
    for _ in hf_logging.tqdm(range(3), desc="Loading weights"):
        pass
    print("STAGE-OWN-PRINT")
    Path(config.out).mkdir(parents=True, exist_ok=True)
    return Path(config.out)
'''


@pytest.fixture
def noisy_stage(tmp_path, monkeypatch):
    (tmp_path / "noisy_stage.py").write_text(NOISY_STAGE)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setitem(pipeline.ENTRY_POINTS, "test.noisy", "noisy_stage:run")
    monkeypatch.setenv(logs.VERBOSE_ENV, "0")  # not verbose; and restored after `amauta --verbose` sets it


def _dataset(folder: Path) -> Path:
    """A prepared dataset folder for tiny-llama (what `data.prepare` writes), a dozen short chats."""
    folder.mkdir(parents=True)
    for name, count in (("train", 12), ("val", 4)):
        rows = [{"id": f"{name}-{i}", "messages": [{"role": "user", "content": f"¿Cuánto es {i} más {i}?"},
                                                   {"role": "assistant", "content": f"Es {2 * i}."}],
                 "source": "muestra", "category": "qa"}
                for i in range(count)]
        (folder / f"{name}.jsonl").write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))
    (folder / "manifest.json").write_text(json.dumps({"stage": "data.prepare", "template": "llama2",
                                                      "model": "tiny-llama"}))
    return folder


def _demo_pipeline(tmp_path: Path) -> Path:
    """train → belebele base vs adapter → chat demo → a noisy step → report, on tiny-llama."""
    dataset = _dataset(tmp_path / "data")
    path = tmp_path / "quick.yaml"
    path.write_text(textwrap.dedent(f"""
        name: quick
        out: {tmp_path}/runs
        steps:
          - name: train
            uses: train
            with:
              model: tiny-llama
              dataset: {dataset}
              output_dir: ${{out}}/train
              lora: {{r: 4, alpha: 8, targets: attention}}
              optimizer: {{name: adamw, lr: 0.005}}
              batch_size: 4
              max_steps: 2
              eval_every: 2
              checkpoint_every: 2
              max_length: 64
          - name: belebele
            uses: eval.belebele
            with:
              model: tiny-llama
              compare: "base,${{steps.train}}"
              data: {REPO / "examples/data/belebele_sample.jsonl"}
              limit: 4
              out: ${{out}}/belebele
          - name: chat
            uses: chat.demo
            with:
              model: tiny-llama
              adapter: ${{steps.train}}
              prompts: ["¿Qué es el IVA?"]
              strategies: [greedy, sampling]
              max_new_tokens: 3
              out: ${{out}}/chat
          - name: noisy
            uses: test.noisy
            with: {{out: "${{out}}/noisy"}}
          - name: report
            uses: report
            with:
              run_dirs: ["${{steps.train}}", "${{steps.belebele}}", "${{steps.chat}}"]
              out: ${{out}}/report
    """))
    return path


@pytest.mark.filterwarnings("always")  # every warning is raised again, even one an earlier test saw
def test_library_noise_goes_to_the_log_and_the_screen_gets_one_line_per_step_and_a_short_summary(
        tmp_path, noisy_stage, capfd):
    handlers_before, show_before = list(logging.getLogger().handlers), warnings.showwarning
    out = pipeline.run_pipeline(_demo_pipeline(tmp_path))
    stdout, stderr = capfd.readouterr()
    print(stdout)  # shown when the test fails

    # Nothing from the libraries (nor from the steps themselves) on either stream.
    assert stderr == ""
    for noise in ("LIBRARY-LOG-RECORD", "LIBRARY-FUTURE-WARNING", "Loading weights", "STAGE-OWN-PRINT",
                  "Warning:", "warnings.warn", "%|"):
        assert noise not in stdout, noise
    # ... but all of it in the run's amauta.log, with each step's own output.
    log = (out / logs.LOG_NAME).read_text(encoding="utf-8")
    for said in ("LIBRARY-LOG-RECORD", "FutureWarning: LIBRARY-FUTURE-WARNING", "STAGE-OWN-PRINT", "LoRA r=4"):
        assert said in log, said

    lines = stdout.splitlines()
    steps = [line for line in lines if re.match(r"\[\d/5\] ", line)]
    assert [line.split()[1] for line in steps] == ["train", "belebele", "chat", "noisy", "report"]
    assert all("…" in line and "→ " in line for line in steps)  # piped: one plain line per step
    finished = next(i for i, line in enumerate(lines) if "quick: finished in" in line)
    closing = lines[finished:]
    assert len(closing) <= 15, "\n".join(closing)
    text = "\n".join(closing)
    assert "Trained: tiny-llama" in text and "2 steps" in text
    assert re.search(r"Belebele \(cloze, 4 items, 95% CI\): base [\d.]+ % .*, train [\d.]+ % ", text)
    assert f"Report: {out / 'report' / 'report.html'}" in text
    assert f"amauta chat --adapter {out / 'train'}" in text and "amauta serve --adapter" in text
    assert len(lines) <= 5 + 15

    # The chat demo's answers are in the report: a table per strategy with its tokens/s.
    report = (out / "report" / "report.md").read_text(encoding="utf-8")
    assert "## Decoding strategies (chat demo)" in report
    for strategy in ("greedy", "sampling"):
        assert re.search(rf"### {strategy} · [\d.]+ tokens/s", report)
    assert "| ¿Qué es el IVA? |" in report

    # The libraries are as they were once the pipeline is done.
    assert logging.getLogger().handlers == handlers_before and warnings.showwarning is show_before


def _noisy_pipeline(tmp_path: Path, name: str = "runs") -> Path:
    path = tmp_path / f"{name}.yaml"
    path.write_text(f"name: n\nout: {tmp_path}/{name}\nsteps:\n  - {{name: noisy, uses: test.noisy, "
                    "with: {out: '${out}/noisy'}}\n")
    return path


def test_verbose_shows_every_step_and_the_libraries(tmp_path, noisy_stage, capfd):
    pipeline.run_pipeline(_noisy_pipeline(tmp_path), verbose=True)
    stdout, stderr = capfd.readouterr()
    assert "STAGE-OWN-PRINT" in stdout and "LIBRARY-LOG-RECORD" in stderr
    assert not (tmp_path / "runs" / logs.LOG_NAME).exists()


@pytest.mark.parametrize("args", [["run", "{pipe}"], ["run", "{pipe}", "--verbose"], ["--verbose", "run", "{pipe}"]])
def test_amauta_run_is_quiet_unless_verbose(tmp_path, noisy_stage, args):
    from typer.testing import CliRunner

    from amauta.cli import app

    pipe = _noisy_pipeline(tmp_path)
    result = CliRunner().invoke(app, [a.format(pipe=pipe) for a in args])
    assert result.exit_code == 0, result.output
    verbose = "--verbose" in args
    assert ("STAGE-OWN-PRINT" in result.output) == verbose
    assert (tmp_path / "runs" / logs.LOG_NAME).exists() != verbose
