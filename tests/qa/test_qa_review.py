"""`data review`: decisions saved at once, resume, undo, edits, Alpaca output; and the CLI end to end."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from rich.console import Console

from amauta.core.errors import AmautaError
from amauta.data.review import bookkeeping_path, decisions_path, review

REPO = Path(__file__).resolve().parents[2]


def make_qa(tmp_path, n=4) -> Path:
    rows = [{"id": f"p{i}", "instruction": f"¿Pregunta {i}?", "input": "", "output": f"Respuesta {i}.",
             "category": "dominio", "source": "docs/iva.md", "page": 1, "article": f"Art. {i}",
             "chunk_id": f"c{i}", "chunk_text": f"Art. {i}.- Texto del artículo {i}.", "model": "fake"} for i in range(n)]
    path = tmp_path / "qa.jsonl"
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    return path


def scripted(*answers):
    """An `ask` that replies from a list; running out is like closing the terminal (EOF)."""
    queue = list(answers)
    prompts = []

    def ask(prompt):
        prompts.append(prompt)
        if not queue:
            raise EOFError
        return queue.pop(0)

    ask.prompts = prompts
    return ask


def quiet() -> Console:
    return Console(file=open(os.devnull, "w"), width=100)


def read(path) -> list[dict]:
    return [json.loads(line) for line in Path(path).read_text(encoding="utf-8").splitlines()]


def test_decisions_are_saved_and_accepted_pairs_written_in_alpaca_form(tmp_path):
    qa = make_qa(tmp_path)
    original = qa.read_bytes()
    summary = review(qa, ask=scripted("a", "r", "e", "¿Pregunta editada?", "", "Respuesta\\ncorregida.", "s", "q"),
                     console=quiet())
    assert (summary.accepted, summary.edited, summary.rejected, summary.pending) == (2, 1, 1, 1)
    log = read(decisions_path(qa))
    assert [(d["pair_id"], d["decision"]) for d in log] == [("p0", "accept"), ("p1", "reject"), ("p2", "edit")]
    accepted = read(tmp_path / "qa.accepted.jsonl")
    assert [a["id"] for a in accepted] == ["p0", "p2"]
    assert accepted[1]["instruction"] == "¿Pregunta editada?" and accepted[1]["output"] == "Respuesta\ncorregida."
    assert accepted[1]["edited"] is True and accepted[0]["article"] == "Art. 0"
    assert "chunk_text" not in accepted[0] and {"instruction", "input", "output"} <= set(accepted[0])
    assert qa.read_bytes() == original  # the input is never modified


def test_resume_starts_with_the_first_undecided_pair(tmp_path):
    qa = make_qa(tmp_path)
    review(qa, ask=scripted("a", "s"), console=quiet())  # then EOF: the terminal closed
    ask = scripted("r", "a", "a")
    summary = review(qa, ask=ask, console=quiet())
    # p1 was skipped, so it comes back first; p0 is not shown again.
    decided = {d["pair_id"]: d["decision"] for d in read(decisions_path(qa))}
    assert decided == {"p0": "accept", "p1": "reject", "p2": "accept", "p3": "accept"}
    assert summary.pending == 0 and len(ask.prompts) == 3
    assert review(qa, ask=scripted(), console=quiet()).accepted == 3  # nothing left: just rewrites the output


def test_a_decision_torn_by_a_kill_is_asked_again(tmp_path):
    qa = make_qa(tmp_path, n=3)
    review(qa, ask=scripted("a", "r", "q"), console=quiet())
    log = decisions_path(qa)
    log.write_text(log.read_text(encoding="utf-8")[:-15], encoding="utf-8")  # the "reject" line is cut
    summary = review(qa, ask=scripted("a", "a"), console=quiet())
    assert (summary.accepted, summary.rejected, summary.pending) == (3, 0, 0)
    assert review(qa, ask=scripted(), console=quiet()).accepted == 3  # and the log still reads cleanly


def test_undo_brings_the_last_decision_back_even_after_a_restart(tmp_path):
    qa = make_qa(tmp_path, n=3)
    review(qa, ask=scripted("a", "a", "q"), console=quiet())
    summary = review(qa, ask=scripted("u", "r", "q"), console=quiet())
    decided = {d["pair_id"]: d["decision"] for d in read(decisions_path(qa)) if d["decision"] != "undone"}
    assert decided["p1"] == "reject"  # re-decided after the undo (the log keeps both)
    assert (summary.accepted, summary.rejected, summary.pending) == (1, 1, 1)


def test_invalid_choice_and_unchanged_edit_keep_the_pair_pending(tmp_path):
    qa = make_qa(tmp_path, n=1)
    summary = review(qa, ask=scripted("x", "e", "", "", "", "a"), console=quiet())
    assert [d["decision"] for d in read(decisions_path(qa))] == ["accept"]
    assert summary.accepted == 1 and summary.edited == 0


def test_bad_input_files_are_one_line_errors(tmp_path):
    bad = tmp_path / "malo.jsonl"
    bad.write_text('{"instruction": "q", "output": "r"}\n{"instruction": "q2"}\n', encoding="utf-8")
    with pytest.raises(AmautaError, match=r"malo\.jsonl: record 2: 'output' must be a non-empty string"):
        review(bad, ask=scripted(), console=quiet())
    broken = tmp_path / "roto.jsonl"
    broken.write_text('{"instruction": "q", "output": "r"}\n{"instruction": \n', encoding="utf-8")
    with pytest.raises(AmautaError, match=r"roto\.jsonl:2: invalid JSON"):
        review(broken, ask=scripted(), console=quiet())
    qa = make_qa(tmp_path)
    with pytest.raises(AmautaError, match="cannot overwrite the file under review"):
        review(qa, qa, ask=scripted(), console=quiet())


def test_hand_made_alpaca_file_without_ids(tmp_path):
    path = tmp_path / "mio.jsonl"
    path.write_text('{"instruction": "¿Qué es el RUC?", "output": "Un registro."}\n', encoding="utf-8")
    review(path, tmp_path / "ok.jsonl", ask=scripted("a"), console=quiet())
    [row] = read(tmp_path / "ok.jsonl")
    assert row["instruction"] == "¿Qué es el RUC?" and len(row["id"]) == 16


def test_accepted_pairs_are_read_by_the_dataset_readers(tmp_path):
    readers = pytest.importorskip("amauta.data.readers")
    qa = make_qa(tmp_path)
    review(qa, ask=scripted("a", "a", "r", "a"), console=quiet())
    result = readers.read_source(readers.SourceConfig(path=str(tmp_path / "qa.accepted.jsonl")))
    assert len(result.records) == 3
    assert result.records[0].messages[-1] == {"role": "assistant", "content": "Respuesta 0."}


def test_cli_build_qa_then_review(tmp_path):
    """The commands a person types, in a subprocess, against a fake endpoint started by the test."""
    from amauta.llm.fake_server import FakeOpenAIServer, unused_url

    env = dict(os.environ, AMAUTA_HOME=str(tmp_path / "home"), OMP_NUM_THREADS="1")
    amauta = [sys.executable, "-m", "amauta.cli"]
    reply = '[{"instruction": "¿Cuándo declaro el IVA?", "input": "", "output": "Cada mes."}]'
    with FakeOpenAIServer(lambda m: reply.replace("IVA", m[1]["content"][-40:-20])) as url:
        done = subprocess.run(amauta + ["data", "build-qa", str(REPO / "examples/docs/rimpe.md"), "--out",
                                        str(tmp_path / "qa.jsonl"), "--base-url", url, "--model", "fake",
                                        "--pairs-per-chunk", "1", "--api-key", "sk-x"],
                              capture_output=True, text=True, env=env, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "5 pairs from 5 chunks" in done.stderr
    review_run = subprocess.run(amauta + ["data", "review", str(tmp_path / "qa.jsonl")], input="a\nr\nq\n",
                                capture_output=True, text=True, env=env, timeout=120)
    assert review_run.returncode == 0, review_run.stderr
    assert "1 aceptados" in review_run.stdout and len(read(tmp_path / "qa.accepted.jsonl")) == 1
    down = subprocess.run(amauta + ["data", "build-qa", str(REPO / "examples/docs"), "--out", str(tmp_path / "b.jsonl"),
                                    "--base-url", unused_url(), "--model", "fake", "--max-retries", "1"],
                          capture_output=True, text=True, env=env, timeout=120)
    assert down.returncode == 2 and "no answer after" in down.stderr and "Traceback" not in down.stderr
    assert not (tmp_path / "b.jsonl").exists()


def write_rows(path, rows) -> None:
    Path(path).write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")


def test_hand_edits_to_the_accepted_file_survive_the_next_session(tmp_path):
    """Issue 10 item 4: a line added or edited by hand between sessions was dropped, even on a bare `q`."""
    qa = make_qa(tmp_path)
    accepted = tmp_path / "qa.accepted.jsonl"
    review(qa, ask=scripted("a", "a", "r", "q"), console=quiet())
    rows = read(accepted)
    rows[1]["output"] = "Respuesta 1, corregida a mano."  # edited in an editor
    mine = {"instruction": "¿Pregunta mía?", "input": "", "output": "Escrita a mano."}
    write_rows(accepted, [*rows, mine])
    summary = review(qa, ask=scripted("q"), console=quiet())
    assert read(accepted) == [*rows, mine]
    assert (summary.hand_kept, summary.hand_replaced) == (2, 0)
    # The next decision adds its row in input order; the user's lines stay, the added one last.
    review(qa, ask=scripted("a"), console=quiet())
    after = read(accepted)
    assert [r.get("id") for r in after] == ["p0", "p1", "p3", None]
    assert after[1]["output"] == "Respuesta 1, corregida a mano." and after[3] == mine


def test_a_new_decision_on_a_hand_edited_pair_replaces_it_and_keeps_a_copy(tmp_path):
    qa = make_qa(tmp_path, n=3)
    accepted = tmp_path / "qa.accepted.jsonl"
    review(qa, ask=scripted("a", "a", "q"), console=quiet())
    rows = read(accepted)
    rows[1]["output"] = "Editada a mano."
    write_rows(accepted, rows)
    # Undoing p1's accept alone takes nothing from the user's line.
    assert review(qa, ask=scripted("u", "q"), console=quiet()).hand_kept == 1 and read(accepted) == rows
    out = Console(record=True, width=200, file=open(os.devnull, "w"))
    summary = review(qa, ask=scripted("r", "q"), console=out)  # p1, pending since the undo, is rejected
    text = out.export_text()
    assert "editado a mano en qa.accepted.jsonl (línea 2)" in text  # warned before deciding
    assert "qa.accepted.jsonl:2 (p1)" in text and summary.hand_replaced == 1
    assert [r["id"] for r in read(accepted)] == ["p0"]
    assert [d["decision"] for d in read(decisions_path(qa))] == ["accept", "accept", "undone", "reject"]
    copies = [d for d in read(bookkeeping_path(qa)) if "replaced_hand_row" in d]
    assert copies == [{**copies[0], "pair_id": "p1", "line": 2, "replaced_hand_row": rows[1]}]


def test_rows_review_wrote_are_still_review_s_after_a_killed_session(tmp_path):
    """A session killed after its decisions but before writing leaves review's old rows: not the user's."""
    qa = make_qa(tmp_path, n=3)
    accepted = tmp_path / "qa.accepted.jsonl"
    review(qa, ask=scripted("a", "a", "q"), console=quiet())
    queue = ["u", "r"]

    def killed_after_two(prompt):
        if not queue:
            raise SystemExit(1)  # the terminal is closed hard: the accepted file is not rewritten
        return queue.pop(0)

    with pytest.raises(SystemExit):
        review(qa, ask=killed_after_two, console=quiet())
    assert [r["id"] for r in read(accepted)] == ["p0", "p1"]  # stale: p1 is rejected in the log
    summary = review(qa, ask=scripted("q"), console=quiet())
    assert [r["id"] for r in read(accepted)] == ["p0"] and summary.hand_kept == 0


def test_a_broken_hand_edit_is_refused_in_one_line_and_nothing_changes(tmp_path):
    qa = make_qa(tmp_path, n=2)
    accepted = tmp_path / "qa.accepted.jsonl"
    review(qa, ask=scripted("a", "q"), console=quiet())
    broken = accepted.read_text(encoding="utf-8") + '{"instruction": "a medias\n'
    accepted.write_text(broken, encoding="utf-8")
    with pytest.raises(AmautaError, match=r"qa\.accepted\.jsonl:2: invalid JSON .*fix it, then rerun review"):
        review(qa, ask=scripted("a"), console=quiet())
    assert accepted.read_text(encoding="utf-8") == broken
    assert [d["pair_id"] for d in read(decisions_path(qa))] == ["p0"]
