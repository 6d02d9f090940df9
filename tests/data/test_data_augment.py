"""`amauta data augment`: each recipe end to end (fake OpenAI server or the hand-written files), hold-out, bad input."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from amauta.core.errors import AmautaError
from amauta.data.augment import AugmentConfig, run
from amauta.data.dataset import read_dataset_dir
from amauta.llm.fake_server import FakeOpenAIServer

REPO = Path(__file__).resolve().parents[2]
DOCS = REPO / "examples" / "docs"
EXAM = REPO / "examples" / "exams" / "leyes.jsonl"
RESTATEMENTS = REPO / "examples" / "augment" / "leyes-restatements.jsonl"
HAND_QA = REPO / "examples" / "augment" / "leyes-qa.jsonl"
ALPACA = REPO / "examples" / "data" / "alpaca_es.jsonl"
MODEL = "tiny-mistral"  # only its tokenizer measures lengths: fast


@pytest.fixture(autouse=True)
def _home(tmp_path, monkeypatch):
    monkeypatch.setenv("AMAUTA_HOME", str(tmp_path / "home"))  # a fresh LLM cache per test


def fake_llm(messages):
    """Scripted replies to augment's three prompts, different for every chunk, style and question."""
    user = messages[-1]["content"]
    source = re.search(r"Fuente: (.+)", user)
    where = source.group(1).strip() if source else ""
    if "pares de pregunta y respuesta" in user:
        return json.dumps([{"instruction": f"¿Qué establece {where}?", "input": "", "output": f"Lo que dice {where}."},
                           {"instruction": f"¿A quién se aplica {where}?", "input": "", "output": f"A quien {where} nombra."}],
                          ensure_ascii=False)
    if user.startswith("Reescribe"):
        style = user.split("\n", 1)[0]
        return f"Versión propia de {where}: {style}."
    if "formas distintas" in user:
        question = user.rsplit("Pregunta:", 1)[1].strip()
        return json.dumps([f"Otra forma: {question}", f"Dicho de otro modo: {question}"], ensure_ascii=False)
    raise AssertionError(f"unexpected prompt: {user[:80]}")


def config(tmp_path, recipe, **extra) -> AugmentConfig:
    return AugmentConfig(docs=[str(DOCS)], recipe=recipe, model=MODEL, out=str(tmp_path / recipe), **extra)


def chats(folder):
    ds = read_dataset_dir(folder)
    return [r for r in ds.train + ds.val if not r.is_completion], [r for r in ds.train + ds.val if r.is_completion]


def test_qa_recipe_asks_the_llm_once_per_chunk_and_another_run_reads_the_cache(tmp_path):
    server = FakeOpenAIServer(fake_llm)
    cfg = config(tmp_path, "qa", llm={"base_url": server.start(), "model": "fake", "api_key": "sk-secret"})
    try:
        folder = run(cfg)
        asked = server.chat_requests
        again = run(cfg, out=tmp_path / "qa2")
    finally:
        server.stop()
    assert asked == 31 and server.chat_requests == asked  # 31 chunks of 80+ characters; the rerun asked nothing
    conversations, completions = chats(folder)
    assert not completions and len(conversations) == 2 * 31
    assert all(r.messages[0]["content"].startswith("¿") and r.messages[-1]["role"] == "assistant" for r in conversations)
    assert (again / "train.jsonl").read_bytes() == (folder / "train.jsonl").read_bytes()
    manifest = json.loads((folder / "manifest.json").read_text(encoding="utf-8"))
    assert manifest["stage"] == "data.prepare" and manifest["recipe"] == "qa" and manifest["made_by"] == "data.augment"
    assert manifest["template"] == "mistral" and "sk-secret" not in (folder / "manifest.json").read_text(encoding="utf-8")


def test_qa_rerun_into_the_same_folder_does_nothing_and_changed_inputs_are_refused(tmp_path):
    cfg = config(tmp_path, "qa", from_files=[str(HAND_QA)])
    folder = run(cfg)
    before = (folder / "train.jsonl").read_bytes()
    assert run(cfg) == folder and (folder / "train.jsonl").read_bytes() == before
    with pytest.raises(AmautaError, match=r"made from other inputs .*seed: 0 → 1.*--overwrite"):
        run(cfg.model_copy(update={"seed": 1}))
    run(cfg.model_copy(update={"seed": 1}), overwrite=True)


