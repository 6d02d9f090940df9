"""The shipped prompt sets follow the thesis's design, and a bad set is refused with file, line and fix."""

from __future__ import annotations

from collections import Counter

import pytest

from amauta.core.errors import AmautaError
from amauta.judge.candidates import builtin_sets, load_prompt_set


def test_general_es_matches_the_thesis_design():
    pset = load_prompt_set("general-es")
    counts = Counter(item.category for item in pset.items)
    assert counts == {"basic": 10, "complex": 10, "creative": 5, "contextual": 5}
    series = [item for item in pset.items if item.category == "contextual"]
    assert all(len(item.turns) == 5 for item in series)
    assert all(len(item.turns) == 1 for item in pset.items if item.category != "contextual")
    assert pset.units() == 25 + 25
    assert pset.system and "español" in pset.system


def test_law_ec_has_15_basic_15_complex_each_with_a_reference():
    pset = load_prompt_set("law-ec")
    assert Counter(item.category for item in pset.items) == {"basic": 15, "complex": 15}
    assert all(item.references[0] and len(item.references[0]) > 10 for item in pset.items)
    text = " ".join(item.references[0] for item in pset.items)
    # Facts the examples/docs law guides state the same way.
    for fact in ("15 %", "20.000", "300.000", "noveno dígito", "formulario 103", "30 días", "13 dígitos"):
        assert fact in text, fact


def test_builtin_names_and_limit():
    assert {"general-es", "law-ec"} <= set(builtin_sets())
    small = load_prompt_set("general-es", limit=1)
    assert Counter(item.category for item in small.items) == {"basic": 1, "complex": 1, "creative": 1, "contextual": 1}


def _write(tmp_path, text):
    path = tmp_path / "set.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def test_empty_prompt_set_is_one_clear_line(tmp_path):
    path = _write(tmp_path, "name: vacio\nitems: []\n")
    with pytest.raises(AmautaError, match=r"set\.yaml: the prompt set is empty"):
        load_prompt_set(path)


@pytest.mark.parametrize("body, message", [
    ("  - id: a\n    category: basic\n    prompt: hola\n  - id: a\n    category: basic\n    prompt: otra\n",
     r"set\.yaml:6: duplicate id 'a'"),
    ("  - id: a\n    category: basic\n", r"set\.yaml:3: item 'a' needs exactly one of 'prompt'"),
    ("  - id: a\n    category: basic\n    promt: hola\n", r"set\.yaml:3: unknown key 'promt' \(did you mean: prompt"),
    ("  - id: a\n    category: basic\n    prompt: '  '\n", r"item 'a' has an empty prompt"),
    ("  - id: s\n    category: contextual\n    turns: [uno, '']\n", r"item 's': turn 2 is empty"),
    ("  - id: a\n    prompt: hola\n", r"item 'a' has no 'category'"),
])
def test_bad_items_name_file_line_and_problem(tmp_path, body, message):
    path = _write(tmp_path, "name: malo\nitems:\n" + body)
    with pytest.raises(AmautaError, match=message):
        load_prompt_set(path)


def test_unknown_set_name_suggests(tmp_path):
    with pytest.raises(AmautaError, match=r"did you mean: law-ec"):
        load_prompt_set("law-es")


def test_invalid_yaml_names_the_line(tmp_path):
    path = _write(tmp_path, "name: x\nitems:\n  - id: [unclosed\n")
    with pytest.raises(AmautaError, match=r"set\.yaml:\d+: invalid YAML"):
        load_prompt_set(path)
