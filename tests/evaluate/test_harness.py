"""`amauta eval harness`: lm-eval's tasks on Amauta's loaded models, offline on the bundled local tasks."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from eval_adapters import random_adapter

from amauta.core.errors import AmautaError
from amauta.evaluate.harness import HarnessConfig, run
from amauta.evaluate.runner import default_loader, load_summary

pytest.importorskip("lm_eval")

REPO = Path(__file__).resolve().parents[2]
SAMPLE = REPO / "examples" / "data" / "belebele_sample.jsonl"
LIMIT = 6




class _CountingLoader:
    def __init__(self):
        self.labels: list[str] = []

    def __call__(self, spec, **kwargs):
        self.labels.append(spec.label)
        return default_loader(spec, **kwargs)


def _no_loader(spec, **kwargs):
    raise AssertionError(f"{spec.label} was loaded, but all its results were on disk")


@pytest.fixture(scope="module")
def compared(tmp_path_factory):
    """tiny-llama base vs a LoRA adapter on the bundled letter task, 6 items of the repo's Belebele sample."""
    root = tmp_path_factory.mktemp("harness")
    run_dir = random_adapter(root / "runs" / "es-lora")
    config = HarnessConfig(model="tiny-llama", compare=f"base,{run_dir}", tasks=["amauta_belebele_es"],
                           data=str(SAMPLE), limit=LIMIT, batch_size=4, out=str(root / "eval"))
    loader = _CountingLoader()
    folder = run(config, loader=loader, show_progress=False)
    return config, folder, loader


def _samples(folder: Path, summary: dict, task: str, label: str) -> list[dict]:
    path = folder / summary["tasks"][task]["models"][label]["samples_file"]
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def test_local_task_writes_metrics_rows_and_paired_deltas(compared):
    config, folder, loader = compared
    summary = load_summary(folder)
    assert summary["task"] == "harness" and summary["lm_eval_version"]
    assert loader.labels == ["base", "es-lora"]
    entry = summary["tasks"]["amauta_belebele_es"]
    assert entry["n_samples"] == {"original": 40, "effective": LIMIT} and entry["n_shot"] == 0
    assert entry["version"] == 1.0
    per_model = {}
    for label in ("base", "es-lora"):
        rows = _samples(folder, summary, "amauta_belebele_es", label)
        assert sorted(r["doc_id"] for r in rows) == list(range(LIMIT))
        acc = entry["models"][label]["metrics"]["acc"]
        assert acc["value"] == pytest.approx(sum(r["acc"] for r in rows) / LIMIT)  # lm-eval's mean of its rows
        assert acc["stderr"] is not None
        per_model[label] = {r["doc_id"]: r["acc"] for r in rows}
    assert per_model["base"] != per_model["es-lora"] or any(  # the adapter was applied: its log-probs differ
        a["resps"] != b["resps"] for a, b in zip(_samples(folder, summary, "amauta_belebele_es", "base"),
                                                   _samples(folder, summary, "amauta_belebele_es", "es-lora"),
                                                   strict=True))
    (acc_delta,) = [c for c in summary["comparisons"] if c["metric"] == "acc"]
    assert acc_delta["base"] == "base" and acc_delta["other"] == "es-lora" and acc_delta["n"] == LIMIT
    lost = sum(1 for d in range(LIMIT) if per_model["base"][d] and not per_model["es-lora"][d])
    gained = sum(1 for d in range(LIMIT) if not per_model["base"][d] and per_model["es-lora"][d])
    assert (acc_delta["lost"], acc_delta["gained"]) == (lost, gained)
    values = [entry["models"][label]["metrics"]["acc"]["value"] for label in ("base", "es-lora")]
    assert acc_delta["delta"] == pytest.approx(values[1] - values[0])
    manifest = json.loads((folder / "manifest.json").read_text(encoding="utf-8"))
    assert manifest["stage"] == "evaluate.harness" and str(SAMPLE) in manifest["inputs"]


