"""`data build-qa` against the fake OpenAI-compatible server: provenance, dedup, cache, resume, failures."""

from __future__ import annotations

import json
import re
import shutil
import typing
from pathlib import Path

import pytest

from amauta.core.errors import AmautaError
from amauta.data.build_qa import BuildQAConfig, run, validate_pairs
from amauta.llm.fake_server import FakeHTTPError, FakeOpenAIServer

REPO = Path(__file__).resolve().parents[2]
DOCS = REPO / "examples" / "docs"


@pytest.fixture(autouse=True)
def _home(tmp_path, monkeypatch):
    monkeypatch.setenv("AMAUTA_HOME", str(tmp_path / "home"))


def where(messages) -> str:
    """'iva.md Art. 2' from the prompt's "Fuente:" line."""
    first_user = next(m["content"] for m in messages if m["role"] == "user")
    match = re.search(r"Fuente: (\S+?)(?:, (Art\. [\w.]+(?: bis)?))?(?: \(|\n)", first_user)
    return f"{match.group(1)} {match.group(2) or 'intro'}"


def good_reply(messages) -> str:
    """Two pairs per chunk; the second one is the same everywhere, so it is a duplicate after the first."""
    pairs = [{"instruction": f"¿Qué establece {where(messages)}?", "input": "", "output": "Lo que dice el texto."},
             {"instruction": "¿Dónde consulto la normativa vigente?", "output": "En www.sri.gob.ec."}]
    return "Aquí tienes los pares:\n```json\n" + json.dumps(pairs, ensure_ascii=False) + "\n```"


def config(tmp_path, url, docs=(DOCS,), model="fake-model", **kw) -> BuildQAConfig:
    return BuildQAConfig(docs=[str(d) for d in docs], out=str(tmp_path / "qa.jsonl"), base_url=url, model=model, **kw)


def read(path) -> list[dict]:
    return [json.loads(line) for line in Path(path).read_text(encoding="utf-8").splitlines()]


def test_pairs_carry_provenance_and_duplicates_are_dropped(tmp_path):
    server = FakeOpenAIServer(good_reply)
    with server as url:
        out = run(config(tmp_path, url, pairs_per_chunk=2))
    rows = read(out)
    chunks = server.chat_requests
    assert chunks >= 25  # every chunk of the sample corpus was asked once
    assert len(rows) == chunks + 1  # one unique pair per chunk, plus the shared question once
    first_prompt = server.requests[0]["messages"]
    assert first_prompt[0]["role"] == "system" and "Ecuador" in first_prompt[1]["content"]
    assert "JSON" in first_prompt[1]["content"] and "2 pares" in first_prompt[1]["content"]
    art5 = next(r for r in rows if r["instruction"] == "¿Qué establece retenciones.pdf Art. 5?")
    assert art5["page"] == 2 and art5["article"] == "Art. 5" and art5["model"] == "fake-model"
    assert art5["source"].endswith("retenciones.pdf") and art5["chunk_text"].startswith("Art. 5.- Retención del IVA")
    assert len(art5["chunk_id"]) == 16 and art5["category"] == "dominio" and art5["input"] == ""
    assert len({r["id"] for r in rows}) == len(rows)
    manifest = json.loads((tmp_path / "qa.manifest.json").read_text())
    assert manifest["summary"]["duplicates_dropped"] == chunks - 1
    assert manifest["summary"]["pairs"] == len(rows) and manifest["model"] == "fake-model"
    assert not (tmp_path / "qa.failures.jsonl").exists()


def test_unchanged_chunks_are_never_asked_twice(tmp_path):
    docs = tmp_path / "docs"
    shutil.copytree(DOCS, docs)
    server = FakeOpenAIServer(good_reply)
    with server as url:
        run(config(tmp_path, url, docs=[docs]))
        first = server.chat_requests
        before = read(tmp_path / "qa.jsonl")
        run(config(tmp_path, url, docs=[docs]))
        assert server.chat_requests == first  # all from the cache
        assert read(tmp_path / "qa.jsonl") == before
        # Edit one article: only its chunk is asked again.
        iva = docs / "iva.md"
        iva.write_text(iva.read_text(encoding="utf-8").replace("USD 115 en total", "USD 115 en total (IVA incluido)"),
                       encoding="utf-8")
        run(config(tmp_path, url, docs=[docs]))
        assert server.chat_requests == first + 1
        assert "Tarifa general" in server.requests[-1]["messages"][-1]["content"]
        # Another model is another cache entry.
        run(config(tmp_path, url, docs=[docs / "rimpe.md"], model="otro-modelo"))
        assert server.chat_requests == first + 1 + 5


