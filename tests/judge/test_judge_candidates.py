"""Candidates: the spec syntax, N cached attempts per prompt on tiny models, series fed turn by turn."""

from __future__ import annotations

import pytest

from amauta.core.errors import AmautaError
from amauta.evaluate.candidate_spec import CandidateSpec, parse_candidates
from amauta.judge.candidates import PromptItem, PromptSet, attempts_for, generate_candidates


def _adapter(tmp_path, name="run"):
    folder = tmp_path / name / "adapter"
    folder.mkdir(parents=True)
    (folder / "adapter_config.json").write_text("{}")
    return str(tmp_path / name)


def test_candidate_syntax_base_adapter_rag_and_strategy(tmp_path):
    run = _adapter(tmp_path)
    specs = parse_candidates(f"base,{run},rag:leyes,{run}+rag:leyes@greedy,gemma-3-270m", "smollm2-135m-instruct")
    assert [(s.model, s.adapter, s.rag_index, s.strategy) for s in specs] == [
        ("smollm2-135m-instruct", None, None, "sampling"),
        ("smollm2-135m-instruct", run, None, "sampling"),
        ("smollm2-135m-instruct", None, "leyes", "sampling"),
        ("smollm2-135m-instruct", run, "leyes", "greedy"),
        ("gemma-3-270m", None, None, "sampling"),
    ]
    assert specs[1].label == run and attempts_for(specs[3], 3) == 1 and attempts_for(specs[0], 3) == 3
    named = parse_candidates(f"ft={run},ft+rag={run}+rag:leyes", "tiny-llama")
    assert [(s.label, s.adapter, s.rag_index) for s in named] == [("ft", run, None), ("ft+rag", run, "leyes")]


@pytest.mark.parametrize("text, message", [
    ("", "--candidates is empty"),
    ("base,base", "listed twice"),
    ("base@greedyy", "did you mean: greedy"),
    ("rag:", "needs an index name"),
    ("./no/such/run", "does not exist"),
    ("base+", "empty part"),
    ("rag:a+rag:b", "more than one rag"),
    ("=base", "write NAME=WHO"),
    ("a=base,a=rag:x", "'a' is listed twice"),
])
def test_bad_candidates_are_one_clear_line(text, message):
    with pytest.raises(AmautaError, match=message):
        parse_candidates(text, "tiny-llama")


