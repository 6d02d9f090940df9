"""`amauta train --method dpo|orpo|kto` on a tiny random model: TRL's losses in Amauta's run folder, the
same kill -9 resume guarantee as SFT, and bad preference folders refused before any model is loaded."""

from __future__ import annotations

import json
import math
import subprocess
from pathlib import Path

import pytest
from train_subprocess import KILLER, run_train

from amauta.core.errors import AmautaError
from amauta.data.preferences import Preference, Unpaired, write_preference_dir

REPO = Path(__file__).resolve().parents[2]

# Our own Spanish pairs: a right answer against a wrong or careless one.
_PAIRS = [
    ("¿Cuál es la capital de Ecuador?", "Quito.", "Guayaquil."),
    ("¿Qué institución cobra los impuestos en Ecuador?", "El Servicio de Rentas Internas.", "El banco del barrio."),
    ("¿Cuántos meses tiene un año?", "Doce meses.", "Diez meses, más o menos."),
    ("¿Qué significa RUC?", "Registro Único de Contribuyentes.", "No sé."),
    ("Saluda con cortesía.", "Buenos días, ¿en qué puedo ayudarle?", "qué quieres"),
    ("¿En qué moneda se paga en Ecuador?", "En dólares estadounidenses.", "En pesos."),
]


def pairs(n: int) -> list[Preference]:
    out = []
    for i in range(n):
        q, good, bad = _PAIRS[i % len(_PAIRS)]
        if i >= len(_PAIRS):
            x, y = i % 7 + 1, i % 5 + 2
            q, good, bad = f"¿Cuánto es {x} más {y}?", f"{x} más {y} es {x + y}.", f"{x} más {y} es {x + y + 1}."
        out.append(Preference(id=f"par-{i:03d}", prompt=[{"role": "user", "content": q}], chosen=good, rejected=bad))
    return out


@pytest.fixture
def prefs(tmp_path: Path) -> Path:
    """A preference folder: 24 training pairs, 4 validation pairs."""
    folder = tmp_path / "prefs"
    write_preference_dir(folder, pairs(24), config={}, inputs=[], val_fraction=0)
    val = "".join(json.dumps({"id": f"val-{i}", "prompt": p.prompt, "chosen": p.chosen, "rejected": p.rejected}) + "\n"
                  for i, p in enumerate(pairs(4)))
    (folder / "val.jsonl").write_text(val)
    return folder


def _config(run_config, prefs: Path, name: str, **keys) -> Path:
    return run_config(name, dataset=str(prefs), **keys)


def _rows(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines() if '"loss"' in line]


def _train(args: list[str], env_extra: dict | None = None, script: str | None = None) -> subprocess.CompletedProcess:
    return run_train(args, env_extra, script, timeout=600)


def _adapter(run: Path) -> dict:
    from safetensors.torch import load_file

    return load_file(run / "adapter" / "adapter_model.safetensors")


def test_dpo_sigkill_mid_epoch_then_resume_matches_uninterrupted_run(run_config, prefs, tmp_path):
    common = {"method": "dpo", "max_steps": 8, "checkpoint_every": 3, "eval_every": 4, "batch_size": 4,
              "micro_batch_size": 2, "lora": {"dropout": 0.1}}
    clean = _train([str(_config(run_config, prefs, "clean.yaml", output_dir=str(tmp_path / "clean"), **common))])
    assert clean.returncode == 0, clean.stderr[-2000:]

    killed_cfg = _config(run_config, prefs, "killed.yaml", output_dir=str(tmp_path / "killed"), **common)
    died = _train([str(killed_cfg)], {"KILL_AT": "5"}, script=KILLER)
    assert died.returncode == -9, died.stderr[-2000:]
    killed = tmp_path / "killed"
    assert [r["step"] for r in _rows(killed)] == [1, 2, 3, 4, 5]
    assert not (killed / "adapter").exists()

    resumed = _train([str(killed_cfg)])  # a plain rerun resumes
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert "resuming" in resumed.stderr and "step-3" in resumed.stderr

    a, b = _rows(tmp_path / "clean"), _rows(killed)
    assert [r["step"] for r in b] == list(range(1, 9))
    for x, y in zip(a, b, strict=True):
        for key in ("loss", "reward_margin", "reward_accuracy", "logp_chosen"):
            assert x[key] == pytest.approx(y[key], abs=1e-4), key
        assert x["lr"] == pytest.approx(y["lr"], rel=1e-9)
    final_a, final_b = _adapter(tmp_path / "clean"), _adapter(killed)
    assert final_a.keys() == final_b.keys() and not any(".ref." in k for k in final_a)
    for key in final_a:
        assert (final_a[key] - final_b[key]).abs().max().item() < 1e-5, key
    assert any((final_a[k].abs().sum() > 0).item() for k in final_a if "lora_B" in k)  # it did learn


