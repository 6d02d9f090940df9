"""The LoRA / QLoRA fine-tuning recipe: `setup()` → `fit()` → `save()`, read top to bottom.

    amauta train examples/train-cpu-quick.yaml                 # one process, GPU or CPU
    accelerate launch --config_file examples/accelerate/ddp.yaml -m amauta.cli train RUN.yaml

What it does, in order:
  setup  read the dataset folder → refuse a wrong/foreign output folder → load the base (4-bit for
         QLoRA) → attach the LoRA adapter → tokenize with response-only labels → optimizer (paged AdamW
         8-bit on CUDA) and cosine schedule with warmup → resume from the newest checkpoint if any.
  fit    an explicit loop: per optimizer step, `batch_size` examples split into padding-free
         micro-batches (examples concatenated with restarting position ids, so no pad token is ever
         computed), loss averaged over all answer tokens of the step, clip, step; log.jsonl per step,
         validation loss and the optional forgetting guard at intervals, atomic checkpoints.
  save   adapter/, loss.png, summary.json, manifest.json.

`accelerate` owns devices, mixed precision and multi-process (DDP/FSDP/DeepSpeed via `accelerate
launch`); this file has no distributed code of its own beyond sharding each step's examples by rank (and FSDP
checkpoints, which every process writes: `checkpoint.save_sharded_checkpoint`).
"""

from __future__ import annotations

import contextlib
import itertools
import math
import time
from pathlib import Path
from typing import Any

import torch

from amauta.core.errors import AmautaError
from amauta.core.files import append_jsonl, atomic_write_json, atomic_write_text, sha256_file
from amauta.core.manifest import write_manifest
from amauta.train import checkpoint as ckpt
from amauta.train.config import TrainConfig, fingerprint, fingerprint_fields

# On a CPU, `micro_batch_size: auto` packs examples up to this many tokens per forward pass: longer
# rows cost memory (activations are kept), shorter ones waste the matrix units.
CPU_TOKENS_PER_MICRO_BATCH = 2048


def run(config: TrainConfig, *, resume: bool = False, progress: bool = True, overwrite: bool = False) -> Path:
    """Train one run and return its folder (the pipeline runner's entry point).

    config: the validated run config.
    resume: insist on resuming (error when there is no checkpoint); a plain run resumes anyway when the
        output folder holds a checkpoint of the same config.
    progress: show the progress bar.
    overwrite: start afresh in a run folder of another config or dataset (only a folder `amauta train`
        made, holding nothing else and not the dataset: see core/outdir.py).
    """
    recipe = recipe_class(config.method)(config, progress=progress)
    try:
        recipe.setup(resume=resume, overwrite=overwrite)
        if recipe.finished_already:
            recipe.print(f"{recipe.out}: already trained with this config and dataset; nothing to do")
            return recipe.out
        recipe.fit()
        return recipe.save()
    except BaseException as error:
        recipe.release(error)  # the claim sees the failure: a refused run leaves no amauta.log behind
        raise
    finally:
        recipe.release()


def recipe_class(method: str) -> type:
    """The recipe of a training method: `LoRARecipe` for SFT; for DPO, ORPO and KTO the same loop with
    preference examples and TRL's losses (train/preference.py)."""
    if method == "sft":
        return LoRARecipe
    from amauta.train.preference import PreferenceMixin

    return type("PreferenceRecipe", (PreferenceMixin, LoRARecipe), {})


def linear_module_names(model: Any) -> list[str]:
    """The distinct leaf names of a model's linear layers (what LoRA can target)."""
    names = set()
    for name, module in model.named_modules():
        linear = isinstance(module, torch.nn.Linear) or type(module).__name__ in ("Linear4bit", "Linear8bitLt", "Conv1D")
        if name and linear:
            names.add(name.rsplit(".", 1)[-1])
    names.discard("lm_head")
    return sorted(names)


def resolve_targets(model: Any, profile: Any, targets: str | list[str]) -> dict[str, list[str]]:
    """`attention` / `all-linear` / explicit names → `{"target_modules", "target_parameters"}` for peft.

    The models room's `resolve_lora_targets` does the mapping (it also knows that transformers 5 fuses
    Mixtral's expert w1/w2/w3 into parameters); this adds the config key and the present modules to errors.
    """
    from amauta.models.registry import resolve_lora_targets

    present = linear_module_names(model)
    if isinstance(targets, str) and targets not in profile.lora_targets:
        raise AmautaError(f"lora.targets: '{targets}' is not a preset of profile '{profile.name}' "
                          f"(presets: {', '.join(profile.lora_targets)}); or list module names: {', '.join(present)}")
    names = profile.lora_targets[targets] if isinstance(targets, str) else list(targets)
    try:
        return resolve_lora_targets(model, names)
    except AmautaError:
        absent = [n for n in names if n not in present]
        raise AmautaError(f"lora.targets: {', '.join(absent) or ', '.join(names)} not in this "
                          f"{type(model).__name__}; its linear modules are: {', '.join(present)}") from None


def embeddings_tied(model: Any) -> bool:
    """Whether the model's input embeddings and output layer are one tensor (SmolLM2, Gemma)."""
    inputs, outputs = model.get_input_embeddings(), model.get_output_embeddings()
    return inputs is not None and outputs is not None and outputs.weight is inputs.weight


def modules_to_save_settings(model: Any, names: list[str]) -> dict[str, Any]:
    """peft's settings for whole modules trained beside the adapter (`lora.modules_to_save`).

    With tied embeddings peft would otherwise give `embed_tokens` and `lm_head` a trainable copy each and
    untie them silently; `ensure_weight_tying` makes it one trained tensor serving both, which reloading
    and merging keep tied (the adapter file lists it under both names, peft's format).
    """
    if not names:
        return {}
    present = {name.rsplit(".", 1)[-1] for name, _ in model.named_modules() if name}
    absent = [name for name in names if name not in present]
    if absent:
        raise AmautaError(f"lora.modules_to_save: {', '.join(absent)} not in this {type(model).__name__}; "
                          "name whole modules such as embed_tokens, lm_head")
    return {"modules_to_save": list(names), "ensure_weight_tying": embeddings_tied(model)}


