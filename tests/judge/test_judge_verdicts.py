"""Reading the judge's verdicts robustly, the Spanish judge prompt, and the agreement statistics."""

from __future__ import annotations

import math

import numpy as np
import pytest

from amauta.judge.agreement import agreement, between_people, judge_vs_people, spearman, weighted_kappa
from amauta.judge.judge import build_judge_messages, parse_verdict
from amauta.judge.rubric import CRITERIA, rubric_text


def test_parse_verdict_accepts_spanish_english_accents_text_and_nesting():
    got = parse_verdict({"exactitud": 4, "relevancia": "5", "coherencia": 3.0, "contexto": "4/5",
                         "justificación": "Correcta y breve."})
    assert got == {"scores": {"accuracy": 4, "relevance": 5, "coherence": 3, "context": 4},
                   "justification": "Correcta y breve."}
    nested = parse_verdict({"puntuaciones": {"Exactitud": 2, "Relevancia": 2, "Coherencia": 2,
                                             "Comprensión contextual": 1}, "razon": "mal"})
    assert nested["scores"] == {"accuracy": 2, "relevance": 2, "coherence": 2, "context": 1}
    english = parse_verdict([{"accuracy": 1, "relevance": 1, "coherence": 5, "context": 3}])
    assert english["scores"]["coherence"] == 5 and english["justification"] == ""


@pytest.mark.parametrize("value, message", [
    ({"exactitud": 4, "relevancia": 4, "coherencia": 4}, "missing 'contexto'"),
    ({"exactitud": 7, "relevancia": 4, "coherencia": 4, "contexto": 4}, "between 1 and 5"),
    ({"exactitud": "bien", "relevancia": 4, "coherencia": 4, "contexto": 4}, "not a number"),
    ("4", "expected a JSON object"),
])
def test_parse_verdict_rejects_with_a_reason_the_judge_can_act_on(value, message):
    with pytest.raises(ValueError, match=message):
        parse_verdict(value)


def test_judge_prompt_is_spanish_with_every_level_and_the_reference_and_history():
    text = rubric_text()
    for word in ("Exactitud", "Relevancia", "Coherencia", "Comprensión contextual"):
        assert word in text
    assert text.count("\n  1:") == 4 and text.count("\n  5:") == 4
    messages = build_judge_messages("¿Cuál es la tarifa del IVA?", "Es 15 %.", "15 % desde abril de 2024",
                                    [{"role": "user", "content": "Hola"}, {"role": "assistant", "content": "¡Hola!"}])
    assert messages[0]["role"] == "system" and "JSON" in messages[0]["content"]
    user = messages[1]["content"]
    assert "Respuesta de referencia" in user and "15 % desde abril de 2024" in user
    assert "Conversación previa" in user and "Asistente: ¡Hola!" in user
    assert "Respuesta de referencia" not in build_judge_messages("q", "a")[1]["content"]


def test_quadratic_kappa_matches_its_closed_form():
    rng = np.random.default_rng(1)
    a = rng.integers(1, 6, size=200)
    b = np.clip(a + rng.integers(-1, 2, size=200), 1, 5)
    # With quadratic weights, kappa = 2 cov(a, b) / (var a + var b + (mean a - mean b)^2) (population moments).
    closed = 2 * np.cov(a, b, bias=True)[0, 1] / (a.var() + b.var() + (a.mean() - b.mean()) ** 2)
    assert weighted_kappa(a.tolist(), b.tolist()) == pytest.approx(closed, abs=1e-12)
    assert weighted_kappa([1, 2, 3, 4, 5], [1, 2, 3, 4, 5]) == pytest.approx(1.0)
    assert weighted_kappa([1, 2, 3, 4, 5], [5, 4, 3, 2, 1]) == pytest.approx(-1.0)
    assert math.isnan(weighted_kappa([3, 3, 3], [3, 3, 3]))
    # Linear weights penalise a 1-vs-5 disagreement less than quadratic ones do, relative to near misses.
    assert weighted_kappa([1, 5, 3, 3], [5, 1, 3, 3], weights="linear") > weighted_kappa([1, 5, 3, 3], [5, 1, 3, 3])


def test_spearman_and_agreement_rows():
    rho, p = spearman([1, 2, 3, 4, 5], [2, 3, 4, 5, 5])
    assert rho > 0.9 and p < 0.05
    assert math.isnan(spearman([1, 1, 1], [1, 2, 3])[0])
    row = agreement([(5, 5), (4, 5), (1, 3), (2, 2)])
    assert row["n"] == 4 and row["exact"] == 0.5 and row["within_one"] == 0.75


def test_judge_vs_people_pools_criteria_and_people_agreement():
    judge = {("a", "i", 0, 0): dict.fromkeys(CRITERIA, 5), ("a", "j", 0, 0): dict.fromkeys(CRITERIA, 2),
             ("b", "i", 0, 0): dict.fromkeys(CRITERIA, 3)}
    people = [(("a", "i", 0, 0), dict.fromkeys(CRITERIA, 5)), (("a", "j", 0, 0), dict.fromkeys(CRITERIA, 1)),
              (("b", "i", 0, 0), dict.fromkeys(CRITERIA, 3)), (("zz", "i", 0, 0), dict.fromkeys(CRITERIA, 3))]
    table = judge_vs_people(judge, people, CRITERIA)
    assert table["accuracy"]["n"] == 3 and table["all"]["n"] == 12
    assert table["accuracy"]["kappa"] > 0.8
    grades = {"ana": {("a", "i", 0, 0): dict.fromkeys(CRITERIA, 4)}, "luis": {("a", "i", 0, 0): dict.fromkeys(CRITERIA, 5)}}
    assert between_people(grades, CRITERIA)["n"] == 4
