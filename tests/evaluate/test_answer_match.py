"""Judge-free short-answer scoring: Spanish normalisation, typed values, key-fact recall, precision, F1."""

from __future__ import annotations

from decimal import Decimal

import pytest

from amauta.data.answer_match import (
    Value,
    extract_values,
    fold,
    is_abstention,
    key_fact_recall,
    normalize,
    parse_number,
    score_answer,
    token_f1,
    words_to_digits,
)


def kinds(text: str, kind: str) -> list[str]:
    return [v.value for v in extract_values(text) if v.kind == kind]


# --- normalisation ---------------------------------------------------------------------------------------

def test_fold_drops_accents_case_and_enye():
    assert fold("Régimen RIMPE: AÑO, Día") == "regimen rimpe: ano, dia"


@pytest.mark.parametrize("literal, value", [
    ("20.000", "20000"), ("20,000", "20000"), ("1.234.567", "1234567"), ("1,234,567", "1234567"),
    ("31,50", "31.50"), ("31.5", "31.5"), ("0,5", "0.5"), ("1.234,56", "1234.56"), ("1,234.56", "1234.56"),
    ("2024", "2024"), ("12,5", "12.5"),
])
def test_parse_number_reads_spanish_and_english_separators(literal, value):
    assert parse_number(literal) == Decimal(value)


@pytest.mark.parametrize("text, digits", [
    ("quince", "15"), ("veintidós", "22"), ("treinta y cinco", "35"), ("cien", "100"), ("ciento veinte", "120"),
    ("doscientos cincuenta", "250"), ("mil", "1000"), ("veinte mil", "20000"), ("trescientos mil", "300000"),
    ("dos mil veintiuno", "2021"), ("un millón", "1000000"), ("dos millones trescientos mil", "2300000"),
    ("mil millones", "1000000000"), ("20 mil", "20000"), ("1,5 millones", "1500000"),
])
def test_words_to_digits_reads_spanish_numbers_up_to_millions(text, digits):
    assert words_to_digits(fold(text)) == digits


@pytest.mark.parametrize("text, expected", [
    ("un producto cuesta", "un producto cuesta"),  # an article, not a number
    ("cinco y diez", "5 y 10"),  # "y" joins tens and units only
    ("quince por ciento", "15 por ciento"),  # "ciento" after "por" is the percent sign
])
def test_words_to_digits_leaves_articles_and_lists_alone(text, expected):
    assert words_to_digits(fold(text)) == expected


@pytest.mark.parametrize("text", ["15 %", "15%", "quince por ciento", "15 por ciento", "el 15 porciento", "15,0 %"])
def test_percent_spellings_agree(text):
    assert kinds(text, "percent") == ["15"]


def test_tarifa_cero_is_a_percentage():
    assert kinds("Los libros tienen tarifa cero.", "percent") == ["0"]
    assert kinds("tarifa 0%", "percent") == ["0"]


@pytest.mark.parametrize("text", ["USD 20.000", "20000 dólares", "$20,000", "US$ 20.000", "veinte mil dólares",
                                  "20 mil dólares", "20.000 USD", "USD 20,000.00", "$ 20.000,00"])
def test_money_spellings_agree(text):
    assert kinds(text, "money") == ["20000"]


def test_money_with_cents_and_millions():
    assert kinds("USD 31,50", "money") == ["31.5"]
    assert kinds("un millón de dólares", "money") == ["1000000"]


@pytest.mark.parametrize("text, date", [
    ("14 de marzo", "14-3"), ("14/03", "14-3"), ("el 14/3/2024", "14-3-2024"), ("1.º de abril de 2024", "1-4-2024"),
    ("primero de abril", "1-4"), ("día 16 de Abril", "16-4"), ("31 de diciembre del 2023", "31-12-2023"),
    ("catorce de marzo", "14-3"),
])
def test_date_spellings(text, date):
    assert kinds(text, "date") == [date]


def test_a_date_implies_its_day_month_and_year():
    values = extract_values("14 de marzo de 2024")
    assert Value("day", "14") in values and Value("month", "3") in values and Value("year", "2024") in values


def test_days_months_years_and_numbers_with_units():
    assert kinds("hasta el día 14 del mes siguiente", "day") == ["14"]
    assert kinds("en marzo", "month") == ["3"]
    assert kinds("a fines de 2021", "year") == ["2021"]
    numbers = [v for v in extract_values("13 dígitos, cinco días y el formulario 107") if v.kind == "number"]
    assert numbers == [Value("number", "13", "digito"), Value("number", "5", "dia"),
                       Value("number", "107", "formulario")]


