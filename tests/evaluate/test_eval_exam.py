"""`amauta eval exam`: modes, judge-free scoring, fact-clustered intervals, resume, leaks, gold passages, lm-eval."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from amauta.core.errors import AmautaError
from amauta.core.files import read_jsonl
from amauta.data.exam_items import read_exam, write_exam
from amauta.evaluate import stats
from amauta.evaluate.exam import (
    OPTIONS_ONLY_QUESTION,
    ExamConfig,
    Examinee,
    ExamTask,
    GoldPassages,
    build_prompt,
    choice_text,
    default_docs,
    export_lm_eval,
    run,
    source_chunks,
    training_dataset,
)
from amauta.evaluate.runner import load_summary

REPO = Path(__file__).resolve().parents[2]
LEYES = REPO / "examples" / "exams" / "leyes.jsonl"
DOCS = REPO / "examples" / "docs"
# Two test phrasings of a QA fact and of a document-only fact, a worked example of each group, and two
# unanswerable questions: every slice of the summary has items.
CHOSEN_FACTS = ("iva-tarifa-general", "iva-tarifa-anterior", "we-iva-15", "we-ret-iva-bienes", "un-multa-iva")


@pytest.fixture
def small_exam(tmp_path) -> Path:
    """A 9-item exam taken from leyes.jsonl: its test items (at most two per fact) and one dev item per fact."""
    chosen, per_fact = [], {}
    for item in read_exam(LEYES):
        if item.fact_id not in CHOSEN_FACTS:
            continue
        if item.split == "test" and per_fact.get(item.fact_id, 0) < (2 if not item.fact_id.startswith("we-") else 1):
            per_fact[item.fact_id] = per_fact.get(item.fact_id, 0) + 1
            chosen.append(item)
        elif item.split == "dev" and item.fact_id == "iva-tarifa-general":
            chosen.append(item)
    return write_exam(tmp_path / "exam.jsonl", chosen)


def tiny_loader(tiny, calls: list | None = None):
    def load(spec, **kwargs):
        if calls is not None:
            calls.append(spec.label)
        return tiny("llama")
    return load


def take(cfg: ExamConfig, **kwargs) -> dict:
    """Run the exam and read the summary.json of the folder it returns."""
    folder = run(cfg, **kwargs)
    assert folder == Path(cfg.out)
    return load_summary(folder)


def config(exam: Path, out: Path, **kwargs) -> ExamConfig:
    defaults = {"model": "tiny-llama", "exam": str(exam), "out": str(out), "docs": str(DOCS), "max_new_tokens": 4}
    return ExamConfig(**{**defaults, **kwargs})


def rows_of(out: Path, label: str) -> list[dict]:
    return [r for r in read_jsonl(out / "items.jsonl") if r["model"] == label]


# ---------------------------------------------------------------- closed book, multiple choice

def test_closed_book_rows_and_summary(tiny, small_exam, tmp_path):
    out = tmp_path / "ev"
    summary = take(config(small_exam, out, options_only=False), loader=tiny_loader(tiny), show_progress=False)
    items = read_exam(small_exam, "test")
    assert [m["label"] for m in summary["models"]] == ["base"] and summary["models"][0]["mode"] == "closed"
    rows = rows_of(out, "base")
    assert sorted(r["item_id"] for r in rows) == sorted(i.id for i in items)
    for row in rows:
        assert row["pred"] == int(np.argmax(row["logprobs"])) and row["correct"] == (row["pred"] == row["gold"])
        assert len(row["logprobs"]) == 5 and row["mode"] == "closed" and "output" in row and "sa_recall" in row
    m = summary["models"][0]["metrics"]
    assert m["n"] == len(items) and m["acc"] == pytest.approx(np.mean([r["correct"] for r in rows]))
    assert m["n_qa"] == 2 and m["n_document_only"] == 2 and m["n_worked_example"] == 2 and m["n_unanswerable"] == 2
    unanswerable = [r for r in rows if not r["answerable"]]
    assert m["abstain_unanswerable"] == pytest.approx(np.mean([r["pred"] == r["abstain_option"] for r in unanswerable]))
    assert m["abstain_unanswerable"] == m["acc_unanswerable"]
    answerable = [r for r in rows if r["answerable"]]
    assert m["abstain_answerable"] + m["wrong_answerable"] + m["acc_answerable"] == pytest.approx(1.0)
    assert {"acc_norm", "sa_recall", "sa_precision", "sa_abstain_unanswerable", "sa_wrong_answerable"} <= set(m)
    assert m["facts"] == 5 and m["acc_ci"] is not None and m["acc_qa_ci"] is None  # 1 QA fact: no interval
    assert len(answerable) == 6
    assert summary["exam"]["split"] == "test" and summary["reference"] == "base"
    assert json.loads((out / "summary.json").read_text())["reference"] == "base"
    assert (out / "manifest.json").is_file()


def test_multiple_choice_scores_are_the_options_log_likelihood_in_the_chat_template(tiny, small_exam):
    """The packed scorer's number for an option equals log p(option | rendered chat prompt), computed plainly."""
    loaded = tiny("llama")
    item = read_exam(small_exam, "test")[0]
    task = ExamTask([item], short_answer=False)
    row, = task.evaluate(Examinee(loaded, "closed"), [{"id": item.id}])
    context, _, separator = choice_text(loaded, build_prompt(Examinee(loaded, "closed"), item, 4).messages, "chat")
    assert context.endswith("[/INST]") and separator == " " and item.question in context  # tiny-llama: Llama 2
    ctx = loaded.tokenizer(context, add_special_tokens=False).input_ids
    for k, option in enumerate(item.options):
        whole = loaded.tokenizer(context + " " + option, add_special_tokens=False).input_ids
        with torch.no_grad():
            logits = loaded.model(input_ids=torch.tensor([whole])).logits[0].float().log_softmax(-1)
        expected = sum(float(logits[i - 1, whole[i]]) for i in range(len(ctx), len(whole)))
        assert row["logprobs"][k] == pytest.approx(expected, abs=1e-3)


