"""What knowledge recipes need from training: completion records mixed with chat records, early stopping
on the exam's dev split with the best weights restored, modules_to_save over tied embeddings, full
fine-tuning, and the knowledge-cpu preset."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from amauta.core.errors import AmautaError
from amauta.train.config import build_config, fingerprint_fields
from amauta.train.recipe import LoRARecipe, run
from conftest import write_dataset

REPO = Path(__file__).resolve().parents[2]
EXAM = REPO / "examples" / "exams" / "leyes.jsonl"

# Our own sentences about the example corpus's subject, long enough that several share a block.
DOCUMENTS = [
    "El Servicio de Rentas Internas administra los impuestos internos del Ecuador. " * 3,
    "La declaración del impuesto a la renta se presenta una vez al año, en el mes de marzo.",
    "El Registro Único de Contribuyentes identifica a cada contribuyente ante la administración tributaria.",
    "Los impuestos se pagan en dólares de los Estados Unidos de América. " * 4,
    "Un texto breve.",
]


def _rows(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def add_completions(folder: Path, split: str, texts: list[str]) -> Path:
    """Append completion records ({id, text, source, category}) to a prepared dataset folder's split."""
    with (folder / f"{split}.jsonl").open("a", encoding="utf-8") as handle:
        for i, text in enumerate(texts):
            row = {"id": f"{split}-doc-{i}", "text": text, "source": "documentos", "category": "cpt"}
            handle.write(json.dumps(row, ensure_ascii=False) + "\n")
    return folder


@pytest.fixture
def mixed(tmp_path: Path) -> Path:
    """16 conversations and 5 documents for training, 4 and 2 for validation (tiny-llama)."""
    folder = write_dataset(tmp_path / "mixed", n_train=16, n_val=4)
    add_completions(folder, "train", DOCUMENTS)
    return add_completions(folder, "val", DOCUMENTS[:2])


# --- completion records ---------------------------------------------------------------------------------------

def test_mixed_run_packs_completions_and_masks_only_chat_prompts(run_config, mixed, tmp_path):
    cfg = build_config(run_config(dataset=str(mixed), max_length=128, max_steps=4, checkpoint_every=4,
                                  eval_every=4), {})
    recipe = LoRARecipe(cfg, progress=False)
    try:
        recipe.setup()
        tokenizer = recipe.loaded.tokenizer
        chats = [e for e in recipe.train_examples if -100 in e["labels"]]
        blocks = [e for e in recipe.train_examples if -100 not in e["labels"]]
        assert len(chats) == 16
        assert all(b["labels"] == b["input_ids"] for b in blocks)
        assert len(blocks) > 1 and all(len(b["input_ids"]) == 128 for b in blocks[:-1])
        stream = [t for b in blocks for t in b["input_ids"]]
        assert stream.count(tokenizer.eos_token_id) == len(DOCUMENTS)  # one EOS after each document
        assert "[INST]" not in tokenizer.decode(stream)  # raw text: no chat template
        val_blocks = [e for e in recipe.val_examples if -100 not in e["labels"]]
        assert len(recipe.val_examples) - len(val_blocks) == 4 and val_blocks
        recipe.fit()
        recipe.save()
    finally:
        recipe.release()
    train = [r for r in _rows(tmp_path / "run" / "log.jsonl") if "loss" in r]
    assert len(train) == 4 and all(r["loss"] > 0 for r in train)


def test_a_dataset_of_completion_records_only_trains(run_config, tmp_path):
    folder = tmp_path / "docs-only"
    folder.mkdir()
    for name in ("train", "val"):
        (folder / f"{name}.jsonl").write_text("")
    (folder / "manifest.json").write_text(json.dumps({"stage": "data.prepare", "template": "llama2", "model": "tiny-llama"}))
    add_completions(folder, "train", DOCUMENTS * 4)
    cfg = build_config(run_config(dataset=str(folder), max_length=32, batch_size=2, max_steps=2, checkpoint_every=2), {})
    out = run(cfg, progress=False)
    assert json.loads((out / "summary.json").read_text())["completed"]


# --- early stopping -------------------------------------------------------------------------------------------

def _early(**changes) -> dict:
    return {"enabled": True, "exam": str(EXAM), "split": "dev", "every": 2, "patience": 1, "limit": 4, **changes}


