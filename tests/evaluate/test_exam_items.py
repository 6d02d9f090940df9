"""The document exam's items: reader errors, writer, leak check, design checks, and the shipped leyes exam."""

from __future__ import annotations

import copy
import importlib.util
import json
import sys
from pathlib import Path

import pytest

from amauta.core.errors import AmautaError
from amauta.data.answer_match import extract_values, key_fact_recall, normalize
from amauta.data.exam_items import (
    ABSTAIN_OPTION,
    ExamItem,
    exam_counts,
    exam_design_problems,
    iter_dataset_texts,
    leaked_questions,
    read_exam,
    write_exam,
)

REPO = Path(__file__).resolve().parents[2]
LEYES = REPO / "examples" / "exams" / "leyes.jsonl"
DOCS = REPO / "examples" / "docs"

ITEM = {
    "id": "iva-tarifa.test.1", "fact_id": "iva-tarifa", "split": "test", "answerable": True,
    "source": {"file": "iva.md", "article": "Art. 2"}, "question": "¿Cuál es la tarifa general del IVA?",
    "options": ["12%", "15%", "10%", "30%", ABSTAIN_OPTION], "gold": 1,
    "reference": "La tarifa general del IVA es del 15%.", "key_facts": ["15%"],
    "distractor_facts": ["12%", "10%", "30%"], "kind": "fact", "group": "qa",
}


def item(**changes) -> dict:
    row = copy.deepcopy(ITEM)
    row.update(changes)
    return row