def test_folder_that_is_neither_adapter_nor_model_is_refused(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(AmautaError, match="neither a run/adapter folder"):
        parse_candidates(str(tmp_path / "empty"), "tiny-llama")


def _pset(tmp_path) -> PromptSet:
    path = tmp_path / "mini.yaml"
    path.write_text("name: mini\nitems: []\n")
    items = [PromptItem("q1", "basic", ["¿Cuál es la tarifa del IVA?"], ["15 %"]),
             PromptItem("s1", "contextual", ["Me llamo Lucía.", "¿Cómo me llamo?", "Gracias."], [None, None, None])]
    return PromptSet("mini", path, items, system="Responde en español.", sha256="x")


def test_attempts_are_cached_and_series_see_their_own_answers(tmp_path, tiny, monkeypatch):
    import amauta.chat.generate as chat_generate

    seen = []
    real = chat_generate.generate

    def spy(loaded, messages, settings):
        seen.append((messages, settings))
        return real(loaded, messages, settings)

    monkeypatch.setattr(chat_generate, "generate", spy)
    loads = []

    def loader(spec, **kwargs):
        loads.append(spec.model)
        return tiny("llama")

    pset = _pset(tmp_path)
    specs = parse_candidates("base,base@greedy", "tiny-llama")
    answers = generate_candidates(pset, specs, tmp_path, n=2, max_new_tokens=6, loader=loader, show_progress=False)
    # sampling: 2 attempts × 4 turns; greedy: 1 attempt × 4 turns
    assert len(answers) == 8 + 4 and len(seen) == 12
    assert {a.candidate for a in answers} == {"base", "base@greedy"}
    third = [m for m, s in seen if m[-1]["content"] == "Gracias."][0]
    assert third[0] == {"role": "system", "content": "Responde en español."}
    first_answer = next(a for a in answers if a.item == "s1" and a.turn == 0 and a.attempt == 0 and a.candidate == "base")
    assert third[1:5] == [
        {"role": "user", "content": "Me llamo Lucía."}, {"role": "assistant", "content": first_answer.answer},
        {"role": "user", "content": "¿Cómo me llamo?"},
        {"role": "assistant", "content": next(a.answer for a in answers if a.key == ("base", "s1", 1, 0))}]
    seeds = {s.seed for m, s in seen if s.strategy == "sampling"}
    assert len(seeds) == 8  # every sampled answer has its own seed
    assert answers[0].reference == "15 %"
    # Resume: nothing is generated again, no model is loaded.
    seen.clear()
    loads.clear()
    again = generate_candidates(pset, specs, tmp_path, n=2, max_new_tokens=6, loader=loader, show_progress=False)
    assert seen == [] and loads == [] and [a.answer for a in again] == [a.answer for a in answers]
    # Asking for a third attempt generates only the new ones.
    more = generate_candidates(pset, specs[:1], tmp_path, n=3, max_new_tokens=6, loader=loader, show_progress=False)
    assert len(more) == 12 and len(seen) == 4


def test_rag_candidates_build_messages_with_the_rag_answerer(tmp_path, tiny, monkeypatch):
    import sys
    import types

    from amauta.rag.answer import NOT_FOUND

    monkeypatch.setenv("AMAUTA_HOME", str(tmp_path / "home"))
    index = tmp_path / "home" / "indexes" / "leyes"
    index.mkdir(parents=True)
    (index / "manifest.json").write_text('{"stage": "rag.index", "documents": 5}')
    calls = []

    class FakeRag:
        def __init__(self, index, top_k=4):
            self.index, self.top_k = index, top_k

        def build_messages(self, question, history=None, system=None, *, loaded=None, max_new_tokens=512):
            calls.append((self.index, question, history, loaded is not None))
            if "Gracias" in question:
                return [{"role": "system", "content": "x"}, {"role": "user", "content": question}], []
            hit = types.SimpleNamespace(citation=lambda: "examples/docs/iva.md, Art. 2")
            messages = [{"role": "system", "content": "Usa los pasajes."}, *(history or []),
                        {"role": "user", "content": f"Pasajes: IVA 15 %\n\n{question}"}]
            return messages, [hit]

    module = types.ModuleType("amauta.rag.answer")
    module.RagAnswerer, module.NOT_FOUND = FakeRag, NOT_FOUND
    monkeypatch.setitem(sys.modules, "amauta.rag.answer", module)
    pset = _pset(tmp_path)
    specs = [CandidateSpec("rag:leyes", "tiny-llama", None, "leyes", "greedy")]
    answers = generate_candidates(pset, specs, tmp_path, n=3, max_new_tokens=4, loader=lambda s, **k: tiny("llama"),
                                  show_progress=False)
    assert len(answers) == 4 and answers[0].sources == ["examples/docs/iva.md, Art. 2"]
    assert calls[0] == ("leyes", "¿Cuál es la tarifa del IVA?", None, True)
    assert calls[2][2][0] == {"role": "user", "content": "Me llamo Lucía."}  # history carried into RAG turns
    # Nothing retrieved: the answer is the RAG room's "not found" message, as `amauta rag ask` gives.
    assert answers[-1].answer == NOT_FOUND and answers[-1].finish_reason == "not_found"
    # A re-index that changes the manifest makes the RAG answers stale (regenerated); a missing index fails.
    (index / "manifest.json").write_text('{"stage": "rag.index", "documents": 6}')
    calls.clear()
    generate_candidates(pset, specs, tmp_path, n=3, max_new_tokens=4, loader=lambda s, **k: tiny("llama"),
                        show_progress=False)
    assert len(calls) == 4
    with pytest.raises(AmautaError, match="index 'otro' not found.*amauta rag index"):
        generate_candidates(pset, [CandidateSpec("rag:otro", "tiny-llama", None, "otro")], tmp_path,
                            loader=lambda s, **k: tiny("llama"), show_progress=False)


def test_a_killed_generation_resumes_with_only_the_missing_items(tmp_path, tiny, monkeypatch):
    import amauta.chat.generate as chat_generate

    real = chat_generate.generate
    calls = []

    def dies_after_five(loaded, messages, settings):
        if len(calls) == 5:
            raise KeyboardInterrupt  # the user pressed Ctrl+C in the middle of the second series attempt
        calls.append(messages[-1]["content"])
        return real(loaded, messages, settings)

    monkeypatch.setattr(chat_generate, "generate", dies_after_five)
    pset = _pset(tmp_path)
    specs = parse_candidates("base", "tiny-llama")
    with pytest.raises(KeyboardInterrupt):
        generate_candidates(pset, specs, tmp_path, n=2, max_new_tokens=4, loader=lambda s, **k: tiny("llama"),
                            show_progress=False)
    # Items finished before the kill (q1@0, q1@1, s1@0 = 1 + 1 + 3 turns) are on disk; s1@1 is redone whole.
    calls.clear()
    monkeypatch.setattr(chat_generate, "generate", lambda loaded, messages, settings: (
        calls.append(messages[-1]["content"]) or real(loaded, messages, settings)))
    answers = generate_candidates(pset, specs, tmp_path, n=2, max_new_tokens=4, loader=lambda s, **k: tiny("llama"),
                                  show_progress=False)
    assert calls == ["Me llamo Lucía.", "¿Cómo me llamo?", "Gracias."] and len(answers) == 8
