"""Labels only on the assistant's replies, shown token by token on a known conversation; packing and padding."""

from __future__ import annotations

import pytest

from amauta.core.errors import AmautaError
from amauta.data.tokenize import (
    IGNORE,
    pack_documents,
    pack_examples,
    pad_batch,
    tokenize_messages,
    tokenize_text,
)
from amauta.models.registry import get_profile
from amauta.models.tiny import tiny_tokenizer

CONVERSATION = [
    {"role": "system", "content": "Eres un asesor tributario."},
    {"role": "user", "content": "¿Cuál es la tarifa del IVA?"},
    {"role": "assistant", "content": "La tarifa general es 15 %."},
    {"role": "user", "content": "¿Y quién lo paga?"},
    {"role": "assistant", "content": "Lo paga el consumidor final."},
]

# What the labelled tokens must decode to, per template: each reply plus the template's end of turn.
EXPECTED = {
    "tiny-llama": " La tarifa general es 15 %. </s> Lo paga el consumidor final. </s>",
    "tiny-mistral": "La tarifa general es 15 %.</s>Lo paga el consumidor final.</s>",
    "tiny-falcon": " La tarifa general es 15 %.\n Lo paga el consumidor final.\n</s>",
    "tiny-gemma3": "La tarifa general es 15 %.<end_of_turn>\nLo paga el consumidor final.<end_of_turn>\n",
}


def show_mask(tokenizer, out) -> str:
    """One line per token: label kept (✓) or masked (·), and the token's text."""
    lines = []
    for tid, label in zip(out["input_ids"], out["labels"], strict=True):
        lines.append(f"{'✓' if label != IGNORE else '·'} {tokenizer.decode([tid])!r}")
    return "\n".join(lines)


def labelled_text(tokenizer, out) -> str:
    return tokenizer.decode([t for t, lab in zip(out["input_ids"], out["labels"], strict=True) if lab != IGNORE])


@pytest.mark.parametrize("profile_name", list(EXPECTED))
def test_mask_covers_replies_only_on_tiny_tokenizer(profile_name):
    tokenizer, profile = tiny_tokenizer(), get_profile(profile_name)
    out = tokenize_messages(tokenizer, profile, CONVERSATION)
    print(f"\n{profile_name} ({profile.template}):\n{show_mask(tokenizer, out)}")
    assert labelled_text(tokenizer, out) == EXPECTED[profile_name]
    assert len(out["input_ids"]) == len(out["labels"]) == len(out["attention_mask"])
    assert all(lab in (IGNORE, tid) for tid, lab in zip(out["input_ids"], out["labels"], strict=True))
    prompt = tokenizer.decode([t for t, lab in zip(out["input_ids"], out["labels"], strict=True) if lab == IGNORE])
    assert "¿Cuál es la tarifa del IVA?" in prompt and "asesor tributario" in prompt


def test_mask_exact_tokens_on_llama2_template():
    tokenizer, profile = tiny_tokenizer(), get_profile("tiny-llama")
    out = tokenize_messages(tokenizer, profile, CONVERSATION[1:3])
    pieces = [(tokenizer.decode([t]), lab != IGNORE) for t, lab in zip(out["input_ids"], out["labels"], strict=True)]
    masked_until = next(i for i, (_, kept) in enumerate(pieces) if kept)
    assert "".join(p for p, _ in pieces[:masked_until]).endswith("[/INST]")
    assert all(kept for _, kept in pieces[masked_until:])  # everything after [/INST] is the reply and </s>
    assert pieces[-1] == ("</s>", True)


def test_max_length_and_slow_tokenizer_path():
    tokenizer, profile = tiny_tokenizer(), get_profile("tiny-mistral")
    full = tokenize_messages(tokenizer, profile, CONVERSATION)
    cut = tokenize_messages(tokenizer, profile, CONVERSATION, max_length=10)
    assert cut["input_ids"] == full["input_ids"][:10] and cut["labels"] == full["labels"][:10]

    class Slow:  # a tokenizer without offsets (slow tokenizers): pieces are tokenized apart
        is_fast = False
        eos_token = tokenizer.eos_token
        chat_template = None

        def encode(self, text, add_special_tokens=False):
            return tokenizer.encode(text, add_special_tokens=add_special_tokens)

        def get_vocab(self):
            return tokenizer.get_vocab()

    slow = tokenize_messages(Slow(), profile, CONVERSATION)
    assert labelled_text(tokenizer, slow) == EXPECTED["tiny-mistral"]