def test_rerun_skips_finished_units_and_computes_only_new_ones(compared, tmp_path):
    config, folder, _ = compared
    before = load_summary(folder)
    again = load_summary(run(config, loader=_no_loader, show_progress=False))
    assert [m["computed"] for m in again["models"]] == [[], []]
    assert again["tasks"] == before["tasks"]
    # a second task: only it is computed, for each model, and the first task's results stay as they were
    more = config.model_copy(update={"tasks": ["amauta_belebele_es", "amauta_belebele_es_cloze"]})
    loader = _CountingLoader()
    summary = load_summary(run(more, loader=loader, show_progress=False))
    assert loader.labels == ["base", "es-lora"]
    assert [m["computed"] for m in summary["models"]] == [["amauta_belebele_es_cloze"]] * 2
    assert summary["tasks"]["amauta_belebele_es"] == before["tasks"]["amauta_belebele_es"]
    assert set(summary["tasks"]) == {"amauta_belebele_es", "amauta_belebele_es_cloze"}


def test_a_task_killed_in_flight_resumes_from_lm_evals_request_cache(tmp_path):
    """Killed after its answers were cached but before its results were written: the rerun computes nothing."""
    config = HarnessConfig(model="tiny-llama", tasks=["amauta_belebele_es"], data=str(SAMPLE), limit=4,
                           out=str(tmp_path / "eval"))
    first = load_summary(run(config, show_progress=False))
    for path in [*(tmp_path / "eval" / "results").iterdir(), *(tmp_path / "eval" / "samples").iterdir()]:
        path.unlink()  # as if killed before the unit's files were written

    def no_forward(spec, **kwargs):
        loaded = default_loader(spec, **kwargs)

        def forward(*args, **kw):
            raise AssertionError("a forward pass ran, but every answer was in the request cache")

        loaded.model.forward = forward
        return loaded

    again = load_summary(run(config, loader=no_forward, show_progress=False))
    assert again["models"][0]["computed"] == ["amauta_belebele_es"]
    assert again["tasks"] == first["tasks"]


def test_report_renders_a_table_per_task(compared, tmp_path):
    _, folder, _ = compared
    from amauta.report.report import ReportConfig, build

    markdown, figures = build(ReportConfig(run_dirs=[str(folder)], out=str(tmp_path / "report")))
    assert "## lm-evaluation-harness tasks" in markdown
    assert "### amauta_belebele_es (version 1.0, 0-shot, 6 of 40 items)" in markdown
    header = next(line for line in markdown.splitlines() if line.startswith("| Model | acc"))
    assert "Δ acc vs base" in header
    rows = [line for line in markdown.splitlines() if line.startswith("| base |") or line.startswith("| es-lora |")]
    assert len(rows) >= 2 and "(reference)" in rows[0] and "(n=6" not in rows[1]  # 6 items: an interval is drawn
    assert figures  # the grouped bars


def test_bundled_task_without_its_data_file_is_refused(tmp_path):
    config = HarnessConfig(model="tiny-llama", tasks=["amauta_belebele_es"], data=str(tmp_path / "nope.jsonl"),
                           out=str(tmp_path / "eval"))
    with pytest.raises(AmautaError, match=r"amauta_belebele_es: data file .*nope.jsonl not found; pass --data") as err:
        run(config, loader=_no_loader, show_progress=False)
    assert "\n" not in str(err.value) and not (tmp_path / "eval").exists()