def pack(examples: list[dict[str, list[int]]], device: torch.device) -> dict[str, torch.Tensor]:
    """Concatenate examples into one row with per-example position ids (padding-free).

    Examples do not attend to each other: `packed_sdpa` attends per example (bounds from the restarting
    positions); a model without it gets transformers' block-diagonal mask from the same positions. The first label of each example is masked: it would otherwise be predicted
    from the previous example's last token.
    """
    ids, labels, positions = [], [], []
    for ex in examples:
        n = len(ex["input_ids"])
        ids += ex["input_ids"]
        labels += [-100] + ex["labels"][1:]
        positions += list(range(n))
    as_row = lambda values: torch.tensor([values], dtype=torch.long, device=device)  # noqa: E731
    return {"input_ids": as_row(ids), "labels": as_row(labels), "position_ids": as_row(positions)}


# Packed rows attend per example: an attention implementation that runs SDPA's causal kernel on each
# example's slice of the row (flash-attention's "varlen" idea, as a loop, since flash-attn has no CPU
# build). The block-diagonal mask it replaces makes attention quadratic in the whole row and forces
# SDPA's masked path; per example the work is sum(n_i^2) with the fast causal kernel (measured on
# SmolLM2-135M, 1 CPU thread, an 837-token row of 8 examples: forward+backward 14.0 s → 10.1 s).
# Rows without example boundaries (padded batches, generation) fall back to plain SDPA with the mask.
PACKED_ATTENTION = "amauta_packed_sdpa"


def packed_sdpa(module, query, key, value, attention_mask, cu_seq_lens_q=None, **kwargs):
    """`AttentionInterface` function: causal SDPA per example of a packed row (bounds in `cu_seq_lens_q`)."""
    from transformers.integrations.sdpa_attention import sdpa_attention_forward

    for name in ("cu_seq_lens_k", "max_length_q", "max_length_k"):
        kwargs.pop(name, None)
    window = kwargs.get("sliding_window") or getattr(module, "sliding_window", None)
    if cu_seq_lens_q is None or window:  # a sliding window needs the mask (Gemma 3's local layers)
        return sdpa_attention_forward(module, query, key, value, attention_mask, **kwargs)
    kwargs.pop("is_causal", None)
    bounds = cu_seq_lens_q.tolist()
    pieces = [sdpa_attention_forward(module, query[:, :, a:b], key[:, :, a:b], value[:, :, a:b], None,
                                     is_causal=True, **kwargs)[0] for a, b in itertools.pairwise(bounds)]
    return torch.cat(pieces, dim=1), None  # (batch, seq, heads, head_dim), as sdpa_attention_forward returns


def use_packed_attention(model: Any) -> bool:
    """Switch `model` to `packed_sdpa` if it runs SDPA or eager attention through transformers' interface."""
    from transformers import AttentionInterface
    from transformers.masking_utils import AttentionMaskInterface, sdpa_mask

    if getattr(model.config, "_attn_implementation", None) not in ("sdpa", "eager"):
        return False  # flash-attention and friends already skip the mask
    AttentionInterface.register(PACKED_ATTENTION, packed_sdpa)
    AttentionMaskInterface.register(PACKED_ATTENTION, sdpa_mask)  # masks for rows without bounds
    try:
        model.set_attn_implementation(PACKED_ATTENTION)
    except (ValueError, AttributeError, NotImplementedError):
        return False  # an architecture with its own attention code keeps its mask
    return model.config._attn_implementation == PACKED_ATTENTION


def example_bounds(position_ids: torch.Tensor) -> dict[str, Any]:
    """flash-attention's varlen keywords for one packed row: where each example starts and ends."""
    row = position_ids[0]
    starts = (row == 0).nonzero().squeeze(-1)
    cu = torch.cat([starts, starts.new_tensor([row.numel()])]).to(torch.int32)
    longest = int((cu[1:] - cu[:-1]).max())
    return {"cu_seq_lens_q": cu, "cu_seq_lens_k": cu, "max_length_q": longest, "max_length_k": longest}


def answer_loss(model: Any, batch: dict[str, torch.Tensor], norm: float) -> torch.Tensor:
    """Summed cross-entropy of the answer tokens, divided by `norm`.

    For a packed row only the positions that predict an answer token go through the output layer
    (`logits_to_keep`): with a 49k-word vocabulary that layer is a fifth of a small model's work, and
    most tokens of a chat example are prompt. Padded batches use the model's own loss.
    """
    import torch.nn.functional as F

    if batch["input_ids"].shape[0] != 1 or "attention_mask" in batch:
        return model(**batch, use_cache=False, num_items_in_batch=norm).loss
    following = batch["labels"][0, 1:]  # position t predicts the token at t + 1
    keep = (following != -100).nonzero().squeeze(-1)
    inputs = {k: v for k, v in batch.items() if k != "labels"}
    config = getattr(getattr(model, "module", model), "config", None)  # DDP/DeepSpeed wrap the model
    if getattr(config, "_attn_implementation", None) == PACKED_ATTENTION:
        inputs |= example_bounds(batch["position_ids"])
    logits = model(**inputs, logits_to_keep=keep, use_cache=False).logits[0]
    return F.cross_entropy(logits.float(), following[keep], reduction="sum") / norm


def pad(examples: list[dict[str, list[int]]], pad_id: int, device: torch.device) -> dict[str, torch.Tensor]:
    """Right-padded batch with an attention mask (for `packing: false`)."""
    width = max(len(ex["input_ids"]) for ex in examples)
    ids = [ex["input_ids"] + [pad_id] * (width - len(ex["input_ids"])) for ex in examples]
    labels = [[-100] + ex["labels"][1:] + [-100] * (width - len(ex["labels"])) for ex in examples]
    mask = [[1] * len(ex["input_ids"]) + [0] * (width - len(ex["input_ids"])) for ex in examples]
    return {k: torch.tensor(v, dtype=torch.long, device=device)
            for k, v in (("input_ids", ids), ("labels", labels), ("attention_mask", mask))}