# ---------------------------------------------------------------- options only

def test_options_only_withholds_the_question(tiny, small_exam, tmp_path):
    loaded = tiny("llama")
    item = read_exam(small_exam, "test")[0]
    prompt = build_prompt(Examinee(loaded, "options"), item, 4)
    assert item.question not in json.dumps(prompt.messages, ensure_ascii=False)
    assert prompt.messages[-1]["content"] == OPTIONS_ONLY_QUESTION
    reworded = item.model_copy(update={"id": "otra", "question": "¿Cómo se llama el impuesto a las ventas?"})
    task = ExamTask([item, reworded], short_answer=True)
    first, second = task.evaluate(Examinee(loaded, "options"), [{"id": item.id}, {"id": "otra"}])
    assert first["logprobs"] == second["logprobs"]  # the question cannot change the choice
    assert "output" not in first  # nothing to answer in words without a question
    out = tmp_path / "ev"
    summary = take(config(small_exam, out, short_answer=False), loader=tiny_loader(tiny), show_progress=False)
    assert [(m["label"], m["mode"]) for m in summary["models"]] == [("base", "closed"), ("base+options", "options")]
    assert [c["other"] for c in summary["comparisons"]] == []  # the baseline is not a candidate to compare
    assert len({r["context_tokens"] for r in rows_of(out, "base+options")}) == 1


# ---------------------------------------------------------------- short answers