def test_dpo_starts_at_log_2_and_writes_the_run_folder(run_config, prefs, tmp_path):
    """A fresh adapter changes nothing, so the policy is its reference: TRL's sigmoid loss is ln 2, margins 0."""
    from amauta.train.config import build_config
    from amauta.train.recipe import run

    cfg = build_config(_config(run_config, prefs, "dpo.yaml", method="dpo", max_steps=3, eval_every=3), {})
    out = run(cfg, progress=False)
    rows = _rows(out)
    assert rows[0]["loss"] == pytest.approx(math.log(2), abs=1e-5)
    assert rows[0]["reward_margin"] == pytest.approx(0, abs=1e-5)
    assert {"reward_chosen", "reward_rejected", "reward_accuracy", "logp_rejected"} <= set(rows[-1])
    summary = json.loads((out / "summary.json").read_text())
    assert summary["steps"] == 3 and summary["final_val_loss"] < math.log(2)  # ln 2 before the first update
    assert (out / "loss.png").stat().st_size > 0 and (out / "adapter" / "adapter_model.safetensors").is_file()
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["config"]["method"] == "dpo" and manifest["complete"]


@pytest.mark.parametrize("method, metric", [("orpo", "log_odds_ratio"), ("kto", "kl")])
def test_orpo_and_kto_train_with_trl_losses(run_config, prefs, tmp_path, method, metric):
    from amauta.train.config import build_config
    from amauta.train.recipe import run

    cfg = build_config(_config(run_config, prefs, f"{method}.yaml", method=method, max_steps=2, eval_every=2,
                               output_dir=str(tmp_path / method)), {})
    out = run(cfg, progress=False)
    rows = _rows(out)
    assert len(rows) == 2 and all(math.isfinite(r["loss"]) for r in rows) and metric in rows[0]
    if method == "kto":
        assert rows[0]["loss"] == pytest.approx(0.5, abs=1e-5)  # KTO at the reference: 1 - sigmoid(0)
    assert (out / "adapter" / "adapter_model.safetensors").is_file()


def test_dpo_refuses_unpaired_examples_before_loading_a_model(run_config, tmp_path):
    folder = tmp_path / "kto-data"
    kto = [Unpaired(id="u1", prompt=[{"role": "user", "content": "¿Sí?"}], completion="Sí.", label=True)]
    write_preference_dir(folder, kto, config={}, inputs=[], val_fraction=0)
    from amauta.train.config import build_config
    from amauta.train.recipe import run

    cfg = build_config(_config(run_config, folder, "bad.yaml", method="dpo"), {})
    with pytest.raises(AmautaError, match=r"train.jsonl:1: an unpaired \(KTO\) example, but DPO needs chosen"):
        run(cfg, progress=False)
    assert not (tmp_path / "run").exists()  # refused before the run folder was claimed


def test_preference_training_refuses_an_sft_dataset(run_config):
    from amauta.train.config import build_config
    from amauta.train.recipe import run

    cfg = build_config(run_config(method="dpo"), {})
    with pytest.raises(AmautaError, match="not a preference dataset folder|not 'data.preferences'"):
        run(cfg, progress=False)