def test_paraphrase_recipe_with_the_llm_mixes_restatements_and_phrasings(tmp_path):
    with FakeOpenAIServer(fake_llm) as url:
        folder = run(config(tmp_path, "paraphrase", restatements=3, phrasings=3, llm={"base_url": url, "model": "f"}))
    conversations, completions = chats(folder)
    articles = 26
    assert len(completions) == articles * (1 + 3)  # each article as written plus 3 rewordings
    assert sum(r.text.startswith("Versión propia de iva.md, Art. 2:") for r in completions) == 3
    questions = [r.messages[0]["content"] for r in conversations]
    assert len(questions) == 31 * 2 * 3 and sum(q.startswith("Otra forma:") for q in questions) == 31 * 2
    assert all(not r.is_completion for r in read_dataset_dir(folder).val)  # documents always train


def test_paraphrase_from_the_hand_written_files_keeps_the_exam_held_out(tmp_path):
    from amauta.data.exam_items import iter_dataset_texts, leaked_questions, read_exam

    server = FakeOpenAIServer(fake_llm)  # configured, but never asked: --from replaces the LLM
    try:
        folder = run(config(tmp_path, "paraphrase", from_files=[str(RESTATEMENTS), str(HAND_QA)], exam=str(EXAM),
                            llm={"base_url": server.start()}))
    finally:
        server.stop()
    assert server.chat_requests == 0
    items = read_exam(EXAM)
    assert leaked_questions(items, iter_dataset_texts(folder)) == []
    conversations, completions = chats(folder)
    hand = [json.loads(line) for line in HAND_QA.read_text(encoding="utf-8").splitlines()]
    allowed = {i.question for i in items if i.split == "train" and i.group == "qa"}
    allowed |= {q for row in hand for q in [row["question"], *row["rephrasings"]]}
    assert {r.messages[0]["content"] for r in conversations} == allowed  # every allowed phrasing, nothing else
    written = {json.loads(line)["text"] for line in RESTATEMENTS.read_text(encoding="utf-8").splitlines()}
    texts = {r.text for r in completions}
    assert written <= texts and len([r for r in completions if r.source == "documents"]) == 26
    # 26 articles, each as written + up to 5 restatements: 2 written, the rest their sentences reordered
    # (a two-sentence text has only one other order, so some articles get fewer: never a repeated text).
    assert 26 * 4 < len(texts) == len(completions) <= 26 * 6


def test_cpt_recipe_mixes_documents_with_instructions_at_the_ratio(tmp_path):
    folder = run(config(tmp_path, "cpt", mix=str(ALPACA), mix_ratio=0.5))
    conversations, completions = chats(folder)
    assert len(completions) == 31 and all("Art." in r.text or "Ilustrativo" in r.text for r in completions)
    assert len(conversations) == round(0.5 * 31)
    assert {r.source for r in conversations} == {"instrucciones"}
    with pytest.raises(AmautaError, match=r"cpt mixes the documents .* --mix"):
        run(config(tmp_path, "cpt").model_copy(update={"out": str(tmp_path / "nomix")}))
    alone = run(config(tmp_path, "cpt", mix_ratio=0).model_copy(update={"out": str(tmp_path / "alone")}))
    assert chats(alone)[0] == []


@pytest.mark.parametrize("p", [0.8, 0.5])
def test_raft_keeps_the_gold_chunk_for_a_fraction_p_in_rags_layout(tmp_path, p):
    from amauta.rag.answer import NOT_FOUND, SYSTEM_PROMPT, cited_numbers

    with FakeOpenAIServer(fake_llm) as url:
        cfg = config(tmp_path, "raft", raft_p=p, seed=3, val_fraction=0, llm={"base_url": url, "model": "f"})
        folder = run(cfg)
    conversations, _ = chats(folder)
    assert len(conversations) == 62
    with_gold = [r for r in conversations if r.messages[-1]["content"] != NOT_FOUND]
    assert abs(len(with_gold) / len(conversations) - p) < 0.12
    stats = json.loads((folder / "stats.json").read_text(encoding="utf-8"))["augment"]["raft"]
    assert stats["gold_kept"] == len(with_gold) and stats["p"] == p
    for record in conversations:
        system, user, answer = record.messages
        assert system == {"role": "system", "content": SYSTEM_PROMPT}
        assert user["content"].startswith("Fragmentos de los documentos:\n\n[1] (") and user["content"].count("\n[") == 4
    for record in with_gold:  # the answer quotes the gold passage and cites its number
        user, answer = record.messages[1]["content"], record.messages[2]["content"]
        number = cited_numbers(answer, 4)[0]
        quote = re.search(r"«(.+?)»", answer).group(1)
        passage = user.split(f"[{number}] (", 1)[1].split("\n\n[", 1)[0]
        assert quote in " ".join(passage.split())
        asked = re.search(r"¿Qué establece (.+)\?|¿A quién se aplica (.+)\?", user.rsplit("Pregunta:", 1)[1])
        source = next(g for g in asked.groups() if g).split(" (")[0]  # "iva.md, Art. 2" (the prompt's Fuente)
        assert passage.startswith(source)  # the cited passage is the chunk the question was written from


