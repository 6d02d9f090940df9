"""`data build-exam` against the fake OpenAI-compatible server: items, splits, validation, cache, resume."""

from __future__ import annotations

import json
import os
import re
import shutil
from collections import Counter
from pathlib import Path

import pytest

from amauta.core.errors import AmautaError
from amauta.data.build_exam import BuildExamConfig, assign_splits, run, validate_reply
from amauta.data.exam_items import ABSTAIN_OPTION, exam_design_problems, read_exam
from amauta.llm.fake_server import FakeHTTPError, FakeOpenAIServer

REPO = Path(__file__).resolve().parents[2]
DOCS = REPO / "examples" / "docs"


@pytest.fixture(autouse=True)
def _home(tmp_path, monkeypatch):
    monkeypatch.setenv("AMAUTA_HOME", str(tmp_path / "home"))


def where(messages) -> str:
    """'rimpe.md Art. 2' from the prompt's "Fuente:" line."""
    user = next(m["content"] for m in messages if m["role"] == "user")
    match = re.search(r"Fuente: (\S+?)(?:, (Art\. [\w.]+(?: bis)?))?(?: \(|\n)", user)
    return f"{match.group(1)} {match.group(2) or 'intro'}"


def exam_reply(messages) -> str:
    """One fact in six wordings and one unanswerable question in three, per chunk; a shared question too."""
    at = where(messages)
    reply = {
        "facts": [{"questions": [f"¿Qué porcentaje fija {at}? (forma {k})" for k in range(5)]
                   + ["¿Dónde se consulta la normativa vigente?"],
                   "answer": "15%", "distractors": ["12%", "10%", "30%"],
                   "reference": f"Según {at}, el porcentaje es del 15%.", "key_facts": ["15%"]},
                  {"questions": ["sin respuesta ni distractores"], "answer": "", "distractors": []}],
        "unanswerable": [{"questions": [f"¿Cuál es la multa por incumplir {at}? (forma {k})" for k in range(3)],
                          "distractors": ["USD 30", "USD 100"]}],
    }
    return "Aquí está el examen:\n```json\n" + json.dumps(reply, ensure_ascii=False) + "\n```"


def config(tmp_path, url, docs=(DOCS,), **kw) -> BuildExamConfig:
    return BuildExamConfig(docs=[str(d) for d in docs], out=str(tmp_path / "exam.jsonl"), base_url=url,
                           model="fake-model", **kw)


def read(path) -> list[dict]:
    return [json.loads(line) for line in Path(path).read_text(encoding="utf-8").splitlines()]


def test_items_are_valid_exam_items_with_splits_groups_and_provenance(tmp_path):
    server = FakeOpenAIServer(exam_reply)
    with server as url:
        out = run(config(tmp_path, url))
    chunks = server.chat_requests
    items = read_exam(out)  # the exam reader accepts every line
    rows = read(out)
    prompt = server.requests[0]["messages"]
    assert prompt[0]["role"] == "system" and "examen" in prompt[1]["content"] and "JSON" in prompt[1]["content"]
    assert "6 preguntas distintas" in prompt[1]["content"]
    # per chunk one fact (the broken one is dropped) and one unanswerable question; the shared question once
    answerable = [i for i in items if i.answerable]
    assert len({i.fact_id for i in answerable}) == chunks
    assert len(answerable) == chunks * 5 + 1 and sum(not i.answerable for i in items) == chunks * 3
    assert sum(not i.answerable for i in items) / len(items) >= 0.15
    for item in items:
        assert item.options[-1] == ABSTAIN_OPTION
        if item.answerable:
            assert item.gold_option == "15%" and item.key_facts == ["15%"]
            assert set(item.distractor_facts) == {"12%", "10%", "30%"}
        else:
            assert item.gold_option == ABSTAIN_OPTION and item.reference == ABSTAIN_OPTION and item.key_facts == []
    assert len({i.gold for i in answerable}) > 1  # the options are shuffled, the answer is not always first
    # splits by fact: one dev, three test, the rest train (document-only facts and unanswerable: no train)
    for fact in {i.fact_id for i in items}:
        splits = Counter(i.split for i in items if i.fact_id == fact)
        group = next(i.group for i in items if i.fact_id == fact)
        assert splits["dev"] == 1 and splits["test"] >= 1
        assert splits["train"] == 0 or group == "qa"
    groups = Counter(next(i.group for i in items if i.fact_id == f) for f in {i.fact_id for i in answerable})
    assert groups["qa"] and groups["document_only"]  # both groups drawn with the seed
    art5 = next(r for r in rows if "retenciones.pdf Art. 5" in r["question"])
    assert art5["source"] == {"file": "retenciones.pdf", "article": "Art. 5"} and art5["page"] == 2
    assert art5["model"] == "fake-model" and art5["prompt_version"] == "exam-es-v1" and len(art5["prompt_hash"]) == 16
    assert art5["chunk_text"].startswith("Art. 5.- Retención del IVA")
    manifest = json.loads((tmp_path / "exam.manifest.json").read_text())
    assert manifest["stage"] == "data.build_exam" and manifest["summary"]["items"] == len(items)
    assert manifest["summary"]["duplicate_questions_dropped"] == chunks - 1
    assert manifest["design_problems"] == exam_design_problems(items)


