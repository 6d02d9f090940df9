"""Values stated in Spanish text: numbers, percentages, amounts, dates, days, months and years.

The same value is written many ways in Spanish documents and answers, so texts are compared after a
normalisation (`prepare`, `normalize`) and by the typed values they state (`extract_values`):

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

The exam's judge-free scoring (`amauta.data.answer_match`) and RAG's grounding check
(`amauta.rag.grounding`: every value in an answer must be in a cited passage) both read values this way.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass
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
UNIT_BEFORE = {"formulario", "formularios", "articulo", "articulos", "art", "numero"}
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


def singular(word: str) -> str:
    """A Spanish plural made singular, roughly ("dias" → "dia", "meses" → "mes"): enough to compare units."""
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


def implied_values(value: Value) -> list[Value]:
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
        values.extend(implied_values(value))

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
    if before and before[-1] in UNIT_BEFORE:
        return singular(before[-1])
    after = re.match(r"\s*([a-z]+)", text[end:])
    if after and after.group(1) not in _STOPWORDS:
        return singular(after.group(1))
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