def test_a_crashed_run_resumes_where_it_stopped(tmp_path):
    calls = {"n": 0}

    def dies_after_three(messages):
        calls["n"] += 1
        if calls["n"] > 3:
            raise FakeHTTPError(400, "el servidor se cayó")  # not retried: the run stops here
        return good_reply(messages)

    with FakeOpenAIServer(dies_after_three) as url:
        with pytest.raises(AmautaError, match="el servidor se cayó"):
            run(config(tmp_path, url))
    assert not (tmp_path / "qa.jsonl").exists()  # nothing half-written
    cache = tmp_path / "home" / "build-qa" / "cache.jsonl"
    assert len(cache.read_text().splitlines()) == 3
    # The server comes back at the same address (the endpoint is part of the cache key).
    server = FakeOpenAIServer(good_reply, port=int(url.rsplit(":", 1)[1].split("/")[0]))
    with server as url:
        run(config(tmp_path, url))
    total = len(read(tmp_path / "qa.jsonl")) - 1
    assert server.chat_requests == total - 3


def test_a_line_torn_by_a_kill_costs_one_chunk_not_the_cache(tmp_path):
    server = FakeOpenAIServer(good_reply)
    with server as url:
        run(config(tmp_path, url, docs=[DOCS / "rimpe.md"]))
        cache = tmp_path / "home" / "build-qa" / "cache.jsonl"
        lines = cache.read_text(encoding="utf-8").splitlines(keepends=True)
        cache.write_text("".join(lines[:-1]) + lines[-1][:40], encoding="utf-8")  # killed mid-write
        run(config(tmp_path, url, docs=[DOCS / "rimpe.md"]))
        assert server.chat_requests == 5 + 1
        run(config(tmp_path, url, docs=[DOCS / "rimpe.md"]))  # the appended line did not glue onto the torn one
        assert server.chat_requests == 6


def test_bad_json_is_retried_then_recorded_and_asked_again_next_run(tmp_path):
    def reply(messages):
        if "Art. 2" in where(messages) and "rimpe" in where(messages):
            return "Lo siento, no puedo generar preguntas sobre este tema."
        if messages[-1]["role"] == "user" and "no se pudo usar" in messages[-1]["content"]:
            return good_reply(messages[:2])  # a corrective message fixes the others
        if "Art. 1" in where(messages):
            return '[{"instruction": "¿Qué es?", "output": "Algo."},'  # cut short: repaired, not retried
        return "Claro, con gusto."  # prose: retried once with a corrective message

    server = FakeOpenAIServer(reply)
    with server as url:
        run(config(tmp_path, url, docs=[DOCS / "rimpe.md"], retries=2))
        asked = server.chat_requests
        failures = read(tmp_path / "qa.failures.jsonl")
        assert len(failures) == 1 and failures[0]["article"] == "Art. 2"
        assert len(failures[0]["raw_replies"]) == 3 and failures[0]["error"].startswith("3 tries failed")
        rows = read(tmp_path / "qa.jsonl")
        assert {r["article"] for r in rows} == {None, "Art. 1", "Art. 3", "Art. 4"}
        # 5 chunks: Art. 1 answered at once, Art. 2 three times, the other three twice each.
        assert asked == 1 + 3 + 3 * 2
        run(config(tmp_path, url, docs=[DOCS / "rimpe.md"], retries=2))
        assert server.chat_requests == asked + 3  # only the failed chunk again


def test_validate_pairs_normalizes_shapes():
    assert validate_pairs({"pares": [{"instruction": " q ", "output": "r", "input": None}]}, 3) == [
        {"instruction": "q", "input": "", "output": "r"}]
    assert validate_pairs({"instruction": "q", "output": "r"}, 3) == [{"instruction": "q", "input": "", "output": "r"}]
    assert len(validate_pairs([{"instruction": f"q{i}", "output": "r"} for i in range(5)], 2)) == 2
    with pytest.raises(ValueError, match="instruction"):
        validate_pairs([{"question": "q", "answer": "r"}, "texto", {"instruction": "", "output": "r"}], 3)
    with pytest.raises(ValueError, match="lista"):
        validate_pairs("texto", 3)