def test_the_same_seed_gives_the_same_exam_and_another_seed_another_one(tmp_path):
    with FakeOpenAIServer(exam_reply) as url:
        run(config(tmp_path, url, docs=[DOCS / "rimpe.md"]))
        first = read(tmp_path / "exam.jsonl")
        run(config(tmp_path, url, docs=[DOCS / "rimpe.md"]))
        assert read(tmp_path / "exam.jsonl") == first
        (tmp_path / "other").mkdir()
        other = BuildExamConfig(docs=[str(DOCS / "rimpe.md")], out=str(tmp_path / "other" / "exam.jsonl"),
                                base_url=url, model="fake-model", seed=1)
        run(other)
    assert [(r["id"], r["options"]) for r in read(tmp_path / "other" / "exam.jsonl")] != \
        [(r["id"], r["options"]) for r in first]


def test_unchanged_chunks_are_never_asked_twice_and_a_crash_resumes(tmp_path):
    docs = tmp_path / "docs"
    shutil.copytree(DOCS, docs, ignore=shutil.ignore_patterns("*.pdf", "*.html"))
    calls = {"n": 0}

    def dies_after_three(messages):
        calls["n"] += 1
        if calls["n"] > 3:
            raise FakeHTTPError(400, "el servidor se cayó")  # not retried: the run stops here
        return exam_reply(messages)

    with FakeOpenAIServer(dies_after_three) as url:
        with pytest.raises(AmautaError, match="el servidor se cayó"):
            run(config(tmp_path, url, docs=[docs]))
    assert not (tmp_path / "exam.jsonl").exists()  # nothing half-written
    port = int(url.rsplit(":", 1)[1].split("/")[0])
    server = FakeOpenAIServer(exam_reply, port=port)  # the same endpoint comes back
    with server as url:
        run(config(tmp_path, url, docs=[docs]))
        asked = server.chat_requests
        run(config(tmp_path, url, docs=[docs]))
        assert server.chat_requests == asked  # all from the cache
    assert len({r["chunk_id"] for r in read(tmp_path / "exam.jsonl")}) == asked + 3


def test_a_broken_reply_is_sent_back_with_the_reason_then_recorded(tmp_path):
    def reply(messages):
        if "Art. 2" in where(messages):
            # its only distractor is the answer written another way: two options say the same
            return json.dumps({"facts": [{"questions": ["¿Cuánto?"], "answer": "USD 20.000",
                                          "distractors": ["20000 dólares"], "key_facts": ["USD 20.000"]}]})
        return exam_reply(messages)

    server = FakeOpenAIServer(reply)
    with server as url:
        run(config(tmp_path, url, docs=[DOCS / "rimpe.md"], retries=1))
    failures = read(tmp_path / "exam.failures.jsonl")
    assert len(failures) == 1 and failures[0]["article"] == "Art. 2" and len(failures[0]["raw_replies"]) == 2
    corrective = next(r["messages"][-1]["content"] for r in server.requests if len(r["messages"]) > 2)
    assert "no tiene distractores" in corrective and "no se pudo usar" in corrective
    assert "rimpe-art-2" not in " ".join(r["fact_id"] for r in read(tmp_path / "exam.jsonl"))


def test_a_file_build_exam_did_not_write_or_one_edited_since_is_never_overwritten(tmp_path):
    mine = tmp_path / "exam.jsonl"
    mine.write_text('{"mío": 1}\n', encoding="utf-8")
    with FakeOpenAIServer(exam_reply) as url:
        with pytest.raises(AmautaError, match="build-exam did not write it"):
            run(config(tmp_path, url, docs=[DOCS / "rimpe.md"]))
        assert mine.read_text(encoding="utf-8") == '{"mío": 1}\n'
        mine.unlink()
        run(config(tmp_path, url, docs=[DOCS / "rimpe.md"]))
        edited = mine.read_text(encoding="utf-8").replace("15%", "16%", 1)
        mine.write_text(edited, encoding="utf-8")
        with pytest.raises(AmautaError, match="edited since build-exam wrote it"):
            run(config(tmp_path, url, docs=[DOCS / "rimpe.md"]))
        assert mine.read_text(encoding="utf-8") == edited
        # A run killed after its manifest but before its file leaves the previous file: still build-exam's.
        mine.unlink()
        run(config(tmp_path, url, docs=[DOCS / "rimpe.md"]))
        first = mine.read_bytes()
        run(config(tmp_path, url, docs=[DOCS / "rimpe.md"], seed=3), llm=None)
        second = mine.read_bytes()
        mine.write_bytes(first)  # as if the last write never happened
        run(config(tmp_path, url, docs=[DOCS / "rimpe.md"], seed=3))
        assert mine.read_bytes() == second