def test_early_stopping_on_the_exam_keeps_the_best_weights(run_config, tmp_path):
    # min_delta 1.0: no accuracy can beat the first evaluation by more than 1, so it stays the best and the
    # second evaluation uses up the patience of 1.
    cfg = build_config(run_config(max_steps=12, checkpoint_every=2, keep_checkpoints=10,
                                  early_stopping=_early(min_delta=1.0)), {})
    out = run(cfg, progress=False)
    rows = [r for r in _rows(out / "log.jsonl") if "early_stopping_score" in r]
    assert [r["step"] for r in rows] == [2, 4] and all(r["early_stopping_metric"] == "mc_acc" for r in rows)
    assert all(0.0 <= r["early_stopping_score"] <= 1.0 for r in rows)
    summary = json.loads((out / "summary.json").read_text())
    assert summary["steps"] == 4 and summary["completed"]
    assert summary["early_stopping"]["best_step"] == 2 and summary["early_stopping"]["stopped"]
    assert summary["early_stopping"]["best_score"] == rows[0]["early_stopping_score"]
    final = load_file(out / "adapter" / "adapter_model.safetensors")
    at_best = load_file(out / "checkpoints" / "step-2" / "adapter" / "adapter_model.safetensors")
    at_stop = load_file(out / "checkpoints" / "step-4" / "adapter" / "adapter_model.safetensors")
    assert all(torch.equal(final[k], at_best[k]) for k in final)
    assert any(not torch.equal(final[k], at_stop[k]) for k in final)
    # A rerun finds the run finished: nothing is trained again.
    before = (out / "log.jsonl").read_text()
    run(cfg, progress=False)
    assert (out / "log.jsonl").read_text() == before


def test_early_stopping_on_val_loss(run_config, tmp_path):
    cfg = build_config(run_config(max_steps=12, checkpoint_every=12, eval_every=2,
                                  early_stopping={"enabled": True, "metric": "val_loss", "every": 3, "patience": 2,
                                                  "min_delta": 100.0}), {})
    out = run(cfg, progress=False)
    summary = json.loads((out / "summary.json").read_text())
    assert summary["steps"] == 9 and summary["early_stopping"]["best_step"] == 3
    assert summary["early_stopping"]["evaluations"] == 3


def test_early_stopping_config_errors(run_config):
    with pytest.raises(AmautaError, match="needs early_stopping.exam"):
        build_config(run_config(early_stopping={"enabled": True}), {})
    with pytest.raises(AmautaError, match="early_stopping.split"):
        build_config(run_config(early_stopping=_early(split="test")), {})


def test_early_stopping_resumes_exactly_after_a_kill(run_config, tmp_path):
    from test_train_resume import KILLER, _train

    common = {"max_steps": 12, "checkpoint_every": 2, "keep_checkpoints": 10, "micro_batch_size": 2,
              "early_stopping": _early(every=2, patience=2)}
    clean = _train([str(run_config("clean.yaml", output_dir=str(tmp_path / "clean"), **common))])
    assert clean.returncode == 0, clean.stderr[-2000:]
    killed_cfg = run_config("killed.yaml", output_dir=str(tmp_path / "killed"), **common)
    died = _train([str(killed_cfg)], {"KILL_AT": "5"}, script=KILLER)
    assert died.returncode == -9, died.stderr[-2000:]
    resumed = _train([str(killed_cfg)])
    assert resumed.returncode == 0, resumed.stderr[-2000:]

    def outcome(run_dir: Path):
        rows = [{k: v for k, v in r.items() if k not in ("elapsed_s", "tokens_per_s")} for r in _rows(run_dir / "log.jsonl")]
        summary = json.loads((run_dir / "summary.json").read_text())
        return rows, summary["early_stopping"], load_file(run_dir / "adapter" / "adapter_model.safetensors")

    clean_rows, clean_early, clean_weights = outcome(tmp_path / "clean")
    rows, early, weights = outcome(tmp_path / "killed")
    assert rows == clean_rows and early == clean_early
    assert all(torch.equal(weights[k], clean_weights[k]) for k in clean_weights)


# --- modules_to_save ------------------------------------------------------------------------------------------