def write_lines(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    return path


def read_error(tmp_path: Path, rows: list[dict]) -> str:
    with pytest.raises(AmautaError) as info:
        read_exam(write_lines(tmp_path / "exam.jsonl", rows))
    message = str(info.value)
    assert "\n" not in message
    return message


# --- the reader -----------------------------------------------------------------------------------------

def test_read_exam_parses_items_and_filters_a_split(tmp_path):
    rows = [item(), item(id="iva-tarifa.dev.1", split="dev"), item(id="iva-tarifa.train.1", split="train")]
    path = write_lines(tmp_path / "exam.jsonl", rows)
    items = read_exam(path)
    assert [i.id for i in items] == ["iva-tarifa.test.1", "iva-tarifa.dev.1", "iva-tarifa.train.1"]
    first = items[0]
    assert first.gold_option == "15%" and first.abstain_index == 4 and first.where == f"{path}:1"
    assert first.source.file == "iva.md" and first.source.article == "Art. 2"
    assert [i.id for i in read_exam(path, split="dev")] == ["iva-tarifa.dev.1"]


def test_kind_and_group_default_and_extra_keys_are_kept(tmp_path):
    row = item(provenance={"model": "x"})
    del row["kind"], row["group"]
    parsed = read_exam(write_lines(tmp_path / "exam.jsonl", [row]))[0]
    assert parsed.kind == "fact" and parsed.group is None
    assert parsed.to_json()["provenance"] == {"model": "x"}


def test_unknown_split_argument(tmp_path):
    path = write_lines(tmp_path / "exam.jsonl", [item()])
    with pytest.raises(AmautaError, match=r"split 'tests' is unknown; use train, dev, test \(did you mean: test\?\)"):
        read_exam(path, split="tests")
    with pytest.raises(AmautaError, match=r"no items in split 'dev'; the file has test \(1\)"):
        read_exam(path, split="dev")


def test_missing_field_names_file_line_and_fix(tmp_path):
    broken = item(id="b")
    del broken["gold"]
    message = read_error(tmp_path, [item(), broken])
    assert message == (f"{tmp_path / 'exam.jsonl'}:2: item 'b': lacks 'gold'; add it "
                       "(the 0-based index of the right option)")


@pytest.mark.parametrize("field", ["id", "fact_id", "split", "answerable", "source", "question", "options",
                                   "reference", "key_facts", "distractor_facts"])
def test_every_required_field(tmp_path, field):
    row = item()
    del row[field]
    assert ":1: " in (message := read_error(tmp_path, [row])) and f"lacks '{field}'; add it" in message


def test_fewer_than_two_options(tmp_path):
    message = read_error(tmp_path, [item(options=[ABSTAIN_OPTION], gold=0, answerable=False, key_facts=[])])
    assert ":1: item 'iva-tarifa.test.1' has 1 option; give 2-6 options" in message


def test_more_than_six_options(tmp_path):
    options = ["1%", "2%", "3%", "4%", "5%", "15%", ABSTAIN_OPTION]
    assert "has 7 options; give 2-6" in read_error(tmp_path, [item(options=options, gold=5)])


def test_gold_out_of_range(tmp_path):
    message = read_error(tmp_path, [item(gold=5)])
    assert ":1: item 'iva-tarifa.test.1' has gold 5 but 5 options; gold is the 0-based index" in message
    assert "has gold -1" in read_error(tmp_path, [item(gold=-1)])


def test_gold_of_the_wrong_type(tmp_path):
    message = read_error(tmp_path, [item(gold="1")])
    assert ":1: item 'iva-tarifa.test.1': 'gold' input should be a valid integer, got '1'" in message


def test_duplicate_id_names_both_lines(tmp_path):
    message = read_error(tmp_path, [item(), item(split="dev")])
    path = tmp_path / "exam.jsonl"
    assert message == f"{path}:2: id 'iva-tarifa.test.1' is already used by {path}:1; give each item its own id"


def test_unknown_split_in_the_file(tmp_path):
    message = read_error(tmp_path, [item(split="tset")])
    assert ":1: item 'iva-tarifa.test.1': split 'tset' is unknown; use train, dev, test (did you mean: test?)" in message


def test_unknown_group_and_kind(tmp_path):
    assert "group 'documents' is unknown; use qa, document_only" in read_error(tmp_path, [item(group="documents")])
    assert "kind 'example' is unknown; use fact, worked_example" in read_error(tmp_path, [item(kind="example")])


def test_abstention_option_missing(tmp_path):
    message = read_error(tmp_path, [item(options=["12%", "15%", "10%"])])
    assert f"lacks the option '{ABSTAIN_OPTION}'; add it to 'options'" in message


def test_abstention_option_matched_without_case_or_accents(tmp_path):
    row = item(options=["12%", "15%", "los documentos NO lo indican."])
    assert read_exam(write_lines(tmp_path / "exam.jsonl", [row]))[0].abstain_index == 2


def test_unanswerable_item_whose_gold_is_not_the_abstention(tmp_path):
    message = read_error(tmp_path, [item(answerable=False, key_facts=[])])
    assert f"is unanswerable (answerable: false) but its gold is '15%'; set gold to 4, the index of " \
           f"'{ABSTAIN_OPTION}'" in message


def test_answerable_item_whose_gold_is_the_abstention(tmp_path):
    assert "is answerable but its gold is" in read_error(tmp_path, [item(gold=4)])


def test_answerable_item_needs_key_facts(tmp_path):
    assert "has no key_facts; list the numbers, dates or names" in read_error(tmp_path, [item(key_facts=[])])


def test_duplicate_and_empty_options(tmp_path):
    assert "options 1 and 2 say the same ('15 %')" in read_error(tmp_path, [item(options=["12%", "15%", "15 %", ABSTAIN_OPTION])])
    assert "option 0 is empty" in read_error(tmp_path, [item(options=[" ", "15%", ABSTAIN_OPTION])])


def test_empty_question(tmp_path):
    assert "has an empty 'question'" in read_error(tmp_path, [item(question="  ")])


def test_train_phrasing_of_a_document_only_fact(tmp_path):
    message = read_error(tmp_path, [item(split="train", group="document_only")])
    assert "is a 'train' phrasing of the document-only fact 'iva-tarifa'" in message


def test_items_of_one_fact_must_agree(tmp_path):
    message = read_error(tmp_path, [item(), item(id="x", split="dev", group="document_only")])
    assert ":2: item 'x' has group 'document_only' but" in message and ":1 gives fact 'iva-tarifa' 'qa'" in message
    other_file = item(id="y", split="dev", source={"file": "renta.md", "article": "Art. 1"})
    assert "cites 'renta.md' but" in read_error(tmp_path, [item(), other_file])


def test_invalid_json_and_empty_files(tmp_path):
    path = tmp_path / "exam.jsonl"
    path.write_text(json.dumps(item()) + "\n\n{not json\n", encoding="utf-8")
    with pytest.raises(AmautaError, match=r"exam\.jsonl:3: invalid JSON"):
        read_exam(path)
    path.write_text("\n", encoding="utf-8")
    with pytest.raises(AmautaError, match="no exam items"):
        read_exam(path)
    with pytest.raises(AmautaError, match="exam file not found"):
        read_exam(tmp_path / "missing.jsonl")


def test_line_numbers_count_blank_lines(tmp_path):
    path = tmp_path / "exam.jsonl"
    path.write_text("\n" + json.dumps(item()) + "\n\n" + json.dumps(item(gold=9)) + "\n", encoding="utf-8")
    with pytest.raises(AmautaError, match=r"exam\.jsonl:4: "):
        read_exam(path)


# --- the writer -------------------------------------------------------------------------------------------

def test_write_exam_round_trips(tmp_path):
    rows = [item(), item(id="iva-tarifa.dev.1", split="dev")]
    path = write_exam(tmp_path / "out.jsonl", rows)
    assert [i.to_json() for i in read_exam(path)] == [ExamItem.model_validate(r).to_json() for r in rows]


def test_write_exam_writes_nothing_when_an_item_is_bad(tmp_path):
    path = tmp_path / "out.jsonl"
    path.write_text("old\n", encoding="utf-8")
    with pytest.raises(AmautaError, match="item 2: item 'x' has gold 7"):
        write_exam(path, [item(), item(id="x", gold=7)])
    with pytest.raises(AmautaError, match="already used"):
        write_exam(path, [item(), item()])
    assert path.read_text(encoding="utf-8") == "old\n"
    assert [p.name for p in tmp_path.iterdir()] == ["out.jsonl"]


# --- leaks into training data --------------------------------------------------------------------------------

def exam_items(*rows: dict) -> list[ExamItem]:
    return [ExamItem.model_validate(r) for r in rows]


def test_leaked_questions_finds_dev_and_test_questions_in_training_text():
    items = exam_items(item(), item(id="d", split="dev", question="¿Cada cuánto se declara el IVA?"),
                       item(id="t", split="train", question="¿Qué tarifa tiene el IVA hoy?"))
    texts = [("train.jsonl:1", "Usuario: cual es la TARIFA general del iva -- Asistente: 15%"),
             ("train.jsonl:2", "¿Qué tarifa tiene el IVA hoy? 15%."),
             ("train.jsonl:3", "Pregunta: ¿Cada cuánto se declara el IVA? Respuesta: cada mes.")]
    leaks = leaked_questions(items, texts)
    assert [(leak.item_id, leak.split, leak.where) for leak in leaks] == [
        ("iva-tarifa.test.1", "test", "train.jsonl:1"), ("d", "dev", "train.jsonl:3")]


def test_leaked_questions_needs_the_whole_question():
    items = exam_items(item())
    assert leaked_questions(items, ["¿Cuál es la tarifa general?", "tarifa general del IVA"]) == []
    assert leaked_questions(items, ["x", "cuál es la tarifa general del iva"])[0].where == "1"
    assert leaked_questions(items, ["cuál es la tarifa general del iva"], splits=("dev",)) == []


def test_leaked_questions_with_short_questions_and_repeats():
    items = exam_items(item(question="¿IVA?"), item(id="b", question="¿Qué es el IVA?"))
    leaks = leaked_questions(items, ["el iva", "qué es el iva, qué es el iva"])
    assert sorted(leak.item_id for leak in leaks) == ["b", "iva-tarifa.test.1"]


def test_iter_dataset_texts_reads_chat_completion_and_alpaca_records(tmp_path):
    folder = tmp_path / "dataset"
    folder.mkdir()
    write_lines(folder / "train.jsonl", [
        {"id": "1", "messages": [{"role": "user", "content": "¿Cuál es la tarifa general del IVA?"},
                                 {"role": "assistant", "content": "15%"}], "source": "s"},
        {"id": "2", "text": "Texto del documento."}])
    write_lines(folder / "val.jsonl", [{"instruction": "Pregunta", "output": "Respuesta"}])
    texts = list(iter_dataset_texts(folder))
    assert texts == [(f"{folder / 'train.jsonl'}:1", "¿Cuál es la tarifa general del IVA?\n15%"),
                     (f"{folder / 'train.jsonl'}:2", "Texto del documento."),
                     (f"{folder / 'val.jsonl'}:1", "Pregunta\nRespuesta")]
    assert leaked_questions(exam_items(item()), texts)[0].where.endswith("train.jsonl:1")


# --- the exam's design -----------------------------------------------------------------------------------

def test_exam_design_problems_names_what_is_missing():
    rows = [item(), item(id="d", split="dev"), item(id="t", split="train", question="¿Qué tarifa general?")]
    problems = exam_design_problems(exam_items(*rows), min_unanswerable_test=1)
    assert "fact 'iva-tarifa': 1 test phrasings, needs 3" in problems
    assert "QA fact 'iva-tarifa': 1 train phrasings, needs 2" in problems
    assert "0 unanswerable test items, needs 1" in problems
    assert "unanswerable items are 0% of the exam, needs 15%" in problems
    leaky = rows + [item(id="t2", split="train", question="Repite: ¿Cuál es la tarifa general del IVA?")]
    assert any("question 'iva-tarifa.test.1' appears in train item t2" in p for p in exam_design_problems(exam_items(*leaky)))


# --- the shipped exam over examples/docs -------------------------------------------------------------------

@pytest.fixture(scope="module")
def leyes() -> list[ExamItem]:
    return read_exam(LEYES)


@pytest.fixture(scope="module")
def articles() -> dict[tuple[str, str], str]:
    """(file name, article) → the article's text, read the way `amauta data build-qa` reads the documents."""
    from amauta.documents.chunk import chunk_document
    from amauta.documents.ingest import iter_document_paths, load_document

    texts: dict[tuple[str, str], str] = {}
    for path in iter_document_paths([DOCS]):
        for chunk in chunk_document(load_document(path)):
            if chunk.article:
                key = (path.name, chunk.article)
                texts[key] = texts.get(key, "") + "\n" + chunk.text
    return texts


def test_leyes_meets_the_design(leyes):
    counts = exam_counts(leyes)
    assert 30 <= counts["facts"] <= 40
    assert counts["facts_by_group"]["qa"] >= 10 and counts["facts_by_group"]["document_only"] >= 10
    assert counts["facts_by_kind"]["worked_example"] >= 2
    assert counts["unanswerable_by_split"]["test"] >= 40 and counts["unanswerable_share"] >= 0.15
    assert set(counts["items_by_split"]) == {"train", "dev", "test"}
    assert exam_design_problems(leyes) == []  # ≥3 test and 1 dev per fact, ≥2 train per QA fact, no leak


def test_leyes_options_are_four_plus_the_abstention_and_golds_are_spread(leyes):
    for it in leyes:
        assert len(it.options) == 5 and it.abstain_index == 4, it.id
    golds = [it.gold for it in leyes if it.answerable]
    assert all(golds.count(position) >= len(golds) / 8 for position in range(4))


def test_leyes_train_split_belongs_to_qa_facts_and_unanswerables_stay_out_of_training(leyes):
    for it in leyes:
        if it.split == "train":
            assert it.group == "qa" and it.answerable, it.id
        if not it.answerable:
            assert it.group is None, it.id


def test_leyes_every_source_exists(leyes, articles):
    for it in leyes:
        assert (it.source.file, it.source.article) in articles, it.id


def test_leyes_gold_values_appear_in_the_source_article(leyes, articles):
    """Every answerable fact's key facts, and so its gold option's value, are in the article it cites."""
    for it in leyes:
        if it.answerable and it.kind == "fact":
            text = articles[(it.source.file, it.source.article)]
            assert key_fact_recall(text, it.key_facts) == 1.0, it.id
            assert it.score_answer(it.gold_option).correct, it.id


def test_leyes_worked_examples_use_numbers_the_documents_do_not_hold(leyes, articles):
    corpus = set()
    for text in articles.values():
        corpus.update(extract_values(text))
    worked = [it for it in leyes if it.kind == "worked_example"]
    assert len(worked) >= 8
    for it in worked:
        assert key_fact_recall("\n".join(articles.values()), it.key_facts) == 0.0, it.id
        assert not any(v in corpus for v in extract_values(it.gold_option) if v.kind in ("money", "date")), it.id


def test_leyes_references_and_options_score_as_they_should(leyes):
    """References and gold options score correct; no other option does (checks the exam and the scorer)."""
    for it in leyes:
        assert it.score_answer(it.reference).correct, it.id
        for index, option in enumerate(it.options):
            assert it.score_answer(option).correct == (index == it.gold), (it.id, option)


def test_leyes_no_dev_or_test_question_in_the_train_split(leyes):
    train = [(it.id, f"{it.question}\n{it.reference}") for it in leyes if it.split == "train"]
    assert leaked_questions(leyes, train) == []
    questions = [normalize(it.question) for it in leyes]
    assert len(set(questions)) == len(questions)


def test_leyes_training_text_does_not_state_document_only_facts(leyes):
    """A QA fact's train question and reference never state a document-only fact of the same article."""
    document_only = [it for it in leyes if it.group == "document_only" and it.split == "test"]
    for it in (i for i in leyes if i.split == "train"):
        text = f"{it.question}\n{it.reference}"
        for other in document_only:
            if (other.source.file, other.source.article) == (it.source.file, it.source.article):
                assert key_fact_recall(text, other.key_facts) < 1.0, (it.id, other.id)


def test_leyes_is_what_the_generator_writes(tmp_path, monkeypatch):
    spec = importlib.util.spec_from_file_location("make_leyes_exam", REPO / "scripts" / "make_leyes_exam.py")
    module = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, spec.name, module)  # its dataclasses look their module up by name
    spec.loader.exec_module(module)
    out = write_exam(tmp_path / "leyes.jsonl", module.build_items())
    assert out.read_bytes() == LEYES.read_bytes()