def test_validate_reply_and_splits():
    cfg = BuildExamConfig(docs=["x"], facts_per_chunk=1)
    good = {"questions": ["¿Tarifa?", "¿tarifa?"], "answer": "15%", "distractors": ["12%", "15 %", "10%"],
            "key_facts": ["15%"]}
    value = validate_reply({"hechos": [good, good]}, cfg)
    assert len(value["facts"]) == 1 and value["facts"][0]["questions"] == ["¿Tarifa?"]  # duplicates dropped
    assert value["facts"][0]["distractors"] == ["12%", "10%"] and value["unanswerable"] == []
    with pytest.raises(ValueError, match="no tiene distractores"):
        validate_reply({"facts": [{"questions": ["q"], "answer": "USD 20.000", "distractors": ["20000 dólares"]}]}, cfg)
    with pytest.raises(ValueError, match="options 0 and 2 say the same"):  # the exam validator's own reason
        validate_reply({"facts": [{"questions": ["q"], "answer": ABSTAIN_OPTION, "distractors": ["USD 5"]}]}, cfg)
    with pytest.raises(ValueError, match="objeto JSON"):
        validate_reply("texto", cfg)
    assert assign_splits(6, False, True) == ["dev", "test", "test", "test", "train", "train"]
    assert assign_splits(6, True, True) == ["dev"] + ["test"] * 5
    assert assign_splits(3, False, False) == ["dev", "test", "test"] and assign_splits(1, False, True) == ["test"]


def test_cli_build_exam(tmp_path):
    from typer.testing import CliRunner

    from amauta.cli import app

    with FakeOpenAIServer(exam_reply) as url:
        result = CliRunner().invoke(app, ["data", "build-exam", str(DOCS / "rimpe.md"), "--out", str(tmp_path / "e.jsonl"),
                                          "--base-url", url, "--model", "fake", "--api-key", "sk-secreta"])
    assert result.exit_code == 0, result.output
    assert "build-exam: 41 items" in result.output and len(read_exam(tmp_path / "e.jsonl")) == 41
    for path in tmp_path.rglob("*"):
        if path.is_file():
            assert "sk-secreta" not in path.read_text(encoding="utf-8", errors="replace"), path


def test_cli_build_exam_reads_a_yaml_config_and_its_flags_win(tmp_path, monkeypatch):
    """`--config exam.yaml` first, the flags over it; every BuildExamConfig field is a flag (here --timeout)."""
    from typer.testing import CliRunner

    from amauta.cli import app
    from amauta.data import build_exam

    seen = []
    monkeypatch.setattr(build_exam, "run", seen.append)
    (tmp_path / "exam.yaml").write_text(f"docs: [{DOCS}]\nfacts_per_chunk: 4\nseed: 7\n", encoding="utf-8")
    result = CliRunner().invoke(app, ["data", "build-exam", "-c", str(tmp_path / "exam.yaml"), "--seed", "9",
                                      "--timeout", "5", "-m", "fake"])
    assert result.exit_code == 0, result.output
    (cfg,) = seen
    assert (cfg.docs, cfg.facts_per_chunk, cfg.seed, cfg.timeout, cfg.model) == ([str(DOCS)], 4, 9, 5.0, "fake")
    bare = CliRunner().invoke(app, ["data", "build-exam", "--seed", "1"])
    assert isinstance(bare.exception, AmautaError) and "give at least one document" in str(bare.exception)


def test_too_few_unanswerable_items_are_named_in_the_summary_and_the_manifest(tmp_path):
    from rich.console import Console

    screen = Console(record=True, width=200, file=open(os.devnull, "w"))
    with FakeOpenAIServer(exam_reply) as url:
        run(config(tmp_path, url, docs=[DOCS / "rimpe.md"], unanswerable_per_chunk=0), console=screen)
    assert "unanswerable items are 0% of the exam, below 15%" in screen.export_text()
    problems = json.loads((tmp_path / "exam.manifest.json").read_text())["design_problems"]
    assert "unanswerable items are 0% of the exam, needs 15%" in problems
    assert all(i.answerable for i in read_exam(tmp_path / "exam.jsonl"))