def test_a_percentage_is_not_also_read_as_a_bare_number():
    assert extract_values("el 15%") == [Value("percent", "15")]


def test_normalize_drops_punctuation_keeps_values():
    assert normalize("¿El IVA es del 15 %? ¡Sí, USD 1.240!") == "el iva es del 15% si usd 1240"


# --- key facts: recall and precision --------------------------------------------------------------------------

def test_key_fact_recall_counts_the_facts_found():
    assert key_fact_recall("Va del 1 de enero al 31 de diciembre.", ["1 de enero", "31 de diciembre"]) == 1.0
    assert key_fact_recall("Empieza el 1 de enero.", ["1 de enero", "31 de diciembre"]) == 0.5
    assert key_fact_recall("No sé.", ["15%"]) == 0.0
    assert key_fact_recall("lo que sea", []) == 1.0


@pytest.mark.parametrize("answer", ["La tarifa es del 15%.", "quince por ciento", "Es 15 %", "15 por ciento"])
def test_a_correct_percentage_in_any_spelling(answer):
    score = score_answer(answer, ["15%"], ["12%"])
    assert (score.recall, score.precision, score.correct) == (1.0, 1.0, True)


def test_a_distractor_in_the_answer_counts_as_wrong():
    score = score_answer("Es del 15%, aunque antes era del 12%.", ["15%"], ["12%", "10%"])
    assert score.recall == 1.0 and score.precision == 0.5 and not score.correct
    assert score.wrong == ["12%"]


def test_another_value_of_the_same_kind_counts_as_wrong():
    score = score_answer("Puede ser 15% o 14%.", ["15%"], ["12%"])
    assert score.wrong == ["percent:14"] and not score.correct


def test_values_of_other_kinds_are_not_wrong():
    score = score_answer("Con la tarifa del 15%, el IVA de USD 100 es USD 15.", ["USD 15"], ["USD 12"],
                         question="¿Cuánto IVA se paga por un producto de USD 100?")
    assert score.correct and score.precision == 1.0


def test_values_the_question_gives_are_not_wrong():
    question = "Un producto cuesta USD 340 antes de impuestos: ¿cuánto IVA se paga?"
    echoed = score_answer("De USD 340, el IVA es USD 51.", ["USD 51"], ["USD 391"], question=question)
    assert echoed.correct
    total = score_answer("El IVA es USD 51 y el total USD 391.", ["USD 51"], ["USD 391"], question=question)
    assert total.wrong == ["USD 391"] and not total.correct
    unasked = score_answer("De USD 340, el IVA es USD 51.", ["USD 51"], ["USD 391"])
    assert unasked.wrong == ["money:340"]


def test_money_spellings_match_the_key_fact():
    for answer in ("20000 dólares", "$20,000", "veinte mil dólares", "USD 20.000"):
        assert score_answer(answer, ["USD 20.000"], ["USD 300.000"]).correct, answer
    assert not score_answer("USD 2.000", ["USD 20.000"]).correct


def test_a_date_key_fact():
    assert score_answer("Hasta el 20 de agosto.", ["20 de agosto"], ["20 de julio"]).correct
    assert score_answer("Vence el 20/08.", ["20 de agosto"]).correct
    wrong = score_answer("Hasta el 20 de julio.", ["20 de agosto"], ["20 de julio", "22 de agosto"])
    assert wrong.recall == 0.0 and wrong.wrong == ["20 de julio"]
    other = score_answer("Hasta el 21 de agosto.", ["20 de agosto"])
    assert other.wrong == ["date:21-8"]


def test_a_date_without_year_matches_one_with_year():
    assert score_answer("Desde el 1 de abril.", ["1 de abril de 2024"]).correct
    assert score_answer("Desde el 1 de abril de 2024.", ["1 de abril"]).correct
    assert not score_answer("Desde el 1 de abril de 2023.", ["1 de abril de 2024"]).correct


def test_a_day_key_fact_is_matched_by_a_date_on_that_day():
    assert score_answer("Hasta el 18 de marzo.", ["día 18"], ["día 16"]).correct
    score = score_answer("El día 16.", ["día 18"], ["día 16"])
    assert score.recall == 0.0 and score.wrong == ["día 16"]
    assert score_answer("El día 20.", ["día 18"]).wrong == ["day:20"]