class LoRARecipe:
    """One fine-tuning run. Call `setup()`, `fit()`, `save()` in that order."""

    def __init__(self, config: TrainConfig, progress: bool = True):
        from accelerate import Accelerator

        self.config = config
        self.out = Path(config.output_dir)
        self.show_progress = progress
        # Autocast on GPUs: bf16 (QLoRA's compute type), or fp16 with loss scaling on older cards (T4, V100).
        # On a CPU the base is stored in bf16 already and the adapter stays fp32: no autocast.
        cuda = torch.cuda.is_available()
        mixed = ("bf16" if torch.cuda.is_bf16_supported() else "fp16") if cuda else "no"
        # cpu=True without CUDA lets `accelerate launch --multi_gpu --num_processes N` run N gloo processes.
        self.accelerator = Accelerator(mixed_precision=mixed, cpu=not cuda)
        self.device = self.accelerator.device
        self.main = self.accelerator.is_main_process
        kind = self.accelerator.distributed_type.value
        # FSDP shards the model and optimizer over the processes: checkpoints are written by all of them.
        self.sharded, self.deepspeed = kind == "FSDP", kind == "DEEPSPEED"
        self.step = 0
        self.log_path = self.out / "log.jsonl"
        self.finished_already = False
        self._hold = contextlib.ExitStack()  # the output folder's lock, held by the main process

    def print(self, text: str) -> None:
        if self.main:
            from rich.console import Console

            Console(stderr=True).print(text, highlight=False)

    # ------------------------------------------------------------------ setup
    def release(self, error: BaseException | None = None) -> None:
        """Let go of the output folder (its lock); `save()` does it too.

        error: what ended the run early, handed to the folder's claim as if raised inside it.
        """
        if error is None:
            self._hold.close()
        else:
            self._hold.__exit__(type(error), error, error.__traceback__)

    def setup(self, resume: bool = False, overwrite: bool = False) -> None:
        from accelerate.utils import set_seed

        from amauta.models.load import customize_profile
        from amauta.models.resolve import resolve

        cfg = self.config
        set_seed(cfg.seed)

        # 1. Data folder first: cheap, and a wrong path or template should not cost a model load. The profile
        # is the one loading will give when known without the weights; else `_check_template` checks after loading.
        known = resolve(cfg.model).profile
        profile = customize_profile(known, system_prompt=cfg.system_prompt) if known else None
        self._read_dataset(profile, profile.system_prompt if profile else None)

        # 2. The output folder: resume, start fresh, or refuse — decided before anything is written.
        self._claim_output(overwrite)
        if ckpt.finished_run(cfg, self.dataset_hash) and not overwrite:
            self.finished_already = True
            return
        self.resume_from = ckpt.check_run_dir(cfg, self.dataset_hash)
        if resume and self.resume_from is None:
            raise AmautaError(f"{self.out}: no complete checkpoint to resume from; run without --resume to start")
        self._check_distributed()

        # 3. The base model, quantized for QLoRA, then the adapter.
        self.loaded = self._load_base()
        self.model = self._attach_adapter(self.loaded)
        self._check_template()

        # 4. Tokenize: conversations with labels on the assistant's replies only, completion records packed
        #    end to end into blocks with labels on every token. The list's order is fixed by the data, so
        #    the step's indices (`batch_indices`) are all a checkpoint needs to resume one mixed run exactly.
        self.train_examples = self._examples("train", cfg.max_examples)
        self.val_examples = self._examples("val", cfg.eval_max_examples)
        world = self.accelerator.num_processes
        if len(self.train_examples) < max(cfg.batch_size, world):
            raise AmautaError(f"{cfg.dataset}/train.jsonl: {len(self.train_examples)} usable examples, fewer than "
                              f"batch_size {cfg.batch_size}; lower batch_size or add data")
        self.steps_per_epoch = len(self.train_examples) // cfg.batch_size  # the last partial batch is dropped
        self.total_steps = cfg.max_steps or max(1, math.ceil(cfg.epochs * self.steps_per_epoch))
        self.micro = self._initial_micro_batch()
        if cfg.guard.enabled:
            self._setup_guard()
        self._setup_early_stopping()

        # 5. Optimizer and schedule, then hand model and optimizer to accelerate (DDP wrap, devices).
        self.optimizer = self._build_optimizer()
        from transformers import get_scheduler

        warmup = math.ceil(cfg.warmup_ratio * self.total_steps)
        self.scheduler = get_scheduler(cfg.scheduler, self.optimizer, num_warmup_steps=warmup,
                                       num_training_steps=self.total_steps)
        self.model, self.optimizer = self.accelerator.prepare(self.model, self.optimizer)

        # 6. Resume, or start a new run folder.
        self.tokens_total, self.elapsed_before, self.guard_baseline = 0, 0.0, None
        self.last_val: float | None = None
        self.early = {"best_step": None, "best_score": None, "bad_evals": 0, "evaluations": 0, "stopped": False}
        if self.resume_from is not None:
            self._resume()
        elif self.main:
            self.folder.start(cfg, dataset_sha256=self.dataset_hash)
            self.log_path.unlink(missing_ok=True)  # rows of this same run killed before its first checkpoint
        if self.main:
            atomic_write_text(self.out / "config.yaml", ckpt.saved_config_text(cfg))
        self.accelerator.wait_for_everyone()

    def _check_distributed(self) -> None:
        """Refuse, before the model loads, what a multi-process launch cannot do (one line each)."""
        import os

        cfg, world = self.config, self.accelerator.num_processes
        if self.deepspeed and self.resume_from is not None:
            raise ckpt.deepspeed_resume_refusal(self.resume_from)
        if os.environ.get("ACCELERATE_USE_FSDP", "false").lower() == "true" and not self.sharded and world > 1:
            # accelerate 1.15 turns FSDP on only for accelerator devices: CPU processes train as DDP.
            self.print(f"[yellow]FSDP asked for, but accelerate runs {world} {self.device.type} processes as DDP "
                       "(FSDP needs GPUs); checkpoints are DDP checkpoints[/]")
        if not self.sharded:
            return
        if not self.accelerator.is_fsdp2:
            raise AmautaError("fsdp_version: 1 is not supported (its flat parameters hold no whole adapter weight to "
                              "save); set fsdp_version: 2 in the accelerate config (examples/accelerate/fsdp.yaml)")
        if cfg.finetuning == "full":
            raise AmautaError("finetuning: full is not supported under FSDP yet (its checkpoints save the adapter); "
                              "use LoRA, or DDP/DeepSpeed for full fine-tuning")
        if cfg.batch_size % world:
            raise AmautaError(f"batch_size: {cfg.batch_size} does not split evenly over {world} FSDP processes (each "
                              f"must run as many forward passes); use a multiple of {world}")

    def _read_dataset(self, profile: Any, system: str | None) -> None:
        """Set `self.dataset` and `self.dataset_hash` (the hash that ties checkpoints to their data)."""
        from amauta.data.dataset import read_dataset_dir

        cfg = self.config
        self.dataset = read_dataset_dir(cfg.dataset, template=profile.template if profile else None, model=cfg.model,
                                        system_prompt=system)
        self.dataset_hash = sha256_file(Path(cfg.dataset) / "train.jsonl")

    def _claim_output(self, overwrite: bool) -> None:
        """Lock the run folder (main process), tidy a killed run's temporaries, refuse a foreign folder;
        with --overwrite, empty this stage's own folder (never one holding the dataset)."""
        from amauta.core.outdir import claim, inspect

        cfg = self.config
        if self.main:
            self.folder = self._hold.enter_context(claim(self.out, "train", overwrite=overwrite, legacy=ckpt.is_legacy_run,
                                                         owned=ckpt.RUN_FILES, subfolders=("checkpoints",)))
            if overwrite and not self.folder.is_new:
                self.folder.check_replaceable([cfg.dataset])
                self.folder.clear()
        self.accelerator.wait_for_everyone()
        if not self.main:
            inspect(self.out, "train", legacy=ckpt.is_legacy_run)

    def _examples(self, split: str, limit: int | None) -> list[dict[str, list[int]]]:
        """A split's tokenized examples: each conversation alone (labels on the replies), then the split's
        completion records tokenized as raw text and packed end to end into blocks of `max_length` tokens
        (labels on every token). `limit` keeps the split's first records."""
        from amauta.data.tokenize import pack_documents, tokenize_text

        records = getattr(self.dataset, split)[:limit]
        examples = self._tokenize([r.messages for r in records if not r.is_completion], split)
        documents = [tokenize_text(self.loaded.tokenizer, r.text) for r in records if r.is_completion]
        if documents:
            blocks = pack_documents(documents, self.config.max_length)
            self.print(f"{split}: {len(documents)} completion records → {len(blocks)} blocks of up to "
                       f"{self.config.max_length} tokens")
            examples += blocks
        if split == "train" and not examples:
            raise AmautaError(f"{self.config.dataset}/train.jsonl: no example has answer tokens within max_length "
                              f"{self.config.max_length}; raise max_length")
        return examples

    def _load_base(self):
        from amauta.models.load import load_model

        cfg = self.config
        device = "cuda" if self.device.type == "cuda" else "cpu"
        if cfg.quantization.mode != "none" and device != "cuda":
            self.print(f"[yellow]{cfg.quantization.mode} base on a CPU: bitsandbytes works there but slowly; "
                       "QLoRA is meant for a CUDA GPU[/]")
        # `auto` is load_model's choice: bf16 on GPUs and bf16-capable CPUs (tiny test models stay fp32).
        # Full fine-tuning updates the weights themselves: they stay float32 (bf16 would round small updates
        # away); GPUs still compute in bf16 under autocast.
        dtype = "float32" if cfg.finetuning == "full" and cfg.dtype == "auto" else cfg.dtype
        loaded = load_model(cfg.model, quantization=cfg.quantization.mode, dtype=dtype, device=device,
                            system_prompt=cfg.system_prompt)
        self.print(f"loaded {cfg.model} ({cfg.quantization.mode if cfg.quantization.mode != 'none' else loaded.model.dtype}) "
                   f"on {device}")
        if cfg.quantization.mode == "4bit":
            qc = getattr(loaded.model.config, "quantization_config", None)
            got = (getattr(qc, "bnb_4bit_quant_type", None), getattr(qc, "bnb_4bit_use_double_quant", None))
            want = (cfg.quantization.quant_type, cfg.quantization.double_quant)
            if qc is not None and got != want:
                self.print(f"[yellow]warning:[/] the base loaded as 4-bit {got[0]} double_quant={got[1]}, "
                           f"the config asks for {want[0]} double_quant={want[1]}")
        return loaded

    def _attach_adapter(self, loaded):
        from peft import LoraConfig, get_peft_model, prepare_model_for_kbit_training

        cfg = self.config
        model = loaded.model
        model.config.use_cache = False  # a cache would also disable the padding-free mask detection
        gc = cfg.gradient_checkpointing if cfg.gradient_checkpointing != "auto" else self.device.type == "cuda"
        self.gradient_checkpointing = bool(gc)
        if cfg.finetuning == "full":
            return self._prepare_full(model)
        targets = resolve_targets(model, loaded.profile, cfg.lora.targets)
        if cfg.quantization.mode != "none":
            # Norms and embeddings to fp32, input grads enabled: the QLoRA paper's recipe.
            model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=self.gradient_checkpointing,
                                                    gradient_checkpointing_kwargs={"use_reentrant": False})
        elif self.gradient_checkpointing:
            model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
            model.enable_input_require_grads()
        lora = LoraConfig(r=cfg.lora.r, lora_alpha=cfg.lora.alpha, lora_dropout=cfg.lora.dropout,
                          target_modules=targets["target_modules"],
                          target_parameters=targets["target_parameters"] or None,
                          bias=cfg.lora.bias, task_type="CAUSAL_LM", **modules_to_save_settings(model, cfg.lora.modules_to_save))
        model = get_peft_model(model, lora)  # adapter weights stay fp32 over a bf16/4-bit base
        low = {str(p.dtype) for name, p in model.named_parameters()
               if p.requires_grad and p.dtype != torch.float32 and "modules_to_save" in name}
        if low:  # peft keeps a module_to_save's dtype: small updates to bf16 weights round away
            self.print(f"[yellow]lora.modules_to_save train in {', '.join(low)} (the base's dtype); set dtype: float32 "
                       "for learning rates below ~1e-3[/]")
        if cfg.packing and use_packed_attention(model):
            self.print("attention: causal SDPA per packed example (no block-diagonal mask)")
        model.train()
        trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
        total = sum(p.numel() for p in model.parameters())
        self.print(f"LoRA r={cfg.lora.r} alpha={cfg.lora.alpha} on {', '.join(targets['target_modules'] + targets['target_parameters'])}: "
                   f"{trainable:,} trainable parameters ({100 * trainable / max(total, 1):.2f}% of {total:,})")
        return model

    def _prepare_full(self, model):
        """Full fine-tuning: every weight trains (no adapter), in the float32 `_load_base` gave it."""
        cfg = self.config
        if self.gradient_checkpointing:
            model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        model.requires_grad_(True)
        if cfg.packing and use_packed_attention(model):
            self.print("attention: causal SDPA per packed example (no block-diagonal mask)")
        model.train()
        total = sum(p.numel() for p in model.parameters())
        self.print(f"full fine-tuning: {total:,} trainable parameters ({model.dtype})")
        return model

    def _check_template(self) -> None:
        """For models outside the registry the template is known only now: check the dataset's (and its
        system prompt: token lengths and the length filter were measured with both)."""
        from amauta.data.dataset import check_system_prompt

        template = self.dataset.manifest.get("template")
        profile = self.loaded.profile
        if template and template != profile.template:
            raise AmautaError(f"{self.config.dataset}/manifest.json: prepared for template '{template}' but "
                              f"{profile.name} uses '{profile.template}'; rerun `amauta data prepare` for this model")
        check_system_prompt(self.dataset.manifest, profile.system_prompt, self.config.dataset)

    def _tokenize(self, conversations: list[list[dict[str, str]]], split: str) -> list[dict[str, list[int]]]:
        from amauta.data.tokenize import tokenize_messages

        examples, skipped = [], 0
        for messages in conversations:
            enc = tokenize_messages(self.loaded.tokenizer, self.loaded.profile, messages, max_length=self.config.max_length)
            ids, labels = list(map(int, enc["input_ids"])), list(map(int, enc["labels"]))
            if sum(1 for t in labels[1:] if t != -100) == 0:
                skipped += 1  # nothing to learn (the answer was cut by max_length)
                continue
            examples.append({"input_ids": ids, "labels": labels})
        if skipped:
            self.print(f"[yellow]{split}: skipped {skipped} examples with no answer tokens left after "
                       f"max_length {self.config.max_length}[/]")
        return examples

    def _initial_micro_batch(self) -> int:
        cfg = self.config
        if cfg.micro_batch_size != "auto":
            return min(cfg.micro_batch_size, cfg.batch_size)
        if self.device.type == "cuda":
            return cfg.batch_size  # start big; an out-of-memory error halves it (see _step)
        mean = sum(map(self._example_length, self.train_examples)) / len(self.train_examples)
        return max(1, min(cfg.batch_size, int(CPU_TOKENS_PER_MICRO_BATCH // mean)))

    @staticmethod
    def _example_length(example: dict[str, list[int]]) -> int:
        """Tokens of one tokenized example (what `micro_batch_size: auto` packs by)."""
        return len(example["input_ids"])

    def _build_optimizer(self):
        cfg = self.config.optimizer
        params = [p for p in self.model.parameters() if p.requires_grad]
        kwargs = dict(lr=cfg.lr, weight_decay=cfg.weight_decay, betas=cfg.betas, eps=cfg.eps)
        if cfg.name != "adamw" and self.device.type == "cuda":
            import bitsandbytes as bnb

            cls = bnb.optim.PagedAdamW8bit if cfg.name == "paged_adamw_8bit" else bnb.optim.AdamW8bit
            return cls(params, **kwargs)
        if cfg.name != "adamw":
            self.print(f"optimizer {cfg.name} needs CUDA; using torch AdamW on {self.device.type}")
        return torch.optim.AdamW(params, **kwargs)

    def _resume(self) -> None:
        if self.sharded:
            state = ckpt.load_sharded_checkpoint(self.accelerator, self.resume_from, scheduler=self.scheduler)
        else:
            state = ckpt.load_checkpoint(self.resume_from, adapter_model=self.accelerator.unwrap_model(self.model),
                                         optimizer=self.optimizer, scheduler=self.scheduler)
        self.step = state["step"]
        self.tokens_total = state.get("tokens_total", 0)
        self.elapsed_before = state.get("elapsed_s", 0.0)
        self.guard_baseline = state.get("guard_baseline")
        self.last_val = state.get("val_loss")
        self.early = state.get("early_stopping") or self.early
        if self.config.micro_batch_size == "auto":
            self.micro = min(self.micro, state.get("micro_batch_size", self.micro))
        if self.main:
            ckpt.truncate_log(self.log_path, self.step)
        self.print(f"resuming {self.out} from {self.resume_from.name} (step {self.step} of {self.total_steps})")

    # ------------------------------------------------------------------ fit
    def batch_indices(self, step: int) -> list[int]:
        """Example indices of optimizer step `step` (0-based) for this process.

        The order is a fixed permutation per epoch (seed + epoch), so any step's data is known without
        replaying the ones before it: that is the whole data position a checkpoint needs.
        """
        epoch, offset = divmod(step, self.steps_per_epoch)
        generator = torch.Generator().manual_seed(self.config.seed + epoch)
        order = torch.randperm(len(self.train_examples), generator=generator).tolist()
        chunk = order[offset * self.config.batch_size:(offset + 1) * self.config.batch_size]
        return chunk[self.accelerator.process_index::self.accelerator.num_processes]

    def _collate(self, examples):
        if self.config.packing:
            return pack(examples, self.device)
        return pad(examples, self.loaded.tokenizer.pad_token_id, self.device)

    def _step(self, indices: list[int]) -> dict[str, float]:
        """One optimizer step over `indices`: accumulate micro-batches, clip, step. Returns its numbers."""
        acc, cfg = self.accelerator, self.config
        examples = [self.train_examples[i] for i in indices]
        # Normalise by the answer tokens of the whole step (all processes), so the loss is the same token
        # average however the step is cut into micro-batches or shared among processes.
        local_tokens = sum(sum(1 for t in ex["labels"][1:] if t != -100) for ex in examples)
        global_tokens = acc.reduce(torch.tensor(float(local_tokens), device=self.device), reduction="sum").item()
        norm = global_tokens / acc.num_processes  # DDP averages gradients over processes
        while True:
            try:
                micro_batches = [examples[i:i + self.micro] for i in range(0, len(examples), self.micro)]
                loss_sum = 0.0
                for i, micro in enumerate(micro_batches):
                    last = i == len(micro_batches) - 1
                    with contextlib.nullcontext() if last else acc.no_sync(self.model):
                        with acc.autocast():
                            loss = answer_loss(self.model, self._collate(micro), norm)
                        acc.backward(loss)
                    loss_sum += loss.detach().float().item()
                break
            except torch.cuda.OutOfMemoryError:
                self.optimizer.zero_grad(set_to_none=True)
                loss = None
                torch.cuda.empty_cache()
                if self.micro == 1:
                    raise AmautaError(f"out of GPU memory with micro_batch_size 1 at max_length {cfg.max_length}; "
                                      "lower max_length or lora.r, or use quantization.mode 4bit") from None
                self.micro //= 2
                self.print(f"[yellow]out of GPU memory: micro_batch_size → {self.micro} "
                           f"(gradient accumulation keeps the batch at {cfg.batch_size})[/]")
        row = self._apply_update(loss_sum, sum(len(ex["input_ids"]) for ex in examples))
        return {**row, "answer_tokens": int(global_tokens)}

    def _apply_update(self, loss_sum: float, tokens: int) -> dict[str, Any]:
        """Clip, step the optimizer and the schedule, clear the gradients: the step's log row (loss averaged
        and tokens summed over processes; lr is the rate this step used)."""
        acc = self.accelerator
        params = [p for p in self.model.parameters() if p.requires_grad]
        grad_norm = acc.clip_grad_norm_(params, self.config.optimizer.max_grad_norm or float("inf"))
        lr = self.scheduler.get_last_lr()[0]
        self.optimizer.step()
        self.scheduler.step()
        self.optimizer.zero_grad(set_to_none=True)
        loss = acc.reduce(torch.tensor(loss_sum, device=self.device), reduction="mean").item()
        total = acc.reduce(torch.tensor(float(tokens), device=self.device), reduction="sum").item()
        return {"loss": loss, "lr": lr, "grad_norm": float(grad_norm), "tokens": int(total)}

    @torch.no_grad()
    def evaluate(self) -> float | None:
        """Token-averaged loss on the validation examples (None without any)."""
        if not self.val_examples:
            return None
        acc = self.accelerator
        self.model.eval()
        mine = self.val_examples[acc.process_index::acc.num_processes]
        batches = [mine[i:i + self.micro] for i in range(0, len(mine), self.micro)]
        if self.sharded:  # FSDP gathers weights inside every forward: all processes must run as many
            most = math.ceil(math.ceil(len(self.val_examples) / acc.num_processes) / self.micro)
            batches += [[]] * (most - len(batches))
        total, count = 0.0, 0
        for micro in batches:
            with acc.autocast():
                loss = answer_loss(self.model, self._collate(micro or self.val_examples[:1]), 1.0).float().item()
            total += loss if micro else 0.0  # a filler pass keeps the processes in step and counts nothing
            count += sum(sum(1 for t in ex["labels"][1:] if t != -100) for ex in micro)
        self.model.train()
        sums = acc.reduce(torch.tensor([total, float(count)], device=self.device), reduction="sum")
        return (sums[0] / sums[1].clamp(min=1)).item()

    def fit(self) -> None:
        from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

        cfg = self.config
        if self.step >= self.total_steps or self.early["stopped"]:
            self.print(f"{self.out}: already trained to step {self.step}; writing the outputs again")
            return
        if self.step == 0 and cfg.guard.enabled:
            self.guard_baseline = self._guard_score()
            self._log({"step": 0, "guard_accuracy": self.guard_baseline})
        self.print(f"training {self.total_steps} steps ({self.steps_per_epoch} per epoch), batch {cfg.batch_size} "
                   f"= {self.accelerator.num_processes} process(es) × micro-batches of {self.micro}")
        columns = (TextColumn("[bold]train"), BarColumn(), TextColumn("{task.completed}/{task.total}"),
                   TextColumn("{task.fields[info]}"), TimeElapsedColumn(), TextColumn("ETA"), TimeRemainingColumn())
        bar = Progress(*columns, disable=not (self.main and self.show_progress), transient=False)
        started = time.perf_counter()
        with bar:
            task = bar.add_task("train", total=self.total_steps, completed=self.step, info="")
            while self.step < self.total_steps:
                t0 = time.perf_counter()
                numbers = self._step(self.batch_indices(self.step))
                self.step += 1
                seconds = time.perf_counter() - t0
                self.tokens_total += numbers["tokens"]
                row = {"step": self.step, "epoch": round(self.step / self.steps_per_epoch, 4), "loss": numbers["loss"],
                       "lr": numbers["lr"], "grad_norm": numbers["grad_norm"],
                       "tokens": numbers["tokens"], "answer_tokens": numbers["answer_tokens"],
                       "tokens_total": self.tokens_total, "tokens_per_s": round(numbers["tokens"] / seconds, 1),
                       "micro_batch_size": self.micro, **numbers.get("metrics", {}),
                       "elapsed_s": round(self.elapsed_before + time.perf_counter() - started, 2)}
                if self.step % cfg.log_every == 0 or self.step == self.total_steps:
                    self._log(row)
                bar.update(task, completed=self.step,
                           info=f"loss {numbers['loss']:.4f}  {row['tokens_per_s']:,.0f} tok/s")
                stop = False
                if self.step % cfg.eval_every == 0 or self.step == self.total_steps:
                    self.last_val = self.evaluate()
                    if self.last_val is not None:
                        self._log({"step": self.step, "val_loss": self.last_val})
                if cfg.guard.enabled and self.step % cfg.guard.every == 0:
                    stop = self._guard_check()
                early = cfg.early_stopping
                if early.enabled and (self.step % early.every == 0 or self.step == self.total_steps):
                    stop = self._early_stopping_check() or stop
                if self.step % cfg.checkpoint_every == 0 or self.step == self.total_steps or stop:
                    self._checkpoint(self.elapsed_before + time.perf_counter() - started)
                if stop:
                    break
        self.elapsed_before += time.perf_counter() - started

    def _save_full_model(self, model: Any) -> None:
        """model/: the whole fine-tuned model as a transformers folder (safetensors, tokenizer, and the
        profile it talks with), which `load_model(RUN)`, chat and export read."""
        from amauta.core.files import atomic_dir
        from amauta.models.load import model_info
        from amauta.models.types import MODEL_INFO_FILE

        model.config.use_cache = True  # training turned the KV cache off; whoever generates with model/ wants it
        with atomic_dir(self.out / "model", overwrite=True) as tmp:
            model.save_pretrained(tmp, safe_serialization=True)
            self.loaded.tokenizer.save_pretrained(tmp)
            atomic_write_json(tmp / MODEL_INFO_FILE, model_info(self.loaded.profile, self.loaded.tokenizer))

    def _log(self, row: dict[str, Any]) -> None:
        if self.main:
            append_jsonl(self.log_path, row)

    def _checkpoint(self, elapsed: float) -> None:
        cfg = self.config
        if self.sharded:
            ckpt.save_sharded_checkpoint(self.accelerator, self.out, self.step, model=self.model,
                                         scheduler=self.scheduler, state=self._checkpoint_state(elapsed),
                                         keep=cfg.keep_checkpoints)
            return
        if self.main:
            ckpt.save_checkpoint(self.out, self.step, adapter_model=self.accelerator.unwrap_model(self.model),
                                 optimizer=None if self.deepspeed else self.optimizer, scheduler=self.scheduler,
                                 state=self._checkpoint_state(elapsed), keep=cfg.keep_checkpoints)
        self.accelerator.wait_for_everyone()

    def _checkpoint_state(self, elapsed: float) -> dict[str, Any]:
        """The JSON facts of a checkpoint (state.json): what ties it to its config and data, and the run's numbers."""
        cfg = self.config
        return {"fingerprint": fingerprint(cfg), "fingerprint_fields": fingerprint_fields(cfg),
                "dataset_sha256": self.dataset_hash, "total_steps": self.total_steps,
                "micro_batch_size": self.micro, "tokens_total": self.tokens_total, "elapsed_s": round(elapsed, 2),
                "guard_baseline": self.guard_baseline, "val_loss": self.last_val, "early_stopping": self.early}

    # ------------------------------------------------------------------ forgetting guard
    def _setup_guard(self) -> None:
        cfg = self.config.guard
        if not cfg.items:
            raise AmautaError("guard.items: the forgetting guard needs Belebele items (a file, folder or hub id)")
        # train may use evaluate (the guard); imported here so runs without a guard never load it.
        from amauta.evaluate import belebele

        self._belebele = belebele
        items = list(belebele.load_items(cfg.items))
        self.guard_items = items[: cfg.sample]

    def _guard_score(self) -> float:
        from amauta.models.types import LoadedModel

        model = self.accelerator.unwrap_model(self.model)
        model.eval()
        loaded = LoadedModel(model=model, tokenizer=self.loaded.tokenizer, profile=self.loaded.profile,
                             source=self.loaded.source, extra=self.loaded.extra)
        summary = self._belebele.score(loaded, self.guard_items, formulation=self.config.guard.formulation)
        model.train()
        return float(summary["acc"])

    def _guard_check(self) -> bool:
        """Score the sample; returns True when the run should stop."""
        cfg = self.config.guard
        score = self._guard_score()
        self._log({"step": self.step, "guard_accuracy": score})
        baseline = self.guard_baseline if self.guard_baseline is not None else score
        if score < baseline - cfg.margin:
            what = "stopping (the last checkpoint keeps this step)" if cfg.action == "stop" else "continuing"
            self.print(f"[bold yellow]forgetting guard:[/] Belebele accuracy {score:.3f} fell more than "
                       f"{cfg.margin:.3f} below the start ({baseline:.3f}) at step {self.step}; {what}")
            return cfg.action == "stop"
        return False

    # ------------------------------------------------------------------ early stopping
    def _setup_early_stopping(self) -> None:
        """Read the exam's split once (the `mc_*` metrics score it in memory at every evaluation)."""
        cfg = self.config.early_stopping
        self.early_items: list[Any] = []
        if not cfg.enabled or cfg.metric == "val_loss":
            if cfg.enabled and not self.val_examples:
                raise AmautaError(f"{self.config.dataset}/val.jsonl: early_stopping on val_loss needs validation "
                                  "records; add some or use metric mc_acc with an exam")
            return
        # train may use evaluate (as the guard does); imported here so plain runs never load it.
        from amauta.data.exam_items import read_exam

        self.early_items = read_exam(cfg.exam, cfg.split)[: cfg.limit]
        if not self.early_items:
            raise AmautaError(f"{cfg.exam}: no items in split '{cfg.split}' for early stopping; "
                              "add some or set early_stopping.split")

    def _early_score(self) -> float:
        """The early-stopping metric of the weights as they are now (in memory, nothing written)."""
        cfg = self.config.early_stopping
        if cfg.metric == "val_loss":
            return self.last_val if self.step % self.config.eval_every == 0 and self.last_val is not None \
                else self.evaluate()
        from amauta.evaluate.exam import score_multiple_choice
        from amauta.models.types import LoadedModel

        model = self.accelerator.unwrap_model(self.model)
        model.eval()
        loaded = LoadedModel(model=model, tokenizer=self.loaded.tokenizer, profile=self.loaded.profile,
                             source=self.loaded.source, extra=self.loaded.extra)
        metrics = score_multiple_choice(loaded, self.early_items, prompt_format=cfg.prompt_format)
        model.train()
        return float(metrics["acc" if cfg.metric == "mc_acc" else "acc_norm"])

    def _early_stopping_check(self) -> bool:
        """Score, keep the weights in best/ when they beat the best so far; True when patience ran out."""
        cfg, early = self.config.early_stopping, self.early
        score = self._early_score()
        best = early["best_score"]
        lower_is_better = cfg.metric == "val_loss"
        improved = best is None or (score < best - cfg.min_delta if lower_is_better else score > best + cfg.min_delta)
        early["evaluations"] += 1
        if improved:
            early.update(best_step=self.step, best_score=score, bad_evals=0)
            self._save_best()
        else:
            early["bad_evals"] += 1
        self._log({"step": self.step, "early_stopping_metric": cfg.metric, "early_stopping_score": score,
                   "best_step": early["best_step"], "best_score": early["best_score"]})
        if early["bad_evals"] >= cfg.patience and self.step < self.total_steps:
            early["stopped"] = True
            self.print(f"[bold]early stopping:[/] {cfg.metric} {score:.4f} has not beaten {early['best_score']:.4f} "
                       f"(step {early['best_step']}) in {cfg.patience} evaluations; stopping at step {self.step}")
        return early["stopped"]

    def _save_best(self) -> None:
        """best/: the trained weights of the best evaluation so far, with its step (written atomically)."""
        from amauta.core.files import atomic_dir

        if self.main:
            with atomic_dir(self.out / "best", overwrite=True) as tmp:
                ckpt.save_weights(self.accelerator.unwrap_model(self.model), tmp)
                atomic_write_json(tmp / "state.json", {"step": self.early["best_step"],
                                                       "score": self.early["best_score"],
                                                       "metric": self.config.early_stopping.metric})
        self.accelerator.wait_for_everyone()

    def _restore_best(self) -> None:
        """Put best/'s weights back into the model before the final save (when they are not the last ones)."""
        import json

        best_step = self.early["best_step"]
        if not self.config.early_stopping.enabled or best_step is None or best_step == self.step:
            return
        folder = self.out / "best"
        saved = json.loads((folder / "state.json").read_text()) if (folder / "state.json").is_file() else {}
        if saved.get("step") != best_step:
            raise AmautaError(f"{folder}: holds step {saved.get('step')}, not the best step {best_step} this run "
                              "recorded; resume from an earlier checkpoint or start a new output_dir")
        ckpt.load_weights(self.accelerator.unwrap_model(self.model), folder)
        self.print(f"restored the best weights: step {best_step} ({self.config.early_stopping.metric} "
                   f"{self.early['best_score']:.4f})")

    # ------------------------------------------------------------------ save
    def save(self) -> Path:
        """Write adapter/ (model/ for full fine-tuning), loss.png, summary.json and manifest.json; return the
        run folder. With early stopping the weights saved are the best evaluation's."""
        from amauta.core.files import atomic_dir, read_jsonl
        from amauta.train.plots import plot_loss

        self.accelerator.wait_for_everyone()
        # Under FSDP the adapter is gathered from every process's shards (collective, so before the split).
        gathered = {"state_dict": ckpt.gathered_trainable_state(self.model)} if self.sharded else {}
        if not self.main:
            return self.out
        self._restore_best()
        model = self.accelerator.unwrap_model(self.model)
        if self.config.finetuning == "full":
            self._save_full_model(model)
        else:
            with atomic_dir(self.out / "adapter", overwrite=True) as tmp:
                model.save_pretrained(tmp, **gathered)
                self.loaded.tokenizer.save_pretrained(tmp)
        rows = list(read_jsonl(self.log_path, tolerate_torn_tail=True)) if self.log_path.is_file() else []
        train_rows = [r for r in rows if "loss" in r]
        val_rows = [r for r in rows if "val_loss" in r]
        if train_rows:
            plot_loss(self.log_path, self.out / "loss.png", title=f"{self.config.model} · {self.out.name}")
        summary = {
            "steps": self.step, "total_steps": self.total_steps, "epochs": round(self.step / self.steps_per_epoch, 3),
            "train_examples": len(self.train_examples), "val_examples": len(self.val_examples),
            "final_loss": train_rows[-1]["loss"] if train_rows else None,
            "final_val_loss": val_rows[-1]["val_loss"] if val_rows else None,
            "tokens_total": self.tokens_total, "train_seconds": round(self.elapsed_before, 2),
            "tokens_per_s": round(self.tokens_total / self.elapsed_before, 1) if self.elapsed_before else None,
            "micro_batch_size": self.micro, "device": str(self.device), "processes": self.accelerator.num_processes,
            "finetuning": self.config.finetuning,
            # An early-stopped run is finished (a rerun has nothing to do); a guard-stopped one is not.
            "completed": self.step >= self.total_steps or self.early["stopped"],
        }
        if self.config.early_stopping.enabled:
            summary["early_stopping"] = {"metric": self.config.early_stopping.metric, **self.early}
        atomic_write_json(self.out / "summary.json", summary)
        write_manifest(self.out, "train", self.config,
                       inputs=[Path(self.config.dataset) / "train.jsonl", Path(self.config.dataset) / "val.jsonl"],
                       base_model=str(self.loaded.source), profile=self.loaded.profile.name, summary=summary,
                       dataset_manifest=self.dataset.manifest, dataset_sha256=self.dataset_hash,
                       complete=True)
        self.release()
        self.print(f"[green]done:[/] {self.out} (final loss {summary['final_loss']}, val {summary['final_val_loss']})")
        return self.out
