"""`data review` on exam items: accept / fix / reject, checked fixes, exam lines out, hand edits kept."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from rich.console import Console

from amauta.core.errors import AmautaError
from amauta.data.exam_items import ABSTAIN_OPTION, read_exam
from amauta.data.review import decisions_path, review


def make_exam(tmp_path, n=3) -> Path:
    rows = []
    for i in range(n):
        rows.append({"id": f"f{i}.test.1", "fact_id": f"f{i}", "split": "test", "answerable": True,
                     "source": {"file": "iva.md", "article": f"Art. {i}"}, "question": f"¿Tarifa {i}?",
                     "options": ["12%", "15%", ABSTAIN_OPTION], "gold": 1, "reference": "Es del 15%.",
                     "key_facts": ["15%"], "distractor_facts": ["12%"], "kind": "fact", "group": "qa",
                     "chunk_id": f"c{i}", "chunk_text": f"Art. {i}.- La tarifa es del 15%.", "model": "fake"})
    path = tmp_path / "exam.jsonl"
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    return path


def scripted(*answers):
    queue = list(answers)

    def ask(prompt):
        ask.prompts.append(prompt)
        if not queue:
            raise EOFError
        return queue.pop(0)

    ask.prompts = []
    return ask


def quiet() -> Console:
    return Console(file=open(os.devnull, "w"), width=120)


def read(path) -> list[dict]:
    return [json.loads(line) for line in Path(path).read_text(encoding="utf-8").splitlines()]


def test_accept_fix_reject_write_exam_lines(tmp_path):
    exam = make_exam(tmp_path)
    original = exam.read_bytes()
    screen = Console(record=True, width=160, file=open(os.devnull, "w"))
    # f0 accepted; f1 fixed: new question, options, gold 3 (1-based), reference and key facts kept; f2 rejected
    fix = ["e", "¿Qué tarifa rige hoy?", "12% ; 10% ; 15% ; " + ABSTAIN_OPTION, "3", "", "", "12% ; 10%"]
    summary = review(exam, ask=scripted("a", *fix, "r"), console=screen)
    assert (summary.accepted, summary.edited, summary.rejected, summary.pending) == (2, 1, 1, 0)
    text = screen.export_text()
    assert "Pregunta" in text and "Opciones" in text and "✓ 2. 15%" in text and "Fuente: iva.md, Art. 0" in text
    accepted = tmp_path / "exam.accepted.jsonl"
    rows = read(accepted)
    assert [r["id"] for r in rows] == ["f0.test.1", "f1.test.1"] and "chunk_text" not in rows[0]
    assert rows[1]["question"] == "¿Qué tarifa rige hoy?" and rows[1]["gold"] == 2 and rows[1]["edited"] is True
    assert rows[1]["options"][2] == "15%" and rows[1]["distractor_facts"] == ["12%", "10%"]
    assert rows[0]["model"] == "fake" and rows[0]["source"] == {"file": "iva.md", "article": "Art. 0"}
    assert [i.id for i in read_exam(accepted)] == ["f0.test.1", "f1.test.1"]  # an exam file `eval exam` reads
    assert exam.read_bytes() == original
    assert [d["decision"] for d in read(decisions_path(exam))] == ["accept", "edit", "reject"]


def test_a_fix_that_breaks_the_item_is_refused_and_the_item_stays_pending(tmp_path):
    exam = make_exam(tmp_path, n=1)
    screen = Console(record=True, width=160, file=open(os.devnull, "w"))
    # options without the abstention option: the exam validator refuses the fix
    ask = scripted("e", "", "12% ; 15%", "", "", "", "", "e", "", "", "9", "", "", "", "q")
    summary = review(exam, ask=ask, console=screen)
    text = screen.export_text()
    assert "lacks the option" in text and "el ítem sigue pendiente" in text
    assert "gold 8 but 3 options" in text  # a gold out of range, too
    assert summary.pending == 1 and not decisions_path(exam).exists()
    assert any("Nuevas opciones separadas por ';'" in p for p in ask.prompts)


def test_prompts_are_spanish_and_resume_and_undo_work_on_items(tmp_path):
    exam = make_exam(tmp_path)
    ask = scripted("a", "q")
    review(exam, ask=ask, console=quiet())
    assert "aceptar" in ask.prompts[0] and "rechazar" in ask.prompts[0]
    summary = review(exam, ask=scripted("u", "r", "a", "a"), console=quiet())
    assert [r["id"] for r in read(tmp_path / "exam.accepted.jsonl")] == ["f1.test.1", "f2.test.1"]
    assert (summary.rejected, summary.accepted, summary.pending) == (1, 2, 0)


def test_hand_edited_lines_of_the_accepted_exam_are_kept(tmp_path):
    exam = make_exam(tmp_path)
    accepted = tmp_path / "exam.accepted.jsonl"
    review(exam, ask=scripted("a", "a", "q"), console=quiet())
    rows = read(accepted)
    rows[1]["reference"] = "La tarifa general es del 15%, corregida a mano."
    accepted.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    summary = review(exam, ask=scripted("a"), console=quiet())
    after = read(accepted)
    assert [r["id"] for r in after] == ["f0.test.1", "f1.test.1", "f2.test.1"]
    assert after[1]["reference"].endswith("corregida a mano.") and summary.hand_kept == 1


def test_a_bad_exam_line_is_one_error_naming_file_and_line(tmp_path):
    exam = make_exam(tmp_path)
    lines = exam.read_text(encoding="utf-8").splitlines()
    bad = json.loads(lines[1])
    bad["gold"] = 7
    exam.write_text("\n".join([lines[0], json.dumps(bad, ensure_ascii=False), lines[2]]) + "\n", encoding="utf-8")
    with pytest.raises(AmautaError, match=r"exam\.jsonl:2: item 'f1\.test\.1' has gold 7 but 3 options"):
        review(exam, ask=scripted(), console=quiet())
