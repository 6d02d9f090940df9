"""Score short Spanish answers without a judge: key-fact recall, a precision term, token F1, abstention.

An exam item lists the `key_facts` a correct answer must contain (numbers, dates, names) and the
`distractor_facts` (the wrong values of its options). Both sides are compared after a Spanish
normalisation, so that the same value written differently still matches:

- accents folded, case and punctuation ignored ("Régimen" = "regimen");
- Spanish number words read as numbers up to the millions ("quince" = 15, "veinte mil" = 20000,
  "dos millones trescientos mil" = 2300000);
- thousands separators as Spanish writes them ("20.000" and "20,000" are 20000, "31,50" is 31.5: a
  separator followed by exactly three digits, or used more than once, groups thousands; otherwise it is
  the decimal mark; with both, the last one is the decimal mark);
- typed values: percentages ("15 %", "15%", "quince por ciento", "tarifa cero"), amounts of money
  ("USD 20.000", "US$ 20.000", "$20,000", "20000 dólares", "veinte mil dólares"), dates ("14 de marzo",
  "14/03", "1.º de abril de 2024"), days ("día 14"), months ("marzo"), years ("2021") and other numbers
  with their unit ("5 días", "13 dígitos", "formulario 107").

A key fact that contains a typed value matches an answer holding the same value; a key fact without one
is a phrase matched inside the normalised answer. Alternatives are separated by "|" ("cada mes |
mensual"). The precision term counts as wrong every distractor value in the answer and every other value
of a kind the item asks for (another percentage when a key fact is a percentage, another amount, another
day), except values the question itself contains (a worked example's "USD 340" may be repeated).
"""

from __future__ import annotations

import re
import unicodedata
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from decimal import Decimal

# --- normalisation -------------------------------------------------------------------------------------

_UNITS = {
    "cero": 0, "uno": 1, "un": 1, "una": 1, "dos": 2, "tres": 3, "cuatro": 4, "cinco": 5, "seis": 6,
    "siete": 7, "ocho": 8, "nueve": 9, "diez": 10, "once": 11, "doce": 12, "trece": 13, "catorce": 14,
    "quince": 15, "dieciseis": 16, "diecisiete": 17, "dieciocho": 18, "diecinueve": 19, "veinte": 20,
    "veintiuno": 21, "veintiun": 21, "veintiuna": 21, "veintidos": 22, "veintitres": 23,
    "veinticuatro": 24, "veinticinco": 25, "veintiseis": 26, "veintisiete": 27, "veintiocho": 28,
    "veintinueve": 29,
}
_TENS = {"treinta": 30, "cuarenta": 40, "cincuenta": 50, "sesenta": 60, "setenta": 70, "ochenta": 80,
         "noventa": 90}
_HUNDREDS = {
    "cien": 100, "ciento": 100, "doscientos": 200, "doscientas": 200, "trescientos": 300, "trescientas": 300,
    "cuatrocientos": 400, "cuatrocientas": 400, "quinientos": 500, "quinientas": 500, "seiscientos": 600,
    "seiscientas": 600, "setecientos": 700, "setecientas": 700, "ochocientos": 800, "ochocientas": 800,
    "novecientos": 900, "novecientas": 900,
}
_SMALL = {**_UNITS, **_TENS, **_HUNDREDS}
_MILLION = {"millon", "millones"}
# "un"/"una" are articles far more often than numbers: read them as 1 only before "mil"/"millón".
_ARTICLE_ONES = {"un", "una"}

MONTHS = {"enero": 1, "febrero": 2, "marzo": 3, "abril": 4, "mayo": 5, "junio": 6, "julio": 7, "agosto": 8,
          "septiembre": 9, "setiembre": 9, "octubre": 10, "noviembre": 11, "diciembre": 12}

_NUMBER = r"\d{1,3}(?:[.,]\d{3})+(?:[.,]\d+)?|\d+(?:[.,]\d+)?"
_NUMBER_RE = re.compile(rf"(?<![\d.,])(?:{_NUMBER})(?![\d])")
_TOKEN_RE = re.compile(rf"{_NUMBER}|[a-z]+|\S")


def fold(text: str) -> str:
    """Lower case, accents folded (ñ → n as well), ordinal marks and non-breaking spaces made plain."""
    text = unicodedata.normalize("NFKD", str(text).replace("º", "o").replace("ª", "a"))
    text = "".join(ch for ch in text if not unicodedata.combining(ch)).casefold()
    text = re.sub(r"(\d)\.?(?:o|ro|er)\b", r"\1", text)  # ordinals: "1.º", "1ro", "1er" de abril
    return text.replace("\u00a0", " ").replace("us$", " usd ").replace("$", " usd ")