def test_sft_fingerprint_is_unchanged_by_the_preference_fields(run_config):
    """Checkpoints of SFT runs made before `method:` existed must still resume."""
    from amauta.train.config import build_config, fingerprint_fields

    sft = fingerprint_fields(build_config(run_config(), {}))
    assert "method" not in sft and "preference" not in sft
    dpo = fingerprint_fields(build_config(run_config("dpo.yaml", method="dpo"), {}))
    assert dpo["method"] == "dpo" and dpo["preference"]["beta"] == 0.1


def test_settings_trl_refuses_get_one_line_and_no_run_folder(run_config, prefs, tmp_path):
    from amauta.train.config import build_config
    from amauta.train.recipe import run

    cfg = build_config(_config(run_config, prefs, "exo.yaml", method="dpo", preference={"loss_type": "exo_pair"}), {})
    with pytest.raises(AmautaError, match=r"method dpo: TRL refused these settings \(Label smoothing must be") as caught:
        run(cfg, progress=False)
    assert "\n" not in str(caught.value)
    assert not (tmp_path / "run" / "manifest.json").exists()


def _setup_dpo(run_config, prefs, tmp_path, **keys):
    """A DPO recipe after `setup()` (tiny model, nothing trained yet); the caller releases it."""
    from amauta.train.config import build_config
    from amauta.train.recipe import recipe_class

    cfg = build_config(_config(run_config, prefs, "dpo-ref.yaml", method="dpo", output_dir=str(tmp_path / "ref"), **keys), {})
    recipe = recipe_class("dpo")(cfg, progress=False)
    recipe.setup()
    return recipe


def test_dpo_loss_with_precomputed_reference_equals_the_loss_without(run_config, prefs, tmp_path):
    """Same batch, same adapter: TRL's loss reading the precomputed reference log-probs from the batch is the
    loss with the reference forward pass (adapter off) done in the step."""
    import torch

    recipe = _setup_dpo(run_config, prefs, tmp_path, preference={"precompute_ref": True})
    try:
        torch.manual_seed(0)
        for name, param in recipe.model.named_parameters():
            if "lora_B" in name:  # move the policy away from its reference, so the reference matters
                param.data.normal_(0, 0.05)
        recipe.model.eval()
        plain = [dict(ex) for ex in recipe.train_examples[:3]]
        with torch.no_grad():
            loss_in_step, metrics_in_step = recipe._loss(recipe._collate(plain))
            recipe._precompute_reference()
            with_ref = recipe.train_examples[:3]
            batch = recipe._collate(with_ref)
            loss_precomputed, metrics_precomputed = recipe._loss(batch)
        assert "ref_chosen_logps" in batch and "ref_chosen_logps" not in recipe._collate(plain)
        assert abs(loss_in_step.item() - math.log(2)) > 1e-3  # the policy did move
        assert loss_precomputed.item() == pytest.approx(loss_in_step.item(), abs=1e-6)
        assert metrics_precomputed["reward_margin"] == pytest.approx(metrics_in_step["reward_margin"], abs=1e-6)
        cache = json.loads((recipe.out / "ref_logps.json").read_text())
        assert len(cache["train"]["chosen"]) == len(recipe.train_examples)
        assert len(cache["val"]["rejected"]) == len(recipe.val_examples)
    finally:
        recipe.release()