def test_short_answers_are_scored_by_key_facts(tiny, small_exam, tmp_path, monkeypatch):
    """A model that answers every answerable item with its reference and abstains on one unanswerable item."""
    from amauta.evaluate import generation

    items = {item.question: item for item in read_exam(small_exam, "test")}
    abstain_on = next(i for i in items.values() if not i.answerable)

    def answers(loaded, conversations, max_new_tokens):
        replies = []
        for messages in conversations:
            item = items[messages[-1]["content"]]
            if item.answerable:
                replies.append(item.reference + " [1]")
            elif item is abstain_on:
                replies.append("Los documentos no lo indican.")
            else:
                replies.append("La multa es de USD 30.")
        return replies

    monkeypatch.setattr(generation, "generate_texts", answers)
    out = tmp_path / "ev"
    summary = take(config(small_exam, out, options_only=False), loader=tiny_loader(tiny), show_progress=False)
    m = summary["models"][0]["metrics"]
    assert m["sa_recall"] == 1.0 and m["sa_precision"] == 1.0 and m["sa_correct"] == 1.0
    assert m["sa_abstain_unanswerable"] == 0.5 and m["sa_abstain_answerable"] == 0.0
    assert m["sa_wrong_answerable"] == 0.0 and m["sa_correct_worked_example"] == 1.0
    rows = {r["item_id"]: r for r in rows_of(out, "base")}
    assert rows[abstain_on.id]["sa_abstained"] and rows[abstain_on.id]["sa_correct"]
    assert all(r["output"].endswith("[1]") for r in rows.values() if r["answerable"])  # stored as written


# ---------------------------------------------------------------- intervals over facts

def test_clustered_bootstrap_resamples_facts():
    facts = [f"f{i // 3}" for i in range(60)]  # 20 facts, 3 phrasings each, all answered alike
    values = [float(int(f[1:]) % 2) for f in facts]
    clustered = stats.clustered_bootstrap_ci(values, facts, seed=7)
    per_fact = stats.bootstrap_ci([float(i % 2) for i in range(20)], seed=7)
    assert clustered == pytest.approx(per_fact)  # equal sizes: the same as resampling the facts' means
    by_item = stats.bootstrap_ci(values, seed=7)
    assert clustered[1] - clustered[0] > 1.3 * (by_item[1] - by_item[0])  # items of a fact are not independent
    order = np.random.default_rng(0).permutation(60)
    shuffled = stats.clustered_bootstrap_ci([values[i] for i in order], [facts[i] for i in order], seed=7)
    assert shuffled == pytest.approx(clustered)
    assert stats.clustered_bootstrap_ci(values, facts, seed=7) == clustered
    assert stats.clustered_bootstrap_ci(values, facts, seed=8) != clustered
    low, high = stats.clustered_bootstrap_ci(values[:12], facts[:12])  # 4 facts, under stats.MIN_CI_N
    assert np.isnan(low) and np.isnan(high)


def _rows(correct: list[bool], facts: list[str], **extra) -> list[dict]:
    return [{"item_id": f"i{k}", "fact_id": f, "answerable": True, "kind": "fact", "group": "qa", "correct": c,
             "correct_norm": c, "pred": 0 if c else 1, "gold": 0, "abstain_option": 4, **extra}
            for k, (c, f) in enumerate(zip(correct, facts, strict=True))]


def test_summary_intervals_and_paired_deltas_are_over_facts():
    from amauta.evaluate.exam import exam_metrics, paired_comparisons

    rng = np.random.default_rng(1)
    facts = [f"f{i // 3}" for i in range(36)]  # 12 facts, 3 phrasings each
    base = _rows([bool(rng.random() < 0.4) for _ in facts], facts)
    other = _rows([bool(rng.random() < 0.7) for _ in facts], facts)
    m = exam_metrics(base, seed=3)
    values = [float(r["correct"]) for r in base]
    assert m["acc"] == pytest.approx(np.mean(values)) and m["facts"] == 12
    assert m["acc_ci"] == pytest.approx(list(stats.clustered_bootstrap_ci(values, facts, seed=3)))
    assert m["acc_qa_ci"] == m["acc_ci"] and m["acc_document_only"] is None
    assert exam_metrics(base[:12], seed=3)["acc_ci"] is None  # 4 facts: no interval (stats.MIN_CI_N)
    comparison, = paired_comparisons({"a": base, "b": other}, "a", ["b"], seed=3)
    diffs = [float(o["correct"]) - float(b["correct"]) for b, o in zip(base, other, strict=True)]
    assert comparison["delta"] == pytest.approx(np.mean(diffs))
    assert comparison["delta_ci"] == pytest.approx(list(stats.clustered_bootstrap_ci(diffs, facts, seed=3)))
    assert comparison["lost"] == sum(1 for d in diffs if d < 0) and comparison["gained"] == sum(1 for d in diffs if d > 0)
    assert "delta_sa_correct" not in comparison  # no short answers in these rows