def test_config_errors_and_pipeline_entry_point(tmp_path):
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match="overlap"):
        BuildQAConfig(docs=["x"], max_chars=400, overlap=300)
    with pytest.raises(ValidationError):
        BuildQAConfig(docs=[])
    assert typing.get_type_hints(run)["config"] is BuildQAConfig
    with FakeOpenAIServer(good_reply) as url:
        with pytest.raises(AmautaError, match=r"qa\.json: the output must be a \.jsonl file"):
            run(BuildQAConfig(docs=[str(DOCS)], out=str(tmp_path / "qa.json"), base_url=url, model="m"))
        with pytest.raises(AmautaError, match="no such file or folder"):
            run(config(tmp_path, url, docs=[tmp_path / "nada"]))


def test_api_key_never_reaches_the_files(tmp_path):
    with FakeOpenAIServer(good_reply, api_key="sk-secreta") as url:
        run(config(tmp_path, url, docs=[DOCS / "rimpe.md"], api_key="sk-secreta"))
    for path in list(tmp_path.rglob("*")):
        if path.is_file():
            assert "sk-secreta" not in path.read_text(encoding="utf-8", errors="replace"), path


def test_workers_keep_the_output_order(tmp_path):
    with FakeOpenAIServer(good_reply, delay=0.02) as url:
        run(config(tmp_path, url, workers=1, cache=str(tmp_path / "c1.jsonl")))
        one = read(tmp_path / "qa.jsonl")
        run(config(tmp_path, url, workers=6, cache=str(tmp_path / "c2.jsonl")))
        many = read(tmp_path / "qa.jsonl")
    assert one == many


def test_two_servers_reporting_the_same_model_name_are_two_cache_entries(tmp_path):
    """Issue 10 item 12: the cache was keyed by the model's name, so a second server got the first one's pairs."""
    def pairs_from(server: str):
        return lambda messages: json.dumps([{"instruction": f"¿Qué dice {where(messages)} según {server}?",
                                             "output": f"Lo que responde {server}."}], ensure_ascii=False)

    first, second = FakeOpenAIServer(pairs_from("A")), FakeOpenAIServer(pairs_from("B"))
    with first as url_a, second as url_b:
        run(config(tmp_path, url_a, docs=[DOCS / "rimpe.md"], model=None))  # both list "fake-model"
        assert {r["output"] for r in read(tmp_path / "qa.jsonl")} == {"Lo que responde A."}
        run(config(tmp_path, url_b, docs=[DOCS / "rimpe.md"], model=None))
        assert second.chat_requests == first.chat_requests == 5
        rows = read(tmp_path / "qa.jsonl")
        assert {r["output"] for r in rows} == {"Lo que responde B."} and rows[0]["model"] == "fake-model"
        assert json.loads((tmp_path / "qa.manifest.json").read_text())["endpoint"] == url_b
        run(config(tmp_path, url_a, docs=[DOCS / "rimpe.md"], model=None))  # each server keeps its own entries
        assert first.chat_requests == 5 and {r["output"] for r in read(tmp_path / "qa.jsonl")} == {"Lo que responde A."}


def test_local_models_are_keyed_by_their_location_not_their_name(tmp_path):
    from types import SimpleNamespace

    from amauta.data.build_qa import cache_key, model_identity
    from amauta.llm.client import LocalLLM

    def local(source, adapter=None):
        loaded = SimpleNamespace(profile=SimpleNamespace(name="mi-modelo"), source=source,
                                 extra={"adapter": adapter} if adapter else {})
        return LocalLLM(loaded)

    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    cfg = BuildQAConfig(docs=["x"])
    messages = [{"role": "user", "content": "hola"}]
    keys = {cache_key(messages, llm, cfg) for llm in (local(str(tmp_path / "a")), local(str(tmp_path / "b")),
                                                      local(str(tmp_path / "a"), adapter=str(tmp_path / "b")))}
    assert len(keys) == 3  # same profile name, three different models
    assert model_identity(local(str(tmp_path / "a")))["local"] == str((tmp_path / "a").resolve())
    assert cache_key(messages, local(str(tmp_path / "a")), cfg) != cache_key(
        messages, local(str(tmp_path / "a")), BuildQAConfig(docs=["x"], temperature=0.7))
