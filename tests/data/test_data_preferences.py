"""Preference data: the readers (pairs as text or messages, scored lists, KTO), bad rows refused in one
line naming file:line with nothing written, and pairs from a judge run's scores."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from amauta.core.errors import AmautaError
from amauta.data.preferences import (
    Preference,
    Unpaired,
    pairs_from_judge,
    read_preference_dir,
    read_preference_file,
    write_preference_dir,
)

REPO = Path(__file__).resolve().parents[2]


def _write(path: Path, rows: list) -> Path:
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    return path


def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "amauta.cli", "data", "preferences", *args], cwd=REPO,
                          capture_output=True, text=True, timeout=120)


def test_pair_forms_scored_lists_and_kto_rows_become_examples(tmp_path):
    path = _write(tmp_path / "p.jsonl", [
        {"prompt": "¿Capital de Perú?", "chosen": "Lima.", "rejected": "Cusco."},
        {"prompt": [{"role": "system", "content": "Sé breve."}, {"role": "user", "content": "¿2 + 2?"}],
         "chosen": [{"role": "assistant", "content": "4."}], "rejected": [{"role": "assistant", "content": "5."}]},
        {"chosen": [{"role": "user", "content": "Hola"}, {"role": "assistant", "content": "¡Hola! ¿En qué ayudo?"}],
         "rejected": [{"role": "user", "content": "Hola"}, {"role": "assistant", "content": "No."}]},
        {"instruction": "Nombra un color.", "completions": [{"response": "Gris.", "score": 3},
                                                            {"response": "Azul.", "overall_score": 5},
                                                            {"response": "Mesa.", "rating": 1}]},
        {"prompt": "Di sí.", "completions": [{"text": "Sí.", "score": 4}, {"text": "Si", "score": 3.5}]},
        {"prompt": "¿Es el SRI una entidad pública?", "completion": "Sí, lo es.", "label": True},
    ])
    examples, no_gap = read_preference_file(path, min_gap=1)
    assert no_gap == 1  # 4 vs 3.5 is closer than the gap
    a, b, c, d, kto = examples
    assert (a.prompt, a.chosen, a.rejected) == ([{"role": "user", "content": "¿Capital de Perú?"}], "Lima.", "Cusco.")
    assert b.prompt[0] == {"role": "system", "content": "Sé breve."} and (b.chosen, b.rejected) == ("4.", "5.")
    assert c.prompt == [{"role": "user", "content": "Hola"}] and c.rejected == "No."
    assert (d.chosen, d.rejected) == ("Azul.", "Mesa.")  # best against worst
    assert isinstance(kto, Unpaired) and kto.label is True
    assert len({e.id for e in examples}) == 5


@pytest.mark.parametrize("row, message", [
    ({"prompt": "¿Capital?", "chosen": "Quito."}, "missing 'rejected'"),
    ({"prompt": "¿Capital?", "chosen": "Quito.", "rejected": "Quito."}, "'chosen' and 'rejected' are the same text"),
    ({"prompt": "¿Capital?", "chosen": "  ", "rejected": "Lima."}, "'chosen' is empty"),
    ({"prompt": "", "chosen": "Quito.", "rejected": "Lima."}, "'prompt' is empty"),
    ({"prompt": "¿Capital?", "completion": "Quito.", "label": "sí"}, "'label' must be true"),
    ({"prompt": "¿Capital?", "completions": [{"response": "Quito.", "score": 5}, {"response": "", "score": 1}]},
     "(completion 2): 'response' is empty"),
])
def test_bad_rows_are_refused_in_one_line_naming_file_and_line(tmp_path, row, message):
    path = _write(tmp_path / "p.jsonl", [{"prompt": "Hola", "chosen": "Hola, ¿cómo estás?", "rejected": "Chao."}, row])
    with pytest.raises(AmautaError) as caught:
        read_preference_file(path)
    text = str(caught.value)
    assert f"{path}:2" in text and message in text and "\n" not in text


def test_cli_writes_nothing_on_a_bad_row_and_a_readable_folder_on_good_data(tmp_path):
    bad = _write(tmp_path / "bad.jsonl", [{"prompt": "¿Capital?", "chosen": "Quito.", "rejected": "Quito."}])
    refused = _cli(str(bad), "--out", str(tmp_path / "prefs"))
    assert refused.returncode == 2 and f"{bad}:1" in refused.stderr and "Traceback" not in refused.stderr
    assert not (tmp_path / "prefs").exists()

    made = _cli(str(REPO / "examples" / "data" / "preferences_es.jsonl"), str(REPO / "examples" / "data" / "kto_es.jsonl"),
                "--out", str(tmp_path / "prefs"))
    assert made.returncode == 0, made.stderr
    folder = read_preference_dir(tmp_path / "prefs")
    assert folder.manifest["stage"] == "data.preferences"
    assert any(isinstance(e, Preference) for e in folder.train) and any(isinstance(e, Unpaired) for e in folder.train)
    assert len(folder.train) + len(folder.val) == folder.manifest["counts"]["pairs"] + folder.manifest["counts"]["unpaired"]
    again = _cli(str(REPO / "examples" / "data" / "preferences_es.jsonl"), "--out", str(tmp_path / "prefs"))
    assert again.returncode == 2 and "--overwrite" in again.stderr  # other inputs: refused, nothing replaced
    assert read_preference_dir(tmp_path / "prefs").manifest == folder.manifest


def _judge_folder(folder: Path) -> Path:
    """A judge run folder's items.jsonl: 3 attempts of two candidates per prompt, scored 1-5."""
    folder.mkdir()
    rows = []
    scores = {"p1": [4.5, 2.0, 3.0, 5.0, 1.0, 4.0], "p2": [3.0, 3.5, 3.0, 3.0, 3.25, 3.0], "p3": [5.0]}
    for item, values in scores.items():
        for n, overall in enumerate(values):
            rows.append({"candidate": ["base", "sft"][n % 2], "item": item, "turn": 0, "attempt": n // 2,
                         "category": "ley", "prompt": f"Pregunta {item}", "answer": f"Respuesta {item} número {n}",
                         "overall": overall, "scores": {"accuracy": overall}})
    rows.append({"candidate": "base", "item": "p1", "turn": 1, "attempt": 0, "category": "ley",
                 "prompt": "¿Y luego?", "answer": "Luego nada.", "overall": 5.0})
    rows.append({"candidate": "base", "item": "p1", "turn": 0, "attempt": 9, "category": "ley",
                 "prompt": "Pregunta p1", "answer": "", "overall": None})
    _write(folder / "items.jsonl", rows)
    return folder