def test_modules_to_save_keeps_tied_embeddings_tied_through_export(run_config, tmp_path):
    from transformers import AutoModelForCausalLM

    from amauta.models.load import load_model
    from amauta.train.export import export_run

    data = write_dataset(tmp_path / "gemma-data", n_train=8, n_val=2, template="gemma", model="tiny-gemma3")
    cfg = build_config(run_config(model="tiny-gemma3", dataset=str(data), max_steps=3, checkpoint_every=3,
                                  optimizer={"lr": 5e-2},
                                  lora={"modules_to_save": ["embed_tokens", "lm_head"]}), {})
    out = run(cfg, progress=False)
    base = load_model("tiny-gemma3").model
    tuned = load_model("tiny-gemma3", adapter=out).model
    inputs, outputs = tuned.get_input_embeddings(), tuned.get_output_embeddings()
    assert torch.equal(inputs.weight, outputs.weight)  # one trained matrix serves both
    assert not torch.equal(inputs.weight, base.get_input_embeddings().weight)  # and it was trained

    export = export_run(out, tmp_path / "export", merge=True, dtype="float32")
    merged = AutoModelForCausalLM.from_pretrained(export, dtype=torch.float32)
    assert merged.get_output_embeddings().weight is merged.get_input_embeddings().weight  # still tied, stored once
    ids = torch.tensor([[5, 17, 42, 99, 7]])
    with torch.no_grad():
        assert torch.allclose(merged(ids).logits, tuned(ids).logits, atol=1e-4)


def test_modules_to_save_trains_untied_embeddings_apart(run_config, tmp_path):
    from amauta.models.load import load_model

    cfg = build_config(run_config(max_steps=2, checkpoint_every=2, optimizer={"lr": 5e-2},
                                  lora={"modules_to_save": ["lm_head"]}), {})
    out = run(cfg, progress=False)
    saved = load_file(out / "adapter" / "adapter_model.safetensors")
    assert any(k.endswith("lm_head.weight") for k in saved) and not any("embed_tokens" in k for k in saved)
    base, tuned = load_model("tiny-llama").model, load_model("tiny-llama", adapter=out).model
    assert not torch.equal(tuned.get_output_embeddings().weight, base.get_output_embeddings().weight)
    assert torch.equal(tuned.get_input_embeddings().weight, base.get_input_embeddings().weight)


def test_unknown_module_to_save_is_one_line(run_config):
    cfg = build_config(run_config(lora={"modules_to_save": ["embeddings"]}), {})
    with pytest.raises(AmautaError, match="lora.modules_to_save: embeddings not in"):
        run(cfg, progress=False)


# --- full fine-tuning -----------------------------------------------------------------------------------------

def test_full_finetuning_saves_a_loadable_model_and_exports(run_config, tmp_path):
    from transformers import AutoModelForCausalLM

    from amauta.models.load import load_model
    from amauta.train.export import export_run

    cfg = build_config(run_config(finetuning="full", max_steps=3, checkpoint_every=3, optimizer={"lr": 1e-3}), {})
    out = run(cfg, progress=False)
    names = {p.name for p in out.iterdir()}
    assert "model" in names and "adapter" not in names
    assert (out / "checkpoints" / "step-3" / "model" / "model.safetensors").is_file()
    assert json.loads((out / "summary.json").read_text())["finetuning"] == "full"
    saved_config = json.loads((out / "model" / "config.json").read_text())
    assert saved_config["use_cache"] and "amauta" not in json.dumps(saved_config)  # generation-ready, loads anywhere

    tuned, base = load_model(out), load_model("tiny-llama")
    assert tuned.profile.template == "llama2"
    ids = torch.tensor([[5, 17, 42, 99, 7]])
    with torch.no_grad():
        logits = tuned.model(ids).logits
        assert (logits - base.model(ids).logits).abs().max() > 1e-3  # every weight moved, not an adapter
        export = export_run(out, tmp_path / "export", merge=True, dtype="float32")
        assert torch.allclose(AutoModelForCausalLM.from_pretrained(export)(ids).logits, logits, atol=1e-5)
    with pytest.raises(AmautaError, match="no adapter"):
        export_run(out, tmp_path / "adapter-only", merge=False)


def crash_then_resume(cfg, at_step: int) -> Path:
    """Run `cfg`, interrupted by an error right after logging step `at_step` (as a crash would), then rerun it:
    the rerun resumes from the newest checkpoint. Returns the run folder."""
    from amauta.train import recipe as recipe_module

    original = recipe_module.LoRARecipe._log

    def crash(self, row):
        original(self, row)
        if row.get("step") == at_step and "loss" in row:
            raise KeyboardInterrupt

    recipe_module.LoRARecipe._log = crash
    try:
        with pytest.raises(KeyboardInterrupt):
            run(cfg, progress=False)
    finally:
        recipe_module.LoRARecipe._log = original
    return run(cfg, progress=False)


