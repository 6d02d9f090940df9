"""The judge's comparison reports key-fact recall and token F1 against the references, with or without a judge."""

from __future__ import annotations

import json
import os

import pytest
from rich.console import Console

from amauta.data.answer_match import key_fact_recall, reference_key_facts
from amauta.judge.candidates import Answer
from amauta.judge.judge import JudgeConfig, reference_metrics, reference_table, run
from amauta.judge.tables import print_summary, reference_rows, report_markdown
from amauta.llm.fake_server import FakeOpenAIServer

SET = """name: mini
items:
  - id: q1
    category: basic
    prompt: ¿Cuál es la tarifa general del IVA?
    reference: La tarifa general del IVA es del 15 %, vigente desde el 1 de abril de 2024.
  - id: q2
    category: basic
    prompt: ¿Qué es el RUC?
    reference: El Registro Único de Contribuyentes.
  - id: q3
    category: creative
    prompt: Escribe un poema.
"""
VERDICT = json.dumps({"exactitud": 3, "relevancia": 4, "coherencia": 2, "contexto": 5, "justificacion": "Regular."})


def answer(candidate, item, text, reference, attempt=0, category="basic") -> Answer:
    return Answer(candidate=candidate, item=item, turn=0, attempt=attempt, category=category, prompt="?",
                  answer=text, reference=reference)


def test_reference_key_facts_are_the_values_the_reference_states():
    ref = "La tarifa general del IVA es del 15 %, vigente desde el 1 de abril de 2024; antes era del 12 %."
    assert reference_key_facts(ref) == ["15%", "12%", "1 de abril de 2024"]
    assert reference_key_facts("Formulario 104; USD 20.000 al año, 13 dígitos.") == [
        "USD 20000", "formulario 104", "13 digito"]
    assert reference_key_facts("El Servicio de Rentas Internas.") == []
    for text in (ref, "Hasta el 18 de marzo, o 30 días después.", "En septiembre, formulario 103."):
        assert key_fact_recall(text, reference_key_facts(text)) == 1.0  # every fact reads back as itself


def test_metrics_per_answer_and_per_candidate_with_attempts_averaged_per_prompt():
    ref = "La tarifa es del 15 %, desde el 1 de abril de 2024."
    good = reference_metrics(answer("ft", "q1", "Es del quince por ciento desde el 1 de abril de 2024.", ref))
    assert good["key_fact_recall"] == 1.0 and 0 < good["token_f1"] < 1 and good["key_facts"] == ["15%", "1 de abril de 2024"]
    half = reference_metrics(answer("base", "q1", "Es del 12 %, desde el 1 de abril de 2024.", ref))
    assert half["key_fact_recall"] == 0.5
    none = reference_metrics(answer("base", "q2", "Un registro.", "El Registro Único de Contribuyentes."))
    assert none["key_fact_recall"] is None and none["token_f1"] > 0  # no value to recall: F1 only
    assert reference_metrics(answer("base", "q3", "Un poema.", None)) == {"token_f1": None, "key_fact_recall": None,
                                                                       "key_facts": []}
    rows = [(a, reference_metrics(a)) for a in (
        answer("base", "q1", "Es del 15 %.", ref, attempt=0), answer("base", "q1", "Es del 12 %.", ref, attempt=1),
        answer("base", "q2", "Un registro.", "El Registro Único de Contribuyentes."))]
    table = reference_table(rows, ["base"], ["basic"])
    recall = table["base"]["all"]["key_fact_recall"]
    assert recall["n"] == 1 and recall["mean"] == pytest.approx(0.25)  # (1/2 + 0/2) / 2 attempts, one prompt
    assert table["base"]["all"]["token_f1"]["n"] == 2 and str(table["base"]["basic"]) == str(table["base"]["all"])


def test_a_prompt_set_may_name_the_key_facts_itself(tmp_path):
    from amauta.core.errors import AmautaError
    from amauta.judge.candidates import load_prompt_set

    path = tmp_path / "kf.yaml"
    path.write_text("""items:
  - id: q1
    category: basic
    prompt: ¿Cuál es la tarifa del IVA?
    reference: Es del 15 %; antes era del 12 %.
    key_facts: ["15 %"]
  - id: s1
    category: contextual
    turns: [{prompt: "Hola", reference: "Hasta el día 28.", key_facts: ["día 28 | 28 de marzo"]}, "¿Y?"]
""", encoding="utf-8")
    pset = load_prompt_set(path)
    assert pset.items[0].key_facts == [["15 %"]] and pset.items[1].key_facts == [["día 28 | 28 de marzo"], None]
    listed = answer("base", "q1", "Es del 15 %.", "Es del 15 %; antes era del 12 %.")
    listed.key_facts = ["15 %"]
    assert reference_metrics(listed)["key_fact_recall"] == 1.0  # the old rate is no key fact of this question
    listed.key_facts = None
    assert reference_metrics(listed)["key_fact_recall"] == 0.5  # derived from the reference: 15 % and 12 %
    path.write_text("items:\n  - id: q1\n    category: basic\n    prompt: ¿?\n    key_facts: 15\n", encoding="utf-8")
    with pytest.raises(AmautaError, match=r"kf\.yaml:2: item 'q1': 'key_facts' must be a list of texts"):
        load_prompt_set(path)


@pytest.fixture
def mini_set(tmp_path):
    path = tmp_path / "mini.yaml"
    path.write_text(SET, encoding="utf-8")
    return path


def test_the_comparison_has_numbers_without_a_judge(tmp_path, mini_set):
    out = tmp_path / "run"
    config = JudgeConfig(prompt_set=str(mini_set), model="tiny-llama", candidates=["base", "otro=base@greedy"], n=2,
                         max_new_tokens=4, skip_judge=True, out=str(out))
    run(config, show_progress=False, console=Console(file=open(os.devnull, "w")))
    summary = json.loads((out / "summary.json").read_text())
    assert summary["judged"] == 0 and set(summary["reference_table"]) == {"base", "otro"}
    entry = summary["reference_table"]["base"]["all"]
    assert entry["token_f1"]["n"] == 2 and entry["key_fact_recall"]["n"] == 1  # q3 has no reference
    items = [json.loads(line) for line in (out / "items.jsonl").read_text().splitlines()]
    q1 = next(r for r in items if r["item"] == "q1")
    assert q1["key_facts"] == ["15%", "1 de abril de 2024"] and 0 <= q1["token_f1"] <= 1
    screen = Console(record=True, width=200, file=open(os.devnull, "w"))
    print_summary(summary, screen)
    text = screen.export_text()
    assert "Key-fact recall" in text and "Token F1" in text and "nothing graded yet" in text
    [base_row, _] = reference_rows(summary)
    assert base_row[0] == "base" and base_row[1] == "–" and "sin intervalo" in base_row[3]
    markdown = report_markdown(summary)
    assert "Against the references (no judge needed)" in markdown and "| base | – |" in markdown


def test_the_judge_s_score_stands_beside_recall_and_f1(tmp_path, mini_set):
    out = tmp_path / "run"
    with FakeOpenAIServer(VERDICT) as url:
        config = JudgeConfig(prompt_set=str(mini_set), model="tiny-llama", candidates=["base@greedy"], n=1,
                             max_new_tokens=4, judge_url=url, judge_model="juez", judge_backoff=0.0, out=str(out))
        run(config, show_progress=False, console=Console(file=open(os.devnull, "w")))
    summary = json.loads((out / "summary.json").read_text())
    [row] = reference_rows(summary)
    assert row[0] == "base@greedy" and row[1].startswith("3.50")
    assert "| base@greedy | 3.50" in report_markdown(summary)