def test_pairs_from_judge_take_best_against_worst_with_a_minimum_gap(tmp_path):
    judge = _judge_folder(tmp_path / "judge-law-ec")
    pairs, skipped = pairs_from_judge(judge, min_gap=1)
    assert [(p.id, p.chosen, p.rejected) for p in pairs] == [("judge-p1", "Respuesta p1 número 3", "Respuesta p1 número 4")]
    assert pairs[0].prompt == [{"role": "user", "content": "Pregunta p1"}]
    assert skipped == {"unscored": 1, "later_turns": 1, "gap_too_small": 1, "single_answer": 1}
    assert len(pairs_from_judge(judge, min_gap=0.5)[0]) == 2  # p2: 3.5 against 3.0
    with pytest.raises(AmautaError, match="no prompt has two judged answers 5 or more points apart"):
        pairs_from_judge(judge, min_gap=5)
    with pytest.raises(AmautaError, match="no items.jsonl"):
        pairs_from_judge(tmp_path)


def test_cli_from_judge_writes_a_folder_that_training_reads(tmp_path):
    judge = _judge_folder(tmp_path / "judge")
    made = _cli("--from-judge", str(judge), "--out", str(tmp_path / "prefs"), "--min-gap", "0.5", "--val-fraction", "0")
    assert made.returncode == 0, made.stderr
    folder = read_preference_dir(tmp_path / "prefs")
    assert sorted(p.id for p in folder.train) == ["judge-p1", "judge-p2"] and folder.val == []
    assert str(judge / "items.jsonl") in folder.manifest["inputs"]


def test_written_folder_refuses_duplicate_ids_and_reads_back(tmp_path):
    pair = Preference(id="x", prompt=[{"role": "user", "content": "¿Sí?"}], chosen="Sí.", rejected="No.")
    with pytest.raises(AmautaError, match="duplicate preference id 'x'"):
        write_preference_dir(tmp_path / "out", [pair, pair], config={}, inputs=[], val_fraction=0)
    assert not (tmp_path / "out").exists()
    write_preference_dir(tmp_path / "out", [pair], config={}, inputs=[], val_fraction=0)
    assert read_preference_dir(tmp_path / "out").train == [pair]


def test_pipeline_step_data_preferences_writes_the_folder(tmp_path):
    from amauta.pipeline import run_pipeline

    pipeline = tmp_path / "prefs.yaml"
    pipeline.write_text(json.dumps({"name": "prefs", "out": str(tmp_path / "out"), "steps": [
        {"name": "prefs", "uses": "data.preferences",
         "with": {"files": [str(REPO / "examples" / "data" / "preferences_es.jsonl")], "out": "${out}/prefs",
                  "val_fraction": 0}}]}))
    run_pipeline(pipeline)
    folder = read_preference_dir(tmp_path / "out" / "prefs")
    assert len(folder.train) == 12 and folder.val == []
