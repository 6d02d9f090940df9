"""The pipeline runner: validation through the entry point's typed config, variables, resume, errors."""

from __future__ import annotations

import json
import textwrap

import pytest

from amauta import pipeline
from amauta.core.errors import AmautaError

STAGE_MODULE = '''
from pathlib import Path
from amauta.core.config import StageConfig

CALLS = []

class EchoConfig(StageConfig):
    out: str
    text: str = "hola"

def run(config: EchoConfig) -> Path:
    CALLS.append(config.text)
    path = Path(config.out)
    path.mkdir(parents=True, exist_ok=True)
    (path / "echo.txt").write_text(config.text)
    return path

def run_replacing(config: EchoConfig, *, overwrite: bool = False) -> Path:
    CALLS.append((config.text, overwrite))
    return Path(config.out)
'''


@pytest.fixture
def echo_stage(tmp_path, monkeypatch):
    (tmp_path / "echo_stage.py").write_text(STAGE_MODULE)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setitem(pipeline.ENTRY_POINTS, "test.echo", "echo_stage:run")
    monkeypatch.setitem(pipeline.ENTRY_POINTS, "test.replacing", "echo_stage:run_replacing")
    import echo_stage

    echo_stage.CALLS.clear()
    return echo_stage


def write(tmp_path, text: str):
    path = tmp_path / "pipe.yaml"
    path.write_text(textwrap.dedent(text))
    return path


def test_runs_steps_in_order_with_variables_and_skips_done_steps(tmp_path, echo_stage):
    pipe = write(tmp_path, f"""
        name: t
        out: {tmp_path}/out
        steps:
          - name: first
            uses: test.echo
            with: {{out: "${{out}}/a", text: uno}}
          - name: second
            uses: test.echo
            with: {{out: "${{out}}/b", text: "${{steps.first}}"}}
    """)
    pipeline.run_pipeline(pipe)
    assert echo_stage.CALLS == ["uno", f"{tmp_path}/out/a"]
    state = json.loads((tmp_path / "out" / "pipeline-state.json").read_text())
    assert set(state) == {"first", "second"}

    pipeline.run_pipeline(pipe)  # everything done: nothing reruns
    assert len(echo_stage.CALLS) == 2
    pipeline.run_pipeline(pipe, force=True)
    assert len(echo_stage.CALLS) == 4


def test_changed_config_reruns_only_that_step(tmp_path, echo_stage):
    body = """
        out: {out}
        steps:
          - name: first
            uses: test.echo
            with: {{out: "${{out}}/a", text: {text}}}
    """
    pipeline.run_pipeline(write(tmp_path, body.format(out=tmp_path / "o", text="uno")))
    pipeline.run_pipeline(write(tmp_path, body.format(out=tmp_path / "o", text="dos")))
    assert echo_stage.CALLS == ["uno", "dos"]


def test_pipeline_folder_follows_the_output_folder_rule(tmp_path, echo_stage):
    body = """
        out: {out}
        steps:
          - name: first
            uses: test.replacing
            with: {{out: "${{out}}/a", text: {text}}}
    """
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "tesis.tex").write_text("capítulo 1")
    with pytest.raises(AmautaError, match=r"mine: exists and is not an Amauta pipeline folder"):
        pipeline.run_pipeline(write(tmp_path, body.format(out=mine, text="uno")))
    assert echo_stage.CALLS == [] and [p.name for p in mine.iterdir()] == ["tesis.tex"]
    # A step the pipeline ran before may replace its own output when its config changed; the first time, not.
    pipeline.run_pipeline(write(tmp_path, body.format(out=tmp_path / "o", text="uno")))
    pipeline.run_pipeline(write(tmp_path, body.format(out=tmp_path / "o", text="dos")))
    assert echo_stage.CALLS == [("uno", False), ("dos", True)]
    assert json.loads((tmp_path / "o" / "manifest.json").read_text())["stage"] == "pipeline"


@pytest.mark.parametrize(
    "steps, message",
    [
        ("- {name: a, uses: test.ecko, with: {out: x}}", "did you mean: test.echo"),
        ("- {name: a, uses: test.echo, with: {out: x, txt: y}}", "unknown key 'txt' (did you mean: text?)"),
        ("- {name: a, uses: test.echo, with: {out: '${outt}'}}", "unknown variable ${outt}"),
        ("- {name: a, uses: test.echo, with: {out: x}}\n- {name: a, uses: test.echo, with: {out: y}}", "unique"),
    ],
)
def test_bad_pipeline_files_give_one_line(tmp_path, echo_stage, steps, message):
    pipe = tmp_path / "bad.yaml"
    pipe.write_text(f"out: {tmp_path}/o\nsteps:\n" + textwrap.indent(steps, "  ") + "\n")
    with pytest.raises(AmautaError, match=".*") as info:
        pipeline.run_pipeline(pipe)
    assert message in str(info.value)
    assert "\n" not in str(info.value)