def parse_number(literal: str) -> Decimal:
    """A numeric literal with Spanish or English separators as a Decimal (see the module docstring)."""
    seps = [ch for ch in literal if ch in ".,"]
    if not seps:
        return Decimal(literal)
    if len(set(seps)) == 2:  # "1.234,56" or "1,234.56": the last separator is the decimal mark
        decimal_mark = seps[-1]
        thousands = "," if decimal_mark == "." else "."
        return Decimal(literal.replace(thousands, "").replace(decimal_mark, "."))
    mark = seps[0]
    groups = literal.split(mark)
    if len(groups) > 2 or len(groups[1]) == 3:
        return Decimal(literal.replace(mark, ""))
    return Decimal(literal.replace(mark, "."))


def canonical_number(value: Decimal) -> str:
    """'20000', '31.5', '0': no exponent, no trailing zeros."""
    text = format(value.normalize(), "f")
    return text.rstrip("0").rstrip(".") if "." in text else text


def _number_word_value(words: Sequence[str]) -> int:
    """The value of a run of Spanish number words ("dos millones trescientos mil" → 2300000)."""
    total, current = 0, 0
    for word in words:
        if word in _SMALL:
            current += _SMALL[word]
        elif word == "mil":
            current = (current or 1) * 1000
        elif word in _MILLION:
            total += (current or 1) * 1_000_000
            current = 0
    return total + current


def _is_number_word(tokens: list[str], i: int) -> bool:
    word = tokens[i]
    if word in _ARTICLE_ONES:
        return i + 1 < len(tokens) and (tokens[i + 1] == "mil" or tokens[i + 1] in _MILLION)
    return word in _SMALL or word == "mil" or word in _MILLION


def words_to_digits(text: str) -> str:
    """Replace runs of Spanish number words in folded text by digits ("veinte mil dolares" → "20000 dolares").

    A digit literal followed by "mil"/"millones" is multiplied ("20 mil" → 20000, "1,5 millones" →
    1500000); "y" joins tens and units only ("treinta y cinco" → 35, not "cinco y diez").
    """
    tokens = _TOKEN_RE.findall(text)
    out: list[str] = []
    i = 0
    while i < len(tokens):
        token = tokens[i]
        if token[0].isdigit() and i + 1 < len(tokens) and (tokens[i + 1] == "mil" or tokens[i + 1] in _MILLION):
            value, i = parse_number(token), i + 1
            while i < len(tokens) and (tokens[i] == "mil" or tokens[i] in _MILLION):
                value *= 1000 if tokens[i] == "mil" else 1_000_000
                i += 1
            out.append(canonical_number(value))
            continue
        if not _is_number_word(tokens, i) or (token in ("ciento", "cien") and out and out[-1] == "por"):
            out.append(token)
            i += 1
            continue
        run = [token]
        i += 1
        while i < len(tokens):
            if tokens[i] == "y" and run[-1] in _TENS and i + 1 < len(tokens) and _UNITS.get(tokens[i + 1], 99) < 10:
                run.append(tokens[i + 1])
                i += 2
            elif _is_number_word(tokens, i) and tokens[i] != "cero":
                run.append(tokens[i])
                i += 1
            else:
                break
        out.append(str(_number_word_value(run)))
    return " ".join(out)


def _canonical_numbers(text: str) -> str:
    return _NUMBER_RE.sub(lambda m: canonical_number(parse_number(m.group(0))), text)


def prepare(text: str) -> str:
    """Folded text with number words as digits and every numeric literal in canonical form."""
    return _canonical_numbers(words_to_digits(fold(text)))


# --- typed values ---------------------------------------------------------------------------------------

_N = r"\d+(?:\.\d+)?"
_MONTH = "|".join(MONTHS)
_MONEY_RE = re.compile(rf"\busd\s*({_N})|\b({_N})\s*(?:de\s+)?(?:usd|dolares|dolar)\b")
_PERCENT_RE = re.compile(rf"\b({_N})\s*(?:%|por\s*cien(?:to)?\b|porciento\b)|\btarifa\s+(?:del?\s+)?({_N})\b(?!\s*%)")
_DATE_RE = re.compile(rf"\b(?:dia\s+)?(\d{{1,2}}|primero)\s+de\s+({_MONTH})\b"
                      rf"(?:\s+(?:de|del)\s+(\d{{4}})\b)?")