def test_raft_missing_memory_answers_anyway_and_seeds_change_the_choice(tmp_path):
    from amauta.rag.answer import NOT_FOUND

    base = config(tmp_path, "raft", exam=str(EXAM), raft_p=0.5, val_fraction=0)
    memory = chats(run(base.model_copy(update={"raft_missing": "memory", "out": str(tmp_path / "m")})))[0]
    abstain = chats(run(base.model_copy(update={"out": str(tmp_path / "a")})))[0]
    other_seed = chats(run(base.model_copy(update={"seed": 7, "out": str(tmp_path / "s")})))[0]
    assert not any(r.messages[-1]["content"] == NOT_FOUND for r in memory)
    refused = {r.messages[1]["content"] for r in abstain if r.messages[-1]["content"] == NOT_FOUND}
    assert refused and refused != {r.messages[1]["content"] for r in other_seed if r.messages[-1]["content"] == NOT_FOUND}


def write_lines(path: Path, rows) -> Path:
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r, ensure_ascii=False)) + "\n" for r in rows),
                    encoding="utf-8")
    return path


def test_hold_out_refusals_name_the_file_and_line(tmp_path):
    good = {"kind": "qa", "fact_id": "ruc-digitos", "file": "ruc.html", "article": "Art. 1",
            "question": "¿Cuántos dígitos lleva el RUC?", "answer": "13 dígitos."}
    doc_only = dict(good, fact_id="iva-tarifa-anterior", file="iva.md", article="Art. 2")
    test_question = dict(good, question="¿Cuántos dígitos forman el número de RUC?")  # a test phrasing of the exam
    no_fact = {k: v for k, v in good.items() if k != "fact_id"}
    restating_a_test_question = {"kind": "restatement", "file": "ruc.html", "article": "Art. 1",
                                 "text": "Pregunta frecuente: ¿Cuántos dígitos forman el número de RUC? Son 13."}
    cases = [(doc_only, r"is a document_only fact of the exam; only qa-group"),
             (test_question, r"holds the text of exam (dev|test) question 'ruc-digitos\.(dev|test)\.\d'"),
             (no_fact, r"has no 'fact_id'"),
             (restating_a_test_question, r"holds the text of exam (dev|test) question")]
    for n, (bad, message) in enumerate(cases):
        path = write_lines(tmp_path / f"hand{n}.jsonl", [good, bad])
        cfg = config(tmp_path, "paraphrase", from_files=[str(path)], exam=str(EXAM))
        with pytest.raises(AmautaError, match=rf"^{re.escape(str(path))}:2: .*{message}"):
            run(cfg, out=tmp_path / f"o{n}")
        assert not (tmp_path / f"o{n}").exists() or not any((tmp_path / f"o{n}").iterdir())


@pytest.mark.parametrize(("line", "message"), [
    ('{"kind": "qa", "file": "ruc.html"', r"invalid JSON"),
    ('{"kind": "summary", "file": "ruc.html"}', r"'kind' must be \"restatement\" or \"qa\""),
    ('{"kind": "restatement", "file": "ruc.html", "article": "Art. 9", "text": "x"}', r"no chunk of the documents is ruc.html, Art. 9"),
    ('{"kind": "qa", "file": "ruc.html", "article": "Art. 1", "question": "", "answer": "a"}', r"needs 'question'"),
    ('{"kind": "qa", "file": "ruc.html", "article": "Art. 1", "question": "q", "answer": "a", "rephrasings": [1]}',
     r"'rephrasings' must be a list of non-empty strings"),
])
def test_bad_hand_written_lines_are_one_line_naming_file_and_line(tmp_path, line, message):
    path = write_lines(tmp_path / "hand.jsonl", ["", line])
    with pytest.raises(AmautaError, match=rf"{re.escape(str(path))}:2: .*{message}"):
        run(config(tmp_path, "qa", from_files=[str(path)]))


