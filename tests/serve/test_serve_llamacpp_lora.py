"""LoRA adapters on the llama.cpp backend: converted once and cached, applied per request over one copy of the
base, and refused in one line (before llama.cpp loads anything) when they belong to another base."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from amauta.core.errors import AmautaError

llama_cpp = pytest.importorskip("llama_cpp", reason="llama-cpp-python (the llamacpp extra) is not installed")

MESSAGES = [{"role": "user", "content": "¿Qué es el IVA?"}]
TEXT = "El impuesto al valor agregado se declara cada mes."


def write_tiny_gguf(folder: Path) -> Path:
    """tiny-llama as an F32 GGUF that records its profile (as `amauta export` writes it): model id tiny-llama."""
    from amauta.models.load import load_model, model_info
    from amauta.train.gguf_export import write_gguf

    loaded = load_model("tiny-llama")
    return write_gguf(loaded.model, loaded.tokenizer, folder / "tiny-llama.gguf", float32=True,
                      info=model_info(loaded.profile, loaded.tokenizer))


def write_tiny_run(folder: Path, profile: str | None = "tiny-llama", seed: int = 0) -> Path:
    """A run folder as `amauta train` leaves it for the server: adapter/ (a LoRA on every linear layer with
    random B matrices, so it visibly changes the answers) and a manifest.json naming the base profile."""
    import torch
    from peft import LoraConfig, get_peft_model

    from amauta.models.load import load_model

    model = load_model("tiny-llama").model
    torch.manual_seed(seed)  # after loading: the tiny model seeds torch itself
    peft = get_peft_model(model, LoraConfig(r=4, lora_alpha=16, target_modules="all-linear", init_lora_weights=False))
    peft.save_pretrained(folder / "adapter")
    if profile is not None:
        (folder / "manifest.json").write_text(json.dumps({"stage": "train", "profile": profile}))
    return folder


@pytest.fixture(scope="module")
def tiny_gguf(tmp_path_factory) -> Path:
    return write_tiny_gguf(tmp_path_factory.mktemp("gguf"))


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory) -> Path:
    return write_tiny_run(tmp_path_factory.mktemp("runs") / "sri")


@pytest.fixture()
def home(tmp_path, monkeypatch) -> Path:
    """A fresh Amauta cache for this test."""
    monkeypatch.setenv("AMAUTA_HOME", str(tmp_path / "home"))
    return tmp_path / "home"


@pytest.fixture()
def nothing_loads(monkeypatch):
    """Fail the test if llama.cpp is asked to load a model or an adapter."""
    def refuse(*args, **kwargs):
        raise AssertionError("llama.cpp was asked to load something")

    monkeypatch.setattr(llama_cpp, "Llama", refuse)
    monkeypatch.setattr(llama_cpp, "llama_adapter_lora_init", refuse)


def _tree(folder: Path) -> dict[str, int]:
    return {str(p.relative_to(folder)): p.stat().st_mtime_ns for p in sorted(folder.rglob("*"))}


def test_adapter_is_converted_once_into_the_cache_and_reused(home, tiny_gguf, tiny_run, tmp_path, monkeypatch):
    from amauta.serve import gguf_lora
    from amauta.serve.gguf_lora import prepare_adapter, read_base

    run_before = _tree(tiny_run)
    base = read_base(tiny_gguf, "tiny-llama", "tiny-llama")
    first = prepare_adapter(tiny_run, base)
    assert first.parent == home / "gguf-lora" and first.suffix == ".gguf"
    stamp = first.stat().st_mtime_ns

    def converts_again(*args, **kwargs):
        raise AssertionError("converted a second time")

    monkeypatch.setattr("amauta.train.gguf_export.write_gguf_lora_for_gguf", converts_again)
    assert prepare_adapter(tiny_run / "adapter", base) == first and first.stat().st_mtime_ns == stamp
    assert [p.name for p in (home / "gguf-lora").iterdir()] == [first.name]  # no temporary file left behind
    assert _tree(tiny_run) == run_before  # the run folder is read, never written

    # Other adapter bytes are another cache entry (converted, not mistaken for the first).
    other = write_tiny_run(tmp_path / "otro", seed=1)
    with pytest.raises(AssertionError, match="converted a second time"):
        prepare_adapter(other, base)
    assert gguf_lora.cache_key(other / "adapter", base) != first.stem


def test_llamacpp_serves_adapters_as_their_own_model_ids(home, serve, tiny_gguf, tiny_run, tmp_path):
    from openai import OpenAI

    from amauta.serve.backends import LlamaCppBackend
    from amauta.serve.gguf_lora import read_base
    from amauta.train.gguf_export import write_gguf_lora_for_gguf

    lora_file = write_gguf_lora_for_gguf(read_base(tiny_gguf, "tiny-llama").metadata, tiny_run / "adapter",
                                         tmp_path / "sri.gguf")
    backend = LlamaCppBackend([str(tiny_gguf)], adapters={"sri": tiny_run, "sri-gguf": lora_file}, context=256,
                              threads=1)
    url = serve(backend)
    client = OpenAI(base_url=url + "/v1", api_key="-", max_retries=0)
    models = {m.id: m for m in client.models.list()}
    assert list(models) == ["tiny-llama", "sri", "sri-gguf"]
    assert models["sri"].parent == "tiny-llama" and models["sri"].backend == "llamacpp"
    assert backend.worker_key("sri") == backend.worker_key("tiny-llama") == "tiny-llama"

    def ask(model):
        reply = client.chat.completions.create(model=model, messages=MESSAGES, max_tokens=8, temperature=0)
        return reply.choices[0].message.content

    # Interleaved: each request applies its own adapter (or none) on the shared context.
    answers = [ask(m) for m in ["sri", "tiny-llama", "sri-gguf", "tiny-llama", "sri"]]
    assert answers[0] != answers[1]  # the adapter changes the answer
    assert answers[0] == answers[2] == answers[4] and answers[1] == answers[3]

    # The same as llama.cpp's own way (a model loaded with lora_path), with its prompt rendering.
    entry = backend.entries["tiny-llama"]
    ids = entry.llama.tokenize(entry.render(MESSAGES).encode(), add_bos=True, special=True)
    own = llama_cpp.Llama(str(tiny_gguf), lora_path=str(lora_file), n_ctx=256, n_threads=1, verbose=False)
    try:
        raw = own.create_completion(ids, max_tokens=8, temperature=0.0, stop=entry.stops or None)
    finally:
        own.close()
    assert answers[0] == raw["choices"][0]["text"]


def test_adapter_changes_llama_cpp_logits_as_peft_does(home, tiny_gguf, tiny_run):
    """Not a no-op: with the adapter active llama.cpp gives PEFT's logits (base+adapter), far from the base's."""
    import numpy as np
    import torch

    from amauta.models.load import load_model
    from amauta.serve.backends import LlamaCppBackend

    backend = LlamaCppBackend([str(tiny_gguf)], adapters={"sri": tiny_run}, context=256, threads=1)
    entry = backend.entries["tiny-llama"]
    loaded = load_model("tiny-llama", adapter=tiny_run)
    ids = loaded.tokenizer(TEXT, add_special_tokens=False).input_ids
    with torch.no_grad():
        expected = loaded.model(torch.tensor([ids])).logits[0, -1]

    def last_logits(adapter):
        entry.activate(adapter)
        entry.llama.eval(ids)  # the backend's model keeps the last position's logits only
        row = llama_cpp.llama_get_logits_ith(entry.llama.ctx, -1)
        return torch.from_numpy(np.ctypeslib.as_array(row, shape=(entry.llama.n_vocab(),)).copy())

    adapted, plain = last_logits("sri"), last_logits(None)
    assert (plain - expected).abs().max() > 5e-2
    assert torch.allclose(adapted, expected, atol=5e-3)
    assert torch.allclose(last_logits("sri"), adapted, atol=1e-5)  # switching back gives the same again


def test_adapter_of_another_base_is_refused_before_anything_loads(home, tiny_run, nothing_loads, tmp_path):
    from amauta.serve.backends import LlamaCppBackend

    with pytest.raises(AmautaError) as refused:
        LlamaCppBackend(["smollm2-135m-instruct"], adapters={"sri": tiny_run})
    message = str(refused.value)
    assert "\n" not in message and "needs the base tiny-llama" in message and "smollm2-135m-instruct" in message
    assert "'blk.0.attn_k.weight'" in message and "the GGUF's tensor is 192×576" in message
    assert not (home / "gguf-lora").exists()  # nothing converted either

    # A bare adapter folder (no run manifest, no recorded base) is refused by its shapes alone.
    bare = write_tiny_run(tmp_path / "suelto", profile=None)
    with pytest.raises(AmautaError, match=r"does not fit smollm2-135m-instruct \(llama, 30 layers.*trained on"):
        LlamaCppBackend(["smollm2-135m-instruct"], adapters={"x": bare / "adapter"})


def test_same_shapes_but_another_recorded_base_is_refused(home, tiny_gguf, tmp_path, nothing_loads):
    from amauta.serve.backends import LlamaCppBackend

    run = write_tiny_run(tmp_path / "sri", profile="tiny-mistral")
    with pytest.raises(AmautaError, match=r"needs the base tiny-mistral, not tiny-llama .*shapes match.*"
                                          r"serve it on tiny-mistral"):
        LlamaCppBackend([str(tiny_gguf)], adapters={"sri": run})


def test_gguf_lora_that_does_not_match_the_gguf_is_refused(home, tiny_gguf, tiny_run, tmp_path, nothing_loads):
    from peft import LoraConfig, get_peft_model

    from amauta.models.tiny import tiny_model
    from amauta.serve.backends import LlamaCppBackend
    from amauta.serve.gguf_lora import read_base
    from amauta.train.gguf_export import write_gguf_lora, write_gguf_lora_for_gguf

    tiny_lora = write_gguf_lora_for_gguf(read_base(tiny_gguf, "tiny-llama").metadata, tiny_run / "adapter",
                                         tmp_path / "tiny-lora.gguf")
    with pytest.raises(AmautaError, match=r"tiny-lora.gguf: this adapter does not fit smollm2-135m-instruct .*"
                                          r"the GGUF's tensor is 192×576"):
        LlamaCppBackend(["smollm2-135m-instruct"], adapters={"x": tiny_lora})

    falcon = tiny_model("falcon")
    get_peft_model(falcon, LoraConfig(r=2, target_modules=["query_key_value"])).save_pretrained(tmp_path / "falcon")
    falcon_lora = write_gguf_lora(tiny_model("falcon"), tmp_path / "falcon", tmp_path / "falcon-lora.gguf")
    with pytest.raises(AmautaError, match="LoRA for llama.cpp architecture 'falcon', the GGUF is 'llama'"):
        LlamaCppBackend([str(tiny_gguf)], adapters={"x": falcon_lora})

    with pytest.raises(AmautaError, match="not a GGUF LoRA adapter"):
        LlamaCppBackend([str(tiny_gguf)], adapters={"x": tiny_gguf})  # a whole model, not an adapter
    with pytest.raises(AmautaError, match="GGUF LoRA file not found"):
        LlamaCppBackend([str(tiny_gguf)], adapters={"x": tmp_path / "nada.gguf"})
    with pytest.raises(AmautaError, match="already a model id"):
        LlamaCppBackend([str(tiny_gguf)], adapters={"tiny-llama": tiny_run})