def test_a_month_key_fact_and_another_month():
    assert score_answer("En marzo del año siguiente.", ["marzo"], ["abril"]).correct
    score = score_answer("En marzo, y las sociedades en abril.", ["marzo"], ["abril"])
    assert score.wrong == ["abril"] and not score.correct


def test_numbers_with_units():
    assert score_answer("Dentro de los cinco días siguientes.", ["5 días"], ["30 días"]).correct
    assert score_answer("En 10 días.", ["5 días"]).wrong == ["number:10 dia"]
    assert score_answer("Es el 107.", ["formulario 107"]).correct  # a bare number matches a labelled one
    assert score_answer("El formulario 103.", ["formulario 107"]).wrong == ["number:103 formulario"]
    # bare numbers ("10 de la cédula") carry no unit to contradict a key fact
    assert score_answer("Son 13 dígitos: la cédula más 001.", ["13 dígitos"]).correct


def test_phrase_key_facts_and_alternatives():
    facts = ["cada mes | mensual | mensualmente"]
    assert score_answer("Se declara cada mes.", facts).correct
    assert score_answer("La declaración es mensual.", facts).correct
    assert not score_answer("Es semestral.", facts, ["semestral | cada semestre"]).correct
    # a phrase matches whole words only
    assert key_fact_recall("una factura", ["facturas"]) == 0.0
    assert key_fact_recall("Régimen RIMPE", ["regimen rimpe"]) == 1.0


def test_a_fact_with_two_values_needs_both():
    assert key_fact_recall("del 1 de enero", ["1 de enero al 31 de diciembre"]) == 0.0
    assert key_fact_recall("del 1 de enero al 31 de diciembre", ["1 de enero al 31 de diciembre"]) == 1.0


def test_precision_is_one_when_nothing_is_stated_and_correct_needs_every_key_fact():
    score = score_answer("No estoy seguro.", ["15%"])
    assert (score.recall, score.precision, score.correct) == (0.0, 1.0, False)
    assert score_answer("15%", []).correct is False  # nothing to be right about


def test_unanswerable_items_want_an_abstention():
    ok = score_answer("Los documentos no lo indican.", [], ["USD 30", "USD 60"], answerable=False)
    assert (ok.recall, ok.precision, ok.correct, ok.abstained) == (1.0, 1.0, True, True)
    invented = score_answer("La multa es de USD 45.", [], ["USD 30", "USD 60"], answerable=False)
    assert (invented.recall, invented.correct, invented.wrong) == (0.0, False, ["money:45"])
    hedged = score_answer("No se indica, pero suele ser USD 30.", [], ["USD 30"], answerable=False)
    assert hedged.abstained and not hedged.correct


def test_an_answerable_item_answered_with_an_abstention_is_not_correct():
    score = score_answer("Los documentos no lo indican.", ["15%"])
    assert score.abstained and not score.correct and score.recall == 0.0


@pytest.mark.parametrize("answer", [
    "Los documentos no lo indican.", "Los documentos no lo indican", "No se especifica en los documentos.",
    "La guía no menciona el monto.", "No tengo información sobre eso.", "Esa información no aparece en los documentos.",
    "No es posible determinarlo con estos textos.", "Desconozco el valor.", "Los textos no dicen cuánto es.",
])
def test_abstentions(answer):
    assert is_abstention(answer)


@pytest.mark.parametrize("answer", [
    "Los medicamentos no pagan IVA.", "El IVA no está incluido en el precio.", "La tarifa es del 15%.",
    "Los negocios populares no presentan declaraciones de IVA.", "No, se declara cada mes.",
])
def test_answers_that_are_not_abstentions(answer):
    assert not is_abstention(answer)


# --- token F1 ----------------------------------------------------------------------------------------------

def test_token_f1_ignores_articles_accents_punctuation_and_number_spelling():
    assert token_f1("El IVA es del 15 %.", "iva es del quince por ciento") == 1.0
    assert token_f1("La tarifa", "tarifa") == 1.0
    assert token_f1("Régimen", "regimen") == 1.0


def test_token_f1_partial_and_disjoint():
    # prediction [tarifa, iva, 15%], reference [iva, es, 15%]: 2 shared → P = R = 2/3
    assert token_f1("tarifa IVA 15%", "el IVA es 15%") == pytest.approx(2 / 3)
    assert token_f1("marzo", "abril") == 0.0
    assert token_f1("", "") == 1.0
    assert token_f1("", "algo") == 0.0