def test_hub_task_offline_is_refused_in_one_line_before_anything_loads(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.delenv("HF_DATASETS_OFFLINE", raising=False)
    config = HarnessConfig(model="tiny-llama", tasks=["amauta_belebele_es", "belebele_spa_Latn"], data=str(SAMPLE),
                           out=str(tmp_path / "eval"))
    with pytest.raises(AmautaError, match=r"'belebele_spa_Latn' is not a local task .*\(HF_HUB_OFFLINE=1\)") as err:
        run(config, loader=_no_loader, show_progress=False)
    assert "\n" not in str(err.value) and not (tmp_path / "eval").exists()


def test_a_task_whose_data_cannot_be_fetched_is_one_line(tmp_path, monkeypatch):
    """A local task YAML over a hub data set not in the cache, offline: lm-eval's error becomes one line."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    tasks = tmp_path / "tasks"
    tasks.mkdir()
    (tasks / "mi_tarea.yaml").write_text(
        "task: mi_tarea\ndataset_path: nadie/no-existe\ntest_split: test\noutput_type: multiple_choice\n"
        "doc_to_text: '{{q}}'\ndoc_to_choice: ['a', 'b']\ndoc_to_target: 0\n", encoding="utf-8")
    config = HarnessConfig(model="tiny-llama", tasks=["mi_tarea"], include_path=[str(tasks)], out=str(tmp_path / "e"))
    with pytest.raises(AmautaError, match=r"^mi_tarea: lm-eval cannot load its data \(") as err:
        run(config, show_progress=False)
    assert "\n" not in str(err.value)
    with pytest.raises(AmautaError, match=r"--include-path: .*missing is not a folder"):
        run(config.model_copy(update={"include_path": [str(tmp_path / "missing")]}), show_progress=False)


def test_missing_lm_eval_says_how_to_install_it(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "lm_eval", None)  # `import lm_eval` raises ImportError
    config = HarnessConfig(model="tiny-llama", data=str(SAMPLE), out=str(tmp_path / "eval"))
    with pytest.raises(AmautaError, match=r"not installed; install it with: pip install 'amauta\[eval\]'") as err:
        run(config, loader=_no_loader, show_progress=False)
    assert "\n" not in str(err.value)


def test_cli_refuses_a_hub_task_offline_with_one_error_line(tmp_path):
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO / "src")}
    env.pop("HF_DATASETS_OFFLINE", None)
    result = subprocess.run([sys.executable, "-m", "amauta.cli", "eval", "harness", "-m", "tiny-llama",
                             "--tasks", "xnli_es", "-o", str(tmp_path / "eval")],
                            capture_output=True, text=True, env=env, timeout=300)
    assert result.returncode == 2
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: --tasks: 'xnli_es' is not a local task")


def test_cli_runs_a_group_of_your_own_tasks_quietly(tmp_path):
    """--include-path: a group over two task YAMLs; each subtask gets its rows, the group lm-eval's aggregate;
    with --no-progress nothing but the tables is printed (no tqdm bars, no git noise)."""
    import yaml

    from amauta.evaluate.harness import bundled_tasks

    tasks = tmp_path / "tareas"
    tasks.mkdir()
    for name in ("mi_a", "mi_b"):
        spec = yaml.safe_load(bundled_tasks()["amauta_belebele_es"].read_text(encoding="utf-8"))
        spec.update(task=name, dataset_kwargs={"data_files": {"test": str(SAMPLE)}})
        (tasks / f"{name}.yaml").write_text(yaml.safe_dump(spec, allow_unicode=True), encoding="utf-8")
    (tasks / "mi_grupo.yaml").write_text(
        "group: mi_grupo\ntask: [mi_a, mi_b]\naggregate_metric_list:\n  - metric: acc\n    aggregation: mean\n"
        "metadata:\n  version: 1.0\n", encoding="utf-8")
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO / "src"),
           "COLUMNS": "200"}
    result = subprocess.run([sys.executable, "-m", "amauta.cli", "eval", "harness", "-m", "tiny-llama",
                             "--tasks", "mi_grupo", "--include-path", str(tasks), "--limit", "3", "--no-progress",
                             "-o", str(tmp_path / "eval")], capture_output=True, text=True, env=env, timeout=600)
    assert result.returncode == 0, result.stderr
    assert result.stderr.strip() == ""
    assert "mi_grupo (version 1.0, 0-shot, group of 2)" in result.stdout and "it/s" not in result.stdout
    summary = load_summary(tmp_path / "eval")
    assert set(summary["tasks"]) == {"mi_a", "mi_b", "mi_grupo"}
    assert summary["tasks"]["mi_grupo"]["subtasks"] == ["mi_a", "mi_b"]
    parts = [summary["tasks"][t]["models"]["base"]["metrics"]["acc"]["value"] for t in ("mi_a", "mi_b")]
    assert summary["tasks"]["mi_grupo"]["models"]["base"]["metrics"]["acc"]["value"] == pytest.approx(sum(parts) / 2)
    assert len(_samples(tmp_path / "eval", summary, "mi_b", "base")) == 3


def test_chat_template_is_amautas_with_the_runs_system_prompt(tmp_path):
    """--apply-chat-template renders through the model's Amauta template (tiny-llama: Llama 2's [INST]), which
    the tokenizer has no jinja copy of, with --system in it; the shots as earlier turns."""
    config = HarnessConfig(model="tiny-llama", tasks=["amauta_belebele_es_cloze"], data=str(SAMPLE), limit=2,
                           num_fewshot=1, apply_chat_template=True, system_prompt="Eres útil.", out=str(tmp_path / "e"))
    summary = load_summary(run(config, show_progress=False))
    assert summary["tasks"]["amauta_belebele_es_cloze"]["n_shot"] == 1
    context, continuation = _samples(tmp_path / "e", summary, "amauta_belebele_es_cloze", "base")[0]["arguments"][0]
    assert context.startswith("<s>[INST] <<SYS>>\nEres útil.\n<</SYS>>\n\nPasaje: ")
    assert context.count("[INST]") == 2 and context.endswith("Respuesta: [/INST]")
    assert continuation == "Subir al volcán más cercano el primer día"


def test_cloze_task_scores_as_amauta_belebele_cloze(tmp_path):
    """The bundled cloze task under lm-eval and `eval belebele --formulation cloze --prompt es` give each option
    the same log-probability: two independent implementations of one prompt check each other."""
    from amauta.evaluate import belebele

    harness_dir = run(HarnessConfig(model="tiny-llama", tasks=["amauta_belebele_es_cloze"], data=str(SAMPLE),
                                    limit=LIMIT, out=str(tmp_path / "h")), show_progress=False)
    summary = load_summary(harness_dir)
    belebele.run(belebele.BelebeleConfig(model="tiny-llama", data=str(SAMPLE), limit=LIMIT, formulation="cloze",
                                         prompt="es", out=str(tmp_path / "b")), show_progress=False)
    ours = {row["item_id"]: row for row in map(json.loads, (tmp_path / "b" / "items.jsonl").read_text().splitlines())}
    rows = _samples(harness_dir, summary, "amauta_belebele_es_cloze", "base")
    assert len(rows) == len(ours) == LIMIT
    for row in rows:
        mine = ours[row["doc"]["id"]]
        assert [ll for ll, _ in row["filtered_resps"]] == pytest.approx(mine["logprobs"], abs=1e-3)
        assert bool(row["acc"]) == mine["correct"]


@pytest.mark.integration
@pytest.mark.slow  # 8 items took 8 min here at load average 12 on 2 shared cores (now 4 items)
def test_smollm2_letter_task_matches_eval_belebele_on_shared_items(shared_data, tmp_path):
    """SmolLM2 on 4 items of the Spanish Belebele dev file: `amauta_belebele_es` under lm-eval and `eval
    belebele --formulation letter --prompt lm-eval` (the same template) give each letter the same log-prob."""
    from amauta.evaluate import belebele

    data = str(shared_data / "belebele-es" / "dev.jsonl")
    folder = run(HarnessConfig(model="smollm2-135m-instruct", tasks=["amauta_belebele_es"], data=data, limit=4,
                               out=str(tmp_path / "h")), show_progress=False)
    summary = load_summary(folder)
    belebele.run(belebele.BelebeleConfig(model="smollm2-135m-instruct", data=data, limit=4, formulation="letter",
                                         prompt="lm-eval", out=str(tmp_path / "b")), show_progress=False)
    ours = {row["item_id"]: row for row in map(json.loads, (tmp_path / "b" / "items.jsonl").read_text().splitlines())}
    rows = _samples(folder, summary, "amauta_belebele_es", "base")
    assert summary["tasks"]["amauta_belebele_es"]["n_samples"] == {"original": 244, "effective": 4}
    for row in rows:
        mine = ours[str(row["doc"]["id"])]
        assert [ll for ll, _ in row["filtered_resps"]] == pytest.approx(mine["logprobs"], abs=1e-3)
