"""Training and its dataset agree on the system prompt (token lengths were measured with it rendered in)."""

from __future__ import annotations

import pytest

from amauta.core.errors import AmautaError
from amauta.train.config import build_config, fingerprint_fields
from amauta.train.recipe import run
from conftest import write_dataset


def test_a_dataset_prepared_with_another_system_prompt_is_refused(run_config, tmp_path):
    # Prepared before manifests recorded it (SmolLM2's datasets then carried its English default).
    old = write_dataset(tmp_path / "old", n_train=8, n_val=2)
    cfg = build_config(run_config(dataset=str(old), system_prompt="Responde en español.", max_steps=1), {})
    with pytest.raises(AmautaError, match="prepared before Amauta recorded the system prompt") as info:
        run(cfg, progress=False)
    assert "\n" not in str(info.value)
    other = write_dataset(tmp_path / "other", n_train=8, n_val=2, system_prompt="Sé breve.")
    cfg = build_config(run_config(dataset=str(other), max_steps=1), {})  # tiny-llama's: none
    with pytest.raises(AmautaError, match="prepared with the system prompt 'Sé breve.', but this run uses none"):
        run(cfg, progress=False)
    assert not (tmp_path / "run").exists()


def test_the_run_trains_with_its_system_prompt(run_config, tmp_path):
    data = write_dataset(tmp_path / "data", n_train=8, n_val=2, system_prompt="Responde en español.")
    cfg = build_config(run_config(dataset=str(data), system_prompt="Responde en español.", max_steps=1,
                                  checkpoint_every=1, eval_every=1), {})
    out = run(cfg, progress=False)
    assert (out / "adapter" / "adapter_config.json").is_file()
    # Unset, the field leaves the checkpoint fingerprint as it was before it existed.
    assert "system_prompt" not in fingerprint_fields(build_config(run_config(), {}))
    assert fingerprint_fields(cfg)["system_prompt"] == "Responde en español."