def test_precomputed_reference_continues_a_partial_cache_and_redoes_a_stale_one(run_config, prefs, tmp_path):
    recipe = _setup_dpo(run_config, prefs, tmp_path, preference={"precompute_ref": True})
    try:
        path = recipe.out / "ref_logps.json"
        key = recipe._reference_key(recipe.train_examples)
        # A run killed while computing: two pairs saved (marked values), the rest to do.
        path.write_text(json.dumps({"train": {"key": key, "chosen": [-1.5, -2.5], "rejected": [-3.5, -4.5]},
                                    "val": {"key": "from another dataset", "chosen": [7.0], "rejected": [7.0]}}))
        recipe._precompute_reference()
        train, val = recipe.train_examples, recipe.val_examples
        assert [train[0]["ref_chosen_logps"], train[1]["ref_rejected_logps"]] == [-1.5, -4.5]  # kept, not redone
        assert all(ex["ref_chosen_logps"] < 0 and ex["ref_chosen_logps"] not in (-1.5, -2.5) for ex in train[2:])
        assert val[0]["ref_chosen_logps"] != 7.0  # a stale split is computed again
        cache = json.loads(path.read_text())
        assert len(cache["train"]["chosen"]) == len(train) and cache["train"]["chosen"][:2] == [-1.5, -2.5]
    finally:
        recipe.release()


def test_dpo_precomputed_reference_trains_as_without_and_a_resumed_run_reads_the_cache(run_config, prefs, tmp_path):
    """24 pairs, 4 per step, 8 steps: more than one epoch, validation scored twice, so `auto` precomputes both
    splits. The logged losses match a run without precomputation; a run killed mid-epoch resumes from the
    cache (the file untouched) and ends as the uninterrupted run."""
    from amauta.train.config import build_config
    from amauta.train.recipe import run

    common = {"method": "dpo", "max_steps": 8, "checkpoint_every": 3, "eval_every": 4, "batch_size": 4,
              "micro_batch_size": 2, "lora": {"dropout": 0.0}}
    off = run(build_config(_config(run_config, prefs, "off.yaml", output_dir=str(tmp_path / "off"),
                                   preference={"precompute_ref": False}, **common), {}), progress=False)
    auto = run(build_config(_config(run_config, prefs, "auto.yaml", output_dir=str(tmp_path / "auto"), **common), {}),
               progress=False)
    assert not (off / "ref_logps.json").exists() and (auto / "ref_logps.json").is_file()
    a, b = _rows(off), _rows(auto)
    assert len(a) == len(b) == 8
    for x, y in zip(a, b, strict=True):
        for key in ("loss", "reward_margin", "logp_chosen"):
            assert x[key] == pytest.approx(y[key], abs=1e-5), key
    val = lambda run_dir: [json.loads(x)["val_loss"] for x in (run_dir / "log.jsonl").read_text().splitlines() if "val_loss" in x]  # noqa: E731
    assert val(off) == pytest.approx(val(auto), abs=1e-5)

    killed_cfg = _config(run_config, prefs, "killed.yaml", output_dir=str(tmp_path / "killed"), **common)
    died = _train([str(killed_cfg)], {"KILL_AT": "5"}, script=KILLER)
    assert died.returncode == -9, died.stderr[-2000:]
    cache = tmp_path / "killed" / "ref_logps.json"
    before = cache.stat()
    resumed = _train([str(killed_cfg)])
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert "resuming" in resumed.stderr and "read from ref_logps.json" in resumed.stderr
    after = cache.stat()
    assert (after.st_ino, after.st_mtime_ns) == (before.st_ino, before.st_mtime_ns)
    for x, y in zip(b, _rows(tmp_path / "killed"), strict=True):
        assert x["loss"] == pytest.approx(y["loss"], abs=1e-5)


def test_precompute_ref_is_refused_for_kto_and_left_out_of_the_fingerprint(run_config, prefs):
    from amauta.train.config import build_config, fingerprint

    with pytest.raises(AmautaError, match="preference.precompute_ref is for method dpo"):
        build_config(_config(run_config, prefs, "kto.yaml", method="kto", preference={"precompute_ref": True}), {})
    plain = build_config(_config(run_config, prefs, "a.yaml", method="dpo"), {})
    on = build_config(_config(run_config, prefs, "b.yaml", method="dpo", preference={"precompute_ref": True}), {})
    assert fingerprint(plain) == fingerprint(on)  # runs from before the key, or switching it, still resume