_SLASH_DATE_RE = re.compile(r"\b(\d{1,2})\s*/\s*(\d{1,2})(?:\s*/\s*(\d{4}|\d{2}))?\b")
_DAY_RE = re.compile(r"\bdias?\s+(\d{1,2})\b")
_MONTH_RE = re.compile(rf"\b({_MONTH})\b")
_NUMBER_ONLY_RE = re.compile(rf"\b({_N})\b")
_WORD_RE = re.compile(r"[a-z]+")
# Labels written before their number ("formulario 107"); any other unit is the word after the number.
_UNIT_BEFORE = {"formulario", "formularios", "articulo", "articulos", "art", "numero"}
_IRREGULAR_PLURALS = {"meses": "mes", "mes": "mes"}
_STOPWORDS = {"de", "del", "y", "o", "a", "al", "en", "el", "la", "los", "las", "que", "por", "con", "para",
              "es", "son", "se", "u", "e"}


@dataclass(frozen=True)
class Value:
    """A typed value found in a text.

    kind: "percent", "money", "date", "day", "month", "year" or "number".
    value: canonical text ("15", "20000", "14-3" or "14-3-2024" for dates, "3" for March).
    unit: for "number", the label it goes with ("dia", "digito", "formulario") or "" when bare.
    """

    kind: str
    value: str
    unit: str = ""


def _singular(word: str) -> str:
    if word in _IRREGULAR_PLURALS:
        return _IRREGULAR_PLURALS[word]
    return word[:-1] if word.endswith("s") and len(word) > 3 else word


def _date_value(day: str, month: int, year: str | None) -> Value | None:
    d = 1 if day == "primero" else int(day)
    if not 1 <= d <= 31 or not 1 <= month <= 12:
        return None
    if year and len(year) == 2:
        year = "20" + year
    return Value("date", f"{d}-{month}" + (f"-{int(year)}" if year else ""))


def _implied(value: Value) -> list[Value]:
    """A date also states its day, its month and (when written) its year."""
    if value.kind != "date":
        return []
    parts = value.value.split("-")
    implied = [Value("day", parts[0]), Value("month", parts[1])]
    return implied + ([Value("year", parts[2])] if len(parts) == 3 else [])


def extract_values(text: str, *, prepared: bool = False) -> list[Value]:
    """Every typed value in `text`, in order of kind (see `Value`), dates followed by what they imply."""
    text = text if prepared else prepare(text)
    taken = bytearray(len(text))  # characters already read as part of a typed value
    values: list[Value] = []

    def claim(match: re.Match, value: Value | None) -> None:
        if value is None or any(taken[match.start():match.end()]):
            return
        taken[match.start():match.end()] = b"\x01" * (match.end() - match.start())
        values.append(value)
        values.extend(_implied(value))

    for m in _MONEY_RE.finditer(text):
        claim(m, Value("money", m.group(1) or m.group(2)))
    for m in _PERCENT_RE.finditer(text):
        claim(m, Value("percent", m.group(1) or m.group(2)))
    for m in _DATE_RE.finditer(text):
        claim(m, _date_value(m.group(1), MONTHS[m.group(2)], m.group(3)))
    for m in _SLASH_DATE_RE.finditer(text):
        claim(m, _date_value(m.group(1), int(m.group(2)), m.group(3)))
    for m in _DAY_RE.finditer(text):
        claim(m, Value("day", m.group(1)) if 1 <= int(m.group(1)) <= 31 else None)
    for m in _MONTH_RE.finditer(text):
        claim(m, Value("month", str(MONTHS[m.group(1)])))
    for m in _NUMBER_ONLY_RE.finditer(text):
        literal = m.group(1)
        if "." not in literal and len(literal) == 4 and 1900 <= int(literal) <= 2100:
            claim(m, Value("year", literal))
        else:
            claim(m, Value("number", literal, _unit(text, m.start(), m.end())))
    return values


def _unit(text: str, start: int, end: int) -> str:
    before = _WORD_RE.findall(text[max(0, start - 20):start])
    if before and before[-1] in _UNIT_BEFORE:
        return _singular(before[-1])
    after = re.match(r"\s*([a-z]+)", text[end:])
    if after and after.group(1) not in _STOPWORDS:
        return _singular(after.group(1))
    return ""


def normalize(text: str) -> str:
    """Folded text, numbers, percentages and amounts canonical, punctuation dropped, spaces collapsed."""
    text = prepare(text)
    # one spelling per value, so "15 por ciento" and "15 %" are the same token, as are "20000 dolares" and "usd 20000"
    text = re.sub(rf"\b({_N})\s*(?:%|por\s*cien(?:to)?\b|porciento\b)", r"\1%", text)
    text = re.sub(rf"\b({_N})\s*(?:de\s+)?(?:usd|dolares|dolar)\b", r"usd \1", text)
    text = re.sub(r"(?<!\d)\.|\.(?!\d)", " ", text)
    text = re.sub(r"[^\w%.]+", " ", text)
    return " ".join(text.split())


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
    implied = {i for v in values for i in _implied(v)}
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
    if value.kind == "number" and value.unit in {_singular(u) for u in _UNIT_BEFORE}:
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