def test_cli_writes_the_folder_and_prints_one_line_errors(tmp_path):
    from typer.testing import CliRunner

    from amauta.cli import app

    out = tmp_path / "cli"
    args = ["data", "augment", str(DOCS), "--recipe", "qa", "--from", str(HAND_QA), "--exam", str(EXAM),
            "--model", MODEL, "--out", str(out)]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    assert len(chats(out)[0]) == 40 + 18  # the exam's qa-group train phrasings + one question per hand-written line
    bad = CliRunner().invoke(app, [*args[:3], "--recipe", "rag", "--model", MODEL, "--out", str(tmp_path / "x")])
    assert isinstance(bad.exception, AmautaError)  # amauta.cli.main prints it as one `error:` line, exit 2
    assert str(bad.exception).startswith("command line: 'recipe': Input should be 'qa', 'paraphrase', 'cpt' or 'raft'")
    assert "\n" not in str(bad.exception) and not (tmp_path / "x").exists()


def test_a_yaml_config_with_nested_llm_settings_runs_and_flags_override_it(tmp_path):
    from typer.testing import CliRunner

    from amauta.cli import app

    yaml_file = tmp_path / "augment.yaml"
    yaml_file.write_text(f"docs: [{DOCS}]\nrecipe: raft\nmodel: {MODEL}\nexam: {EXAM}\nraft_p: 0.5\n"
                         f"llm:\n  temperature: 0.0\n  workers: 2\nout: {tmp_path / 'from-yaml'}\n", encoding="utf-8")
    result = CliRunner().invoke(app, ["data", "augment", "--config", str(yaml_file), "--raft-p", "1",
                                      "--cache", str(tmp_path / "c.jsonl"), "--set", "llm.max_tokens=64"])
    assert result.exit_code == 0, result.output
    manifest = json.loads((tmp_path / "from-yaml" / "manifest.json").read_text(encoding="utf-8"))
    assert manifest["config"]["raft_p"] == 1.0 and manifest["config"]["llm"]["workers"] == 2
    # --cache reaches the llm: section beside the file's keys; --set reaches the keys no flag names.
    assert manifest["config"]["llm"]["cache"] == str(tmp_path / "c.jsonl")
    assert manifest["config"]["llm"]["max_tokens"] == 64
    stats = json.loads((tmp_path / "from-yaml" / "stats.json").read_text(encoding="utf-8"))
    assert stats["augment"]["raft"]["gold_fraction"] == 1.0
    typo = tmp_path / "typo.yaml"
    typo.write_text(f"docs: [{DOCS}]\nrecipe: qa\nllm:\n  modle: x\n", encoding="utf-8")
    bad = CliRunner().invoke(app, ["data", "augment", "--config", str(typo), "--out", str(tmp_path / "t")])
    assert isinstance(bad.exception, AmautaError) and "unknown key 'llm.modle' (did you mean: model?)" in str(bad.exception)


def test_a_prompt_too_long_for_a_local_model_is_that_chunks_failure_logged_not_a_crash(tmp_path):
    """The local path of `amauta.llm` with a tiny random model, whose context holds 512 tokens: build-qa's
    prompt does not fit, so every chunk fails; the run ends in one line and the failures are in the cache."""
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "ley.md").write_text("Art. 1.- La tasa de la ilustración es del 7% y se paga cada trimestre ante la "
                                 "oficina municipal correspondiente.\n", encoding="utf-8")
    cfg = AugmentConfig(docs=[str(docs)], recipe="qa", model=MODEL, min_chars=20,
                        llm={"model": "tiny-llama", "max_tokens": 16, "retries": 0, "cache": str(tmp_path / "c.jsonl")})
    with pytest.raises(AmautaError, match=r"^recipe qa needs Q&A, and none came \(the LLM gave no usable pairs\)"):
        run(cfg, out=tmp_path / "out")
    logged = [json.loads(line) for line in (tmp_path / "c.jsonl").read_text(encoding="utf-8").splitlines()]
    assert [row["status"] for row in logged] == ["failed"] and logged[0]["model"] == "tiny-llama"
    assert "context holds 512" in logged[0]["error"]
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


def test_the_example_config_is_valid_and_names_existing_files():
    from amauta.core.config import load_config

    cfg = load_config(AugmentConfig, REPO / "examples" / "augment" / "leyes-paraphrase.yaml")
    assert cfg.recipe == "paraphrase" and all((REPO / f).is_file() for f in [*cfg.from_files, cfg.exam])