def test_pack_examples_restarts_positions_and_masks_boundaries():
    tokenizer, profile = tiny_tokenizer(), get_profile("tiny-llama")
    examples = [tokenize_messages(tokenizer, profile, [{"role": "user", "content": f"Pregunta {i}"},
                                                       {"role": "assistant", "content": f"Respuesta {i}"}]) for i in range(6)]
    n = len(examples[0]["input_ids"])
    rows = pack_examples(examples, seq_len=2 * n + 1)
    assert [r["seq_lengths"] for r in rows] == [[n, n]] * 3
    row = rows[0]
    assert row["position_ids"] == list(range(n)) * 2 and row["input_ids"] == examples[0]["input_ids"] + examples[1]["input_ids"]
    assert row["labels"][0] == IGNORE and row["labels"][n] == IGNORE
    assert row["labels"][1:n] == examples[0]["labels"][1:]
    assert len(row["attention_mask"]) == 2 * n
    unlabelled = {"input_ids": [5, 6, 7], "labels": [IGNORE] * 3, "attention_mask": [1] * 3}
    assert pack_examples([unlabelled], seq_len=8) == []
    assert pack_examples([examples[0]], seq_len=4) == []  # cut before the reply: nothing to learn
    assert pack_examples([examples[0]], seq_len=4, drop_unlabelled=False)[0]["seq_lengths"] == [4]


def test_pad_batch():
    batch = pad_batch([{"input_ids": [1, 2, 3], "labels": [IGNORE, 2, 3]}, {"input_ids": [4], "labels": [4]}],
                      pad_token_id=0, pad_to_multiple_of=4)
    assert batch["input_ids"] == [[1, 2, 3, 0], [4, 0, 0, 0]]
    assert batch["labels"] == [[IGNORE, 2, 3, IGNORE], [4, IGNORE, IGNORE, IGNORE]]
    assert batch["attention_mask"] == [[1, 1, 1, 0], [1, 0, 0, 0]]


@pytest.mark.integration
def test_mask_on_smollm2_chat_template():
    from amauta.models.load import load_tokenizer

    tokenizer, profile = load_tokenizer("smollm2-135m-instruct")
    out = tokenize_messages(tokenizer, profile, CONVERSATION)
    print(f"\nsmollm2-135m-instruct (tokenizer chat_template):\n{show_mask(tokenizer, out)}")
    assert labelled_text(tokenizer, out) == "La tarifa general es 15 %.<|im_end|>\nLo paga el consumidor final.<|im_end|>\n"
    text = tokenizer.decode(out["input_ids"])
    assert text.startswith("<|im_start|>system\nEres un asesor tributario.<|im_end|>")


def test_tokenize_text_has_no_template_and_one_eos():
    """A completion record is raw text: the tokenizer's own tokens, no template, one EOS at the end."""
    tokenizer = tiny_tokenizer()
    ids = tokenize_text(tokenizer, "Hola mundo")
    assert ids[-1] == tokenizer.eos_token_id and ids[-2] != tokenizer.eos_token_id
    assert tokenizer.decode(ids, skip_special_tokens=True).strip() == "Hola mundo"  # no [INST] or other template text
    assert tokenize_text(tokenizer, "Hola mundo" + tokenizer.eos_token)[-2:] != [tokenizer.eos_token_id] * 2


def test_pack_documents_lays_documents_end_to_end_and_drops_nothing():
    """Completion records end to end in blocks, every token labelled, nothing cut away."""
    documents = [[5, 6, 7, 2], [8, 9, 2], [10, 11, 12, 13, 14, 2], [15, 2]]
    blocks = pack_documents(documents, 4)
    stream = [t for d in documents for t in d]
    assert [b["input_ids"] for b in blocks] == [stream[0:4], stream[4:8], stream[8:12], stream[12:15]]
    assert all(b["labels"] == b["input_ids"] for b in blocks)  # loss on every token
    assert pack_documents([[1, 2, 3, 4, 5]], 4) == [{"input_ids": [1, 2, 3, 4], "labels": [1, 2, 3, 4]}]  # a 1-token tail teaches nothing
    with pytest.raises(AmautaError, match="block_size"):
        pack_documents(documents, 1)