# ---------------------------------------------------------------- resume

def test_resume_scores_only_what_is_missing(tiny, small_exam, tmp_path):
    out, calls = tmp_path / "ev", []
    first = take(config(small_exam, out, limit=4, short_answer=False), loader=tiny_loader(tiny, calls),
                show_progress=False)
    assert calls == ["base"] and [m["computed"] for m in first["models"]] == [4, 4]
    second = take(config(small_exam, out, short_answer=False), loader=tiny_loader(tiny, calls), show_progress=False)
    assert [m["computed"] for m in second["models"]] == [4, 4] and second["n_items"] == 8
    calls.clear()
    third = take(config(small_exam, out, short_answer=False), loader=tiny_loader(tiny, calls), show_progress=False)
    assert calls == [] and [m["computed"] for m in third["models"]] == [0, 0]
    assert third["models"][0]["metrics"] == second["models"][0]["metrics"]
    assert len(list(read_jsonl(out / "items.jsonl"))) == 16


# ---------------------------------------------------------------- leaks

def _training_run(tmp_path: Path, texts: list[str]) -> Path:
    dataset = tmp_path / "data"
    dataset.mkdir()
    lines = [json.dumps({"messages": [{"role": "user", "content": t}, {"role": "assistant", "content": "15%"}]},
                        ensure_ascii=False) for t in texts]
    (dataset / "train.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
    run_dir = tmp_path / "run"
    (run_dir / "adapter").mkdir(parents=True)
    (run_dir / "adapter" / "adapter_config.json").write_text("{}")
    (run_dir / "manifest.json").write_text(json.dumps({"stage": "train", "config": {"dataset": str(dataset)}}))
    return run_dir


def test_an_adapter_trained_on_a_test_question_is_refused(tiny, small_exam, tmp_path):
    test_question = read_exam(small_exam, "test")[2].question
    run_dir = _training_run(tmp_path, ["¿Qué es el RUC?", f"Pregunta: {test_question.upper()} Gracias."])
    with pytest.raises(AmautaError) as error:
        run(config(small_exam, tmp_path / "ev", candidates=f"base,{run_dir}"), loader=tiny_loader(tiny),
            show_progress=False)
    message = str(error.value)
    assert "\n" not in message and message.startswith(f"{tmp_path / 'data' / 'train.jsonl'}:2: holds the test question")
    assert not (tmp_path / "ev").exists()  # refused before anything was written


def test_a_clean_adapter_is_scored_and_the_check_is_recorded(tiny, small_exam, tmp_path):
    run_dir = _training_run(tmp_path, ["¿Qué es el RUC?"])
    assert training_dataset(run_dir / "adapter") == (tmp_path / "data", "")
    bare = tmp_path / "bare"
    bare.mkdir()
    (bare / "adapter_config.json").write_text("{}")
    summary = take(config(small_exam, tmp_path / "ev", limit=2, candidates=f"base,{run_dir},{bare}",
                         short_answer=False, options_only=False), loader=tiny_loader(tiny), show_progress=False)
    assert summary["leak_check"][str(run_dir)] == f"checked: {tmp_path / 'data'}"
    assert summary["leak_check"][str(bare)].startswith("not checked")
    assert [c["other"] for c in summary["comparisons"]] == [str(run_dir), str(bare)]


def test_candidates_must_decode_greedily(tiny, small_exam, tmp_path):
    with pytest.raises(AmautaError, match="decodes greedily.*drop '@sampling'"):
        run(config(small_exam, tmp_path / "ev", candidates="base@sampling"), loader=tiny_loader(tiny))


# ---------------------------------------------------------------- gold passages

def test_gold_passage_finds_each_items_source_chunk(tiny, small_exam, tmp_path):
    assert default_docs(LEYES) == REPO / "examples" / "docs"
    items = read_exam(LEYES)
    chunks = source_chunks(DOCS, items)
    assert len(chunks) == len({(i.source.file, i.source.article) for i in items})
    first = items[0]
    chunk, = chunks[(first.source.file, first.source.article)]
    assert Path(chunk.source).name == "iva.md" and chunk.article == "Art. 2" and "15%" in chunk.text
    loaded = tiny("llama")
    prompt = build_prompt(Examinee(loaded, "gold", GoldPassages(chunks)), first, 4)
    assert prompt.passages == ["examples/docs/iva.md, Art. 2".replace("examples/docs", str(DOCS))]
    assert prompt.gold_retrieved and "Fragmentos de los documentos:\n\n[1] (iva.md, Art. 2)" in prompt.messages[-1]["content"]
    out = tmp_path / "ev"
    summary = take(config(small_exam, out, limit=3, gold_passage=True, options_only=False, short_answer=False),
                  loader=tiny_loader(tiny), show_progress=False)
    assert [(m["label"], m["mode"]) for m in summary["models"]] == [("base", "closed"), ("base+gold", "gold")]
    assert all(r["gold_retrieved"] and len(r["passages"]) == 1 for r in rows_of(out, "base+gold"))
    assert summary["models"][1]["metrics"]["gold_retrieved"] == 1.0


def test_gold_passage_names_the_exam_line_of_a_missing_article(small_exam, tmp_path):
    lines = small_exam.read_text(encoding="utf-8").splitlines()
    lines[1] = lines[1].replace('"article": "Art. 2"', '"article": "Art. 99"')
    lines = [ln.replace('"article": "Art. 2"', '"article": "Art. 99"') if "iva-tarifa-general" in ln else ln
             for ln in lines]
    bad = tmp_path / "bad.jsonl"
    bad.write_text("\n".join(lines) + "\n", encoding="utf-8")
    with pytest.raises(AmautaError, match=r"bad.jsonl:1: item 'iva-tarifa-general.dev.1' cites 'Art. 99' of 'iva.md', "
                                          r"which that file does not have \(its articles: Art. 1, Art. 2"):
        source_chunks(DOCS, read_exam(bad))


def test_open_book_with_a_rag_index(tiny, small_exam, tmp_path, law_index):
    out = tmp_path / "ev"
    summary = take(config(small_exam, out, limit=4, candidates=f"base,rag:{law_index}", options_only=False),
                  loader=tiny_loader(tiny), show_progress=False)
    assert [(m["label"], m["mode"]) for m in summary["models"]] == [("base", "closed"), (f"rag:{law_index}", "open")]
    rows = rows_of(out, f"rag:{law_index}")
    assert all(r["found"] == bool(r["passages"]) for r in rows)
    assert any(r["gold_retrieved"] for r in rows)  # the VAT rate's article is retrieved for its questions
    assert summary["models"][1]["metrics"]["passages_mean"] > 0
    comparison, = summary["comparisons"]
    assert comparison["base"] == "base" and comparison["other"] == f"rag:{law_index}"


def test_open_book_answers_go_through_rags_grounding_check(tiny, small_exam, tmp_path, law_index, monkeypatch):
    """Open book, the exam scores what `rag ask` would say: an invented amount is withheld as "the documents
    do not say", and the late-filing fine, which the documents do not give, is refused before the model."""
    from amauta.evaluate import generation

    invented = "La multa es de USD 987.654 [1]."
    monkeypatch.setattr(generation, "generate_texts", lambda loaded, conversations, n: [invented] * len(conversations))
    out = tmp_path / "ev"
    take(config(small_exam, out, candidates=f"rag:{law_index}", options_only=False), loader=tiny_loader(tiny),
         show_progress=False)
    rows = rows_of(out, f"rag:{law_index}")
    asked = [r for r in rows if r["found"]]
    assert asked and all(r["withheld"] == invented and r["sa_abstained"] for r in asked)
    assert all(not r["found"] and r["sa_abstained"] for r in rows if r["fact_id"] == "un-multa-iva")


def test_open_book_multiple_choice_abstains_where_rag_refuses_without_asking_the_model(tiny, small_exam, tmp_path,
                                                                                       law_index, monkeypatch):
    """A refused retrieval is RAG's "the documents do not say": its multiple-choice pick is the abstention
    option, whatever the model would have chosen, and the model is not asked for it."""
    from amauta.evaluate import loglik

    scored_contexts = []
    real = loglik.score_continuations

    def spy(model, tokenizer, contexts, continuations, **kwargs):
        scored_contexts.extend(contexts)
        return real(model, tokenizer, contexts, continuations, **kwargs)

    monkeypatch.setattr(loglik, "score_continuations", spy)
    out = tmp_path / "ev"
    summary = take(config(small_exam, out, candidates=f"rag:{law_index}", options_only=False, short_answer=False),
                   loader=tiny_loader(tiny), show_progress=False)
    rows = rows_of(out, f"rag:{law_index}")
    refused = [r for r in rows if not r["found"]]
    assert refused and any(r["fact_id"] == "un-multa-iva" for r in refused)
    assert all(r["gated"] and r["pred"] == r["abstain_option"] and "logprobs" not in r for r in refused)
    assert all("logprobs" in r and not r.get("gated") for r in rows if r["found"])
    assert len(scored_contexts) == len(rows) - len(refused)
    unanswerable = [r for r in rows if not r["answerable"]]
    abstained = sum(r["pred"] == r["abstain_option"] for r in unanswerable) / len(unanswerable)
    assert summary["models"][0]["metrics"]["abstain_unanswerable"] == pytest.approx(abstained)


# ---------------------------------------------------------------- lm-evaluation-harness

def test_export_lm_eval_writes_a_multiple_choice_task(small_exam, tmp_path, tiny):
    folder = tmp_path / "lm"
    files = export_lm_eval(config(small_exam, tmp_path / "ev", export_lm_eval=str(folder), gold_passage=True))
    names = sorted(f.name for f in files)
    assert names == ["amauta_exam_exam_test_closed.jsonl", "amauta_exam_exam_test_closed.yaml",
                     "amauta_exam_exam_test_gold.jsonl", "amauta_exam_exam_test_gold.yaml"]
    task = yaml.safe_load((folder / "amauta_exam_exam_test_closed.yaml").read_text(encoding="utf-8"))
    assert task["output_type"] == "multiple_choice" and task["test_split"] == "test"
    assert task["doc_to_choice"] == "{{options}}" and task["doc_to_target"] == "{{gold}}"
    data = Path(task["dataset_kwargs"]["data_files"]["test"])
    docs = list(read_jsonl(data))
    items = read_exam(small_exam, "test")
    assert [d["id"] for d in docs] == [i.id for i in items] and docs[0]["options"] == items[0].options
    # the harness's prompt is Amauta's plain prompt (--prompt-format plain), for closed and gold alike
    import jinja2

    loaded = tiny("llama")
    gold_task = yaml.safe_load((folder / "amauta_exam_exam_test_gold.yaml").read_text(encoding="utf-8"))
    gold_docs = list(read_jsonl(Path(gold_task["dataset_kwargs"]["data_files"]["test"])))
    gold = GoldPassages(source_chunks(DOCS, items))
    for mode, spec, rows, examinee in (("closed", task, docs, Examinee(None, "closed")),
                                       ("gold", gold_task, gold_docs, Examinee(None, "gold", gold))):
        for item, doc in zip(items, rows, strict=True):
            harness = jinja2.Template(spec["doc_to_text"], keep_trailing_newline=True).render(**doc)
            # built without a model to fit the passages to (the tiny model's 512 positions would shorten them)
            amauta, _, separator = choice_text(loaded, build_prompt(examinee, item, 4).messages, "plain")
            assert harness == amauta and separator == spec["target_delimiter"], mode
    again = export_lm_eval(config(small_exam, tmp_path / "ev", export_lm_eval=str(folder), gold_passage=True))
    assert again == files  # the same content again: nothing to refuse
    data.write_text("{}\n", encoding="utf-8")
    with pytest.raises(AmautaError, match="already exists with other content"):
        export_lm_eval(config(small_exam, tmp_path / "ev", export_lm_eval=str(folder)))


def test_export_lm_eval_loads_in_the_harness(small_exam, tmp_path):
    pytest.importorskip("lm_eval")
    from lm_eval.tasks import TaskManager, get_task_dict

    folder = tmp_path / "lm"
    export_lm_eval(config(small_exam, tmp_path / "ev", export_lm_eval=str(folder)))
    manager = TaskManager(include_path=str(folder))
    assert "amauta_exam_exam_test_closed" in manager.all_tasks
    task = get_task_dict(["amauta_exam_exam_test_closed"], task_manager=manager)["amauta_exam_exam_test_closed"]
    doc = next(iter(task.test_docs()))
    assert task.doc_to_choice(doc) == doc["options"] and task.doc_to_target(doc) == doc["gold"]


# ---------------------------------------------------------------- the command

def test_cli_eval_exam(small_exam, tmp_path):
    from typer.testing import CliRunner

    from amauta.cli import app

    out = tmp_path / "ev"
    result = CliRunner().invoke(app, ["eval", "exam", "--exam", str(small_exam), "--model", "tiny-llama", "--limit", "2",
                                      "--no-short-answer", "--out", str(out), "--no-progress"])
    assert result.exit_code == 0, result.output
    assert "Opción múltiple" in result.output and "solo opciones" in result.output
    assert json.loads((out / "summary.json").read_text())["task"] == "exam"
    from amauta.report.report import ReportConfig, build

    markdown, _ = build(ReportConfig(run_dirs=[str(out)], out=str(tmp_path / "rep")))
    assert "### Opción múltiple (log-verosimilitud)" in markdown and "| base+options | solo opciones |" in markdown
    result = CliRunner().invoke(app, ["eval", "exam", "--exam", str(small_exam), "--export-lm-eval",
                                      str(tmp_path / "lm")])
    assert result.exit_code == 0 and "--include_path" in result.output


# ---------------------------------------------------------------- the embedded model

@pytest.mark.integration
def test_smollm2_takes_ten_items_closed_book_and_with_the_source(smollm2, tmp_path):
    items = read_exam(LEYES, "test")
    chosen = [i for i in items if i.answerable][:7] + [i for i in items if not i.answerable][:3]
    exam = write_exam(tmp_path / "exam.jsonl", chosen)
    out = tmp_path / "ev"
    summary = take(config(exam, out, model="smollm2-135m-instruct", gold_passage=True, options_only=False,
                         max_new_tokens=16, batch_size=10), loader=lambda spec, **kwargs: smollm2, show_progress=False)
    assert [m["mode"] for m in summary["models"]] == ["closed", "gold"]
    closed, gold = (m["metrics"] for m in summary["models"])
    assert closed["n"] == gold["n"] == 10
    assert all(r["output"].strip() for r in rows_of(out, "base") + rows_of(out, "base+gold"))
    assert gold["gold_retrieved"] == 1.0
    # with the article that states it in the prompt, the model picks the right value more often
    assert gold["acc_answerable"] >= closed["acc_answerable"]
