"""Cleaning rules (each counted per source) and hashed mixing/splitting."""

from __future__ import annotations

from amauta.data.clean import CleanConfig, Cleaner, normalize_text
from amauta.data.mix import SplitConfig, mix, split
from amauta.data.records import Record


def rec(user, reply, source="s", category=""):
    return Record([{"role": "user", "content": user}, {"role": "assistant", "content": reply}], source, category)


LONG_ES = ("La declaración del impuesto a la renta se presenta una vez al año y permite calcular cuánto debe pagar "
           "cada persona según sus ingresos y sus gastos deducibles.")
LONG_EN = ("The income tax return is filed once a year and it lets each person work out how much they owe "
           "according to their income and deductible expenses.")


def test_normalize_text():
    raw = "  Cafe\u0301\u200b  con\t\tleche\r\n\r\n\r\n\r\nY pan.  "
    assert normalize_text(raw) == "Café con leche\n\nY pan."


def test_each_rule_counts_what_it_removes():
    records = [
        rec("¿Qué es el IVA?", "Un impuesto al consumo que se paga en cada compra."),
        rec("¿Qué es el IVA?", "un impuesto al consumo que se paga en cada compra. "),    # exact duplicate (case, spaces)
        rec("Di algo.", ""),                                                            # empty
        rec("Responde con una letra.", "B"),                                             # too short
        rec("Explica la renta.", LONG_EN, source="t"),                                   # language
        rec("Explica la renta.", LONG_ES, source="t"),
        rec("Explica la renta.", LONG_ES.replace("una vez", "solo una vez"), source="t"),  # near duplicate
        rec("Cuenta mucho.", "palabra " * 400),                                          # too long
    ]
    cleaner = Cleaner(CleanConfig(max_tokens=300, near_dedup_threshold=0.7),
                      token_lengths=lambda rs: [len(r.assistant_text().split()) + len(r.user_text().split()) for r in rs])
    kept = cleaner.run(records)
    assert [r.assistant_text()[:12] for r in kept] == ["Un impuesto ", LONG_ES[:12]]
    assert cleaner.report.by_rule() == {"empty": 1, "too_short": 1, "exact_duplicate": 1, "too_long": 1, "language": 1,
                                        "near_duplicate": 1}
    assert cleaner.report.removed[("t", "language")] == 1 and cleaner.report.removed[("s", "empty")] == 1
    assert set(cleaner.report.seconds) >= {"normalize", "language", "near_duplicate"}


def test_questions_on_one_passage_are_not_near_duplicates():
    passage = LONG_ES * 3
    a = rec(f"{passage}\n\nPregunta: ¿Cuándo se presenta?", "una vez al año")
    b = rec(f"{passage}\n\nPregunta: ¿Qué permite calcular?", "cuánto debe pagar cada persona")
    kept = Cleaner(CleanConfig(language=None, max_tokens=None)).run([a, b])
    assert len(kept) == 2


def test_split_is_deterministic_and_stable_when_data_grows():
    records = [rec(f"Pregunta número {i}", f"Respuesta {i}") for i in range(400)]
    cfg = SplitConfig(val_fraction=0.1, seed=3)
    train, val = split(records, cfg)
    assert 20 <= len(val) <= 60 and len(train) + len(val) == 400
    assert [r.id for r in split(records, cfg)[1]] == [r.id for r in val]
    more = records + [rec(f"Otra {i}", "x y") for i in range(100)]
    val_ids = {r.id for r in split(more, cfg)[1]}
    assert {r.id for r in val} <= val_ids  # adding records never moves old ones across the split
    assert {r.id for r in split(records, SplitConfig(val_fraction=0.1, seed=4))[1]} != {r.id for r in val}


def test_mix_caps_weights_and_interleaves():
    big = [rec(f"General {i}", "respuesta general", source="general") for i in range(300)]
    small = [rec(f"Dominio {i}", "respuesta de dominio", source="domain") for i in range(40)]
    train, val, counts = mix({"general": big, "domain": small}, {"general": 0.5, "domain": 2.5},
                             {"general": 100, "domain": None}, SplitConfig(val_fraction=0.1))
    assert counts["general"]["selected"] == 100
    assert counts["domain"]["selected"] == 40 and counts["domain"]["train"] >= 2 * (40 - counts["domain"]["val"])
    assert len({r.id for r in train + val}) == len(train) + len(val)  # repeats get their own ids
    assert not {r.id.split("~")[0] for r in val} & {r.id.split("~")[0] for r in train}  # no leak into val
    first_half = [r.source for r in train[: len(train) // 2]]
    assert "general" in first_half and "domain" in first_half
    again = mix({"general": big, "domain": small}, {"general": 0.5, "domain": 2.5}, {"general": 100, "domain": None},
                SplitConfig(val_fraction=0.1))
    assert [r.id for r in again[0]] == [r.id for r in train]