def test_full_finetuning_resumes_exactly(run_config, tmp_path):
    """Interrupted at step 3, resumed from step 2's checkpoint: the same losses and weights as a clean run."""
    common = {"finetuning": "full", "max_steps": 4, "checkpoint_every": 2}
    clean = run(build_config(run_config("a.yaml", output_dir=str(tmp_path / "a"), **common), {}), progress=False)
    resumed = crash_then_resume(build_config(run_config("b.yaml", output_dir=str(tmp_path / "b"), **common), {}), 3)
    losses = [[r["loss"] for r in _rows(d / "log.jsonl") if "loss" in r] for d in (clean, resumed)]
    assert losses[0] == losses[1]
    a, b = (load_file(d / "model" / "model.safetensors") for d in (clean, resumed))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_mixed_run_resumes_exactly(run_config, mixed, tmp_path):
    """Conversations and completion blocks shuffled together: a resumed run sees the same examples per step."""
    common = {"dataset": str(mixed), "max_steps": 6, "checkpoint_every": 2, "batch_size": 4, "lora": {"dropout": 0.1}}
    clean = run(build_config(run_config("a.yaml", output_dir=str(tmp_path / "a"), **common), {}), progress=False)
    resumed = crash_then_resume(build_config(run_config("b.yaml", output_dir=str(tmp_path / "b"), **common), {}), 5)
    rows = [[(r["step"], r["loss"], r["tokens"]) for r in _rows(d / "log.jsonl") if "loss" in r] for d in (clean, resumed)]
    assert rows[0] == rows[1] and len(rows[0]) == 6
    a, b = (load_file(d / "adapter" / "adapter_model.safetensors") for d in (clean, resumed))
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_full_finetuning_refuses_quantized_weights(run_config):
    with pytest.raises(AmautaError, match="full fine-tuning cannot train 4bit weights"):
        build_config(run_config(finetuning="full", quantization={"mode": "4bit"}), {})
    with pytest.raises(AmautaError, match="modules_to_save is for LoRA runs"):
        build_config(run_config(finetuning="full", lora={"modules_to_save": ["lm_head"]}), {})


def test_new_keys_at_their_defaults_keep_old_fingerprints(run_config):
    """Runs started before these keys existed must still resume: defaults are left out of the fingerprint."""
    fields = fingerprint_fields(build_config(run_config(), {}))
    assert "finetuning" not in fields and "early_stopping" not in fields and "modules_to_save" not in fields["lora"]
    assert fingerprint_fields(build_config(run_config(finetuning="full"), {}))["finetuning"] == "full"


# --- the knowledge-cpu preset ---------------------------------------------------------------------------------

def test_knowledge_cpu_preset_is_not_cpu_quick(tmp_path):
    cfg = build_config(None, {"dataset": str(tmp_path), "output_dir": str(tmp_path / "run")}, preset="knowledge-cpu")
    quick = build_config(None, {"dataset": str(tmp_path), "output_dir": str(tmp_path / "run")}, preset="cpu-quick")
    assert cfg.model == "smollm2-135m-instruct" and cfg.max_steps >= 4 * quick.max_steps
    assert cfg.quantization.mode == "none" and cfg.lora.targets == "all-linear"
    assert cfg.lora.r > quick.lora.r and cfg.finetuning == "lora"


def test_a_full_finetuning_run_is_an_exam_candidate_and_leak_checked(tmp_path):
    """`amauta eval exam --candidates base,RUN` takes a full fine-tuning run as a model, and refuses it when
    its training data holds a test question, as it refuses such an adapter."""
    from amauta.data.exam_items import read_exam
    from amauta.evaluate.candidate_spec import parse_candidates
    from amauta.evaluate.exam import check_leaks

    question = read_exam(EXAM, "test")[0].question
    dataset = tmp_path / "data"
    dataset.mkdir()
    row = {"id": "a", "messages": [{"role": "user", "content": question}, {"role": "assistant", "content": "15%"}],
           "source": "s"}
    (dataset / "train.jsonl").write_text(json.dumps(row, ensure_ascii=False) + "\n")
    run_dir = tmp_path / "run"
    (run_dir / "model").mkdir(parents=True)
    (run_dir / "model" / "config.json").write_text("{}")
    (run_dir / "manifest.json").write_text(json.dumps({"stage": "train", "config": {"dataset": str(dataset)}}))
    candidates = parse_candidates(f"base,{run_dir}", "tiny-llama", default_strategy="greedy")
    assert candidates[1].model == str(run_dir) and candidates[1].adapter is None
    with pytest.raises(AmautaError, match="holds the test question"):
        check_leaks(candidates, EXAM)
