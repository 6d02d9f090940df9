"""Score short Spanish answers without a judge: key-fact recall, a precision term, token F1, abstention.

An exam item lists the `key_facts` a correct answer must contain (numbers, dates, names) and the
`distractor_facts` (the wrong values of its options). Both sides are compared after the Spanish
normalisation of `amauta.documents.values` (accents folded, number words and separators read as
numbers, typed values: "15 %"/"15%"/"quince por ciento", "USD 20.000"/"20000 dólares", "14 de marzo"),
so that the same value written differently still matches. Its names (`fold`, `normalize`,
`extract_values`, `Value`, ...) are importable from here too.

A key fact that contains a typed value matches an answer holding the same value; a key fact without one
is a phrase matched inside the normalised answer. Alternatives are separated by "|" ("cada mes |
mensual"). The precision term counts as wrong every distractor value in the answer and every other value
of a kind the item asks for (another percentage when a key fact is a percentage, another amount, another
day), except values the question itself contains (a worked example's "USD 340" may be repeated).
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field

# The value reader lives with the documents (RAG's grounding check uses it too); re-exported here.
from amauta.documents.values import (  # noqa: F401
    MONTHS,
    UNIT_BEFORE,
    Value,
    canonical_number,
    extract_values,
    fold,
    implied_values,
    normalize,
    parse_number,
    prepare,
    singular,
    words_to_digits,
)

# --- key facts ------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class _Fact:
    """One key or distractor fact: its alternatives, each the typed values it states or else a phrase."""

    text: str
    alternatives: tuple[tuple[tuple[Value, ...], str], ...]

    @classmethod
    def parse(cls, text: str) -> _Fact:
        alts = [(tuple(_stated(extract_values(alt))), normalize(alt)) for alt in str(text).split("|") if alt.strip()]
        return cls(str(text), tuple(alts))

    def values(self) -> list[Value]:
        return [v for values, _ in self.alternatives for v in values]

    def matches(self, values: set[Value], normalized: str) -> bool:
        return any(_alternative_matches(vals, phrase, values, normalized) for vals, phrase in self.alternatives)


def _stated(values: list[Value]) -> list[Value]:
    """The values a text states itself: a date, not the day and month it implies."""
    implied = {i for v in values for i in implied_values(v)}
    return [v for v in values if v not in implied]


def _alternative_matches(fact_values: tuple[Value, ...], phrase: str, values: set[Value], normalized: str) -> bool:
    if fact_values:
        return all(_value_present(v, values) for v in fact_values)
    return bool(phrase) and re.search(rf"(?<![\w%]){re.escape(phrase)}(?![\w%])", normalized) is not None


def _value_present(fact: Value, values: set[Value]) -> bool:
    if fact in values:
        return True
    if fact.kind == "date":  # "14 de marzo" matches "14 de marzo de 2024", and the other way round
        return any(v.kind == "date" and _same_day_month(v, fact) and _years_agree(v, fact) for v in values)
    if fact.kind == "number" and fact.unit:  # "formulario 107" also matches a bare "107"
        return Value("number", fact.value, "") in values
    return False


def _same_day_month(a: Value, b: Value) -> bool:
    return a.value.split("-")[:2] == b.value.split("-")[:2]


def _years_agree(a: Value, b: Value) -> bool:
    ya, yb = a.value.split("-")[2:], b.value.split("-")[2:]
    return not ya or not yb or ya == yb


def _of_asked_kind(value: Value, asked: list[Value]) -> bool:
    """Whether `value` is of a kind the item asks for (bare numbers carry no kind: "10 de la cédula")."""
    if value.kind == "number" and not value.unit:
        return False
    return any((a.kind, a.unit) == (value.kind, value.unit) for a in asked)


@dataclass
class AnswerScore:
    """How a short answer fares against an item's key facts.

    recall: share of key facts the answer contains (unanswerable items: 1.0 when it abstains, else 0.0).
    precision: right values / (right + wrong values) the answer states; 1.0 when it states none.
    correct: every key fact present and nothing wrong (unanswerable items: it abstains, nothing wrong).
    abstained: the answer says the documents do not give it (`is_abstention`).
    matched, missing: the key facts found and not found.
    wrong: the distractor facts found, then other values of an asked kind ("percent:12").
    """

    recall: float
    precision: float
    correct: bool
    abstained: bool
    matched: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    wrong: list[str] = field(default_factory=list)


def key_fact_recall(answer: str, key_facts: Iterable[str]) -> float:
    """The share of `key_facts` found in `answer` (1.0 for an empty list)."""
    facts = [_Fact.parse(f) for f in key_facts]
    if not facts:
        return 1.0
    values, normalized = set(extract_values(answer)), normalize(answer)
    return sum(f.matches(values, normalized) for f in facts) / len(facts)


def score_answer(answer: str, key_facts: Iterable[str], distractor_facts: Iterable[str] = (), *,
                 question: str = "", answerable: bool = True) -> AnswerScore:
    """Key-fact recall, precision and correctness of one short answer (see the module docstring).

    Values and distractors that the `question` itself contains are not counted against the answer.
    """
    keys = [_Fact.parse(f) for f in key_facts]
    distractors = [_Fact.parse(f) for f in distractor_facts]
    found = extract_values(answer)
    values, normalized = set(found), normalize(answer)
    asked_values = set(extract_values(question)) if question else set()
    asked_text = normalize(question) if question else ""
    matched = [k.text for k in keys if k.matches(values, normalized)]
    missing = [k.text for k in keys if not k.matches(values, normalized)]
    wrong = [d.text for d in distractors if d.matches(values, normalized) and not d.matches(asked_values, asked_text)]
    key_values = [v for k in keys for v in k.values()]
    distractor_values = [v for d in distractors for v in d.values()]
    for value in dict.fromkeys(found):
        if value in asked_values or any(_value_present(k, {value}) for k in key_values):
            continue
        if any(_value_present(d, {value}) for d in distractor_values):
            continue  # already counted as a distractor
        if _of_asked_kind(value, key_values + distractor_values):
            wrong.append(f"{value.kind}:{value.value}" + (f" {value.unit}" if value.unit else ""))
    abstained = is_abstention(answer)
    if not answerable:
        return AnswerScore(recall=float(abstained), precision=0.0 if wrong else 1.0,
                           correct=abstained and not wrong, abstained=abstained, wrong=wrong)
    stated = len(matched) + len(wrong)
    return AnswerScore(recall=len(matched) / len(keys) if keys else 1.0,
                       precision=len(matched) / stated if stated else 1.0,
                       correct=bool(keys) and not missing and not wrong, abstained=abstained,
                       matched=matched, missing=missing, wrong=wrong)


# --- abstention and token F1 ------------------------------------------------------------------------------

_ABSTAIN_RE = re.compile(
    r"\bno\s+(?:lo\s+|se\s+)?(?:indica|indican|dice|dicen|menciona|mencionan|especifica|especifican|precisa|"
    r"precisan|establece|establecen|detalla|detallan|senala|senalan|informa|informan)\b"
    r"|\bno\s+(?:tengo|hay|dispongo\s+de|cuento\s+con)\s+(?:suficiente\s+)?(?:informacion|datos)\b"
    r"|\bno\s+(?:esta|aparece|figura|consta)\w*\s+(?:en|entre)\s+(?:los|el|las|la)\s+"
    r"(?:documentos?|textos?|fuentes?|pasajes?|guias?|contexto)\b"
    r"|\bno\s+(?:puedo|es\s+posible)\s+(?:responder|saber|determinar|precisar|indicar)(?:lo|la)?\b"
    r"|\bno\s+se\s+(?:sabe|puede\s+(?:saber|determinar|responder|precisar))\b"
    r"|\bsin\s+informacion\b|\bdesconozco\b|\bno\s+lo\s+se\b")


def is_abstention(answer: str) -> bool:
    """Whether the answer declines because the documents do not say ("Los documentos no lo indican")."""
    return _ABSTAIN_RE.search(fold(answer)) is not None


_ARTICLES = {"el", "la", "los", "las", "lo", "un", "una", "unos", "unas", "al", "del"}


def answer_tokens(text: str) -> list[str]:
    """SQuAD-style tokens: normalised (accents, case, numbers, punctuation) without Spanish articles."""
    return [t for t in normalize(text).split() if t not in _ARTICLES]


def token_f1(prediction: str, reference: str) -> float:
    """Token-overlap F1 between a prediction and a reference answer (SQuAD's, Spanish articles removed)."""
    pred, ref = answer_tokens(prediction), answer_tokens(reference)
    if not pred or not ref:
        return float(pred == ref)
    same = sum((Counter(pred) & Counter(ref)).values())
    if same == 0:
        return 0.0
    precision, recall = same / len(pred), same / len(ref)
    return 2 * precision * recall / (precision + recall)


# --- key facts of a free-text reference ----------------------------------------------------------------------

_MONTH_NAMES = {number: name for name, number in reversed(MONTHS.items())}  # 9 → "septiembre", not "setiembre"


def _value_text(value: Value) -> str:
    """A typed value written back as text that `extract_values` reads as the same value."""
    if value.kind == "percent":
        return f"{value.value}%"
    if value.kind == "money":
        return f"USD {value.value}"
    if value.kind == "date":
        parts = value.value.split("-")
        return f"{parts[0]} de {_MONTH_NAMES[int(parts[1])]}" + (f" de {parts[2]}" if len(parts) == 3 else "")
    if value.kind == "day":
        return f"día {value.value}"
    if value.kind == "month":
        return _MONTH_NAMES[int(value.value)]
    if value.kind == "number" and value.unit in {singular(u) for u in UNIT_BEFORE}:
        return f"{value.unit} {value.value}"
    return f"{value.value} {value.unit}".strip()


def reference_key_facts(reference: str) -> list[str]:
    """The key facts of a free-text reference answer: every typed value it states (percentages, amounts,
    dates, days, months, years, numbers with their unit), once each, as key-fact strings.

    For prompt sets whose items have a reference but no key facts (the judge's `law-ec`): an answer's
    `key_fact_recall` against these is the share of the reference's values it repeats. A reference that
    states no value ("¿Qué es el RUC?") has none; score it by token F1 instead.
    """
    return list(dict.fromkeys(_value_text(v) for v in _stated(extract_values(reference))))
