"""Preference tuning (`amauta train --method dpo|orpo|kto`): Amauta's loop, TRL's losses.

The run is the SFT recipe's (`recipe.LoRARecipe`): the same run folder and claim rules, presets, LoRA /
QLoRA, optimizer and schedule, progress bar, log.jsonl, loss.png, and atomic checkpoints. What changes
is what one optimizer step computes: the examples are (prompt, chosen, rejected) pairs, or KTO's
(prompt, completion, desirable?) examples, and the loss is TRL's.

Why Amauta's loop calls TRL rather than TRL's trainer running the loop: exact crash-resume. The loop's
whole state is the adapter, optimizer, scheduler, RNG states and the step number (each step's data is a
pure function of seed and step, see `LoRARecipe.batch_indices`), all in Amauta's atomic checkpoints,
which SFT's kill -9 test already covers. `Trainer`'s own resume would bring its sampler, its checkpoint
layout and the PEFT reload problems `checkpoint.py` describes. TRL keeps its loss code inside its
trainers (`DPOTrainer.compute_loss`, `KTOTrainer.compute_loss`, `ORPOTrainer.get_batch_loss_metrics`), so
one trainer is built around our model, only to be called: its batches come from TRL's own collators, and
its `train()` never runs. It holds no state a step depends on (its metrics are read and cleared).

The reference model of DPO and KTO is the base with the adapter switched off (TRL's way for a fresh LoRA
adapter), so no second copy of the model is loaded; it costs one forward pass without gradients per step.
For DPO that pass can be made once per pair instead (`preference.precompute_ref`, on by default where a pair
is seen more than once): TRL's `compute_ref_log_probs` scores every pair before the first step, the numbers
go to the run folder's ref_logps.json (written atomically as they come, so a killed run continues where the
file stops), and TRL's loss reads them from the batch as it does with its own `precompute_ref_log_probs`.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

from amauta.core.errors import AmautaError
from amauta.core.files import atomic_write_json, sha256_file

# The run folder's cache of the reference's log-probs (preference.precompute_ref), and how often a partial
# one is saved while it is being computed.
REF_LOGPS_FILE = "ref_logps.json"
REF_SAVE_SECONDS = 30.0

# What log.jsonl gets from TRL's metrics, under Amauta's names (TRL → log key).
METRICS = {"rewards/chosen": "reward_chosen", "rewards/rejected": "reward_rejected",
           "rewards/margins": "reward_margin", "rewards/accuracies": "reward_accuracy",
           "logps/chosen": "logp_chosen", "logps/rejected": "logp_rejected", "kl": "kl",
           "nll_loss": "nll_loss", "log_odds_ratio": "log_odds_ratio"}


def common_prefix(a: list[int], b: list[int]) -> int:
    """How many leading tokens two id lists share."""
    n = 0
    for x, y in zip(a, b, strict=False):
        if x != y:
            break
        n += 1
    return n


class PreferenceMixin:
    """What a DPO, ORPO or KTO run changes in `LoRARecipe`: preference examples and TRL's loss per step.

    A mixin, so that this module needs nothing from recipe.py (which builds `PreferenceMixin + LoRARecipe`
    in `recipe_class`): the modules of a room import each other one way only.
    """

    # ------------------------------------------------------------------ data
    def _read_dataset(self, profile: Any, system: str | None) -> None:
        from amauta.data.preferences import Preference, Unpaired, read_preference_dir

        cfg = self.config
        self.dataset = read_preference_dir(cfg.dataset)
        self.dataset_hash = sha256_file(Path(cfg.dataset) / "train.jsonl")
        if cfg.method == "kto":  # pairs become two unpaired examples, as TRL's `unpair_preference_dataset` does
            for split in ("train", "val"):
                unpaired = []
                for ex in getattr(self.dataset, split):
                    if isinstance(ex, Preference):
                        unpaired += [Unpaired(f"{ex.id}-chosen", ex.prompt, ex.chosen, True, ex.source),
                                     Unpaired(f"{ex.id}-rejected", ex.prompt, ex.rejected, False, ex.source)]
                    else:
                        unpaired.append(ex)
                setattr(self.dataset, split, unpaired)
        else:
            for split in ("train", "val"):
                for number, ex in enumerate(getattr(self.dataset, split), start=1):
                    if isinstance(ex, Unpaired):
                        raise AmautaError(f"{cfg.dataset}/{split}.jsonl:{number}: an unpaired (KTO) example, but "
                                          f"{cfg.method.upper()} needs chosen and rejected; use method: kto")

    def _check_template(self) -> None:
        """Preference folders hold text, not token lengths: they are rendered with this model's template here."""

    def _examples(self, split: str, limit: int | None) -> list[dict[str, Any]]:
        """A split's first `limit` preference examples, tokenized (preference folders hold no completion records)."""
        return self._tokenize(list(getattr(self.dataset, split))[:limit], split)

    def _tokenize(self, examples: list[Any], split: str) -> list[dict[str, Any]]:
        from amauta.data.preferences import Preference

        out, skipped = [], 0
        for ex in examples:
            item = self._pair_tokens(ex) if isinstance(ex, Preference) else self._unpaired_tokens(ex)
            if item is None:
                skipped += 1
            else:
                out.append(item)
        if skipped:
            self.print(f"[yellow]{split}: skipped {skipped} examples with no reply tokens left after "
                       f"max_length {self.config.max_length}[/]")
        if split == "train" and not out:
            raise AmautaError(f"{self.config.dataset}/train.jsonl: no example has reply tokens within max_length "
                              f"{self.config.max_length}; raise max_length")
        return out

    def _encode(self, prompt: list[dict[str, str]], reply: str) -> tuple[list[int], int]:
        """Token ids of prompt + reply in the model's template, and where the reply starts."""
        from amauta.data.tokenize import tokenize_messages

        enc = tokenize_messages(self.loaded.tokenizer, self.loaded.profile,
                                [*prompt, {"role": "assistant", "content": reply}], max_length=self.config.max_length)
        ids = list(map(int, enc["input_ids"]))
        start = next((i for i, label in enumerate(enc["labels"]) if label != -100), len(ids))
        return ids, start

    def _pair_tokens(self, ex: Any) -> dict[str, Any] | None:
        chosen, start_c = self._encode(ex.prompt, ex.chosen)
        rejected, start_r = self._encode(ex.prompt, ex.rejected)
        n = common_prefix(chosen[:start_c], rejected[:start_r])
        item = {"prompt_ids": chosen[:n], "chosen_ids": chosen[n:], "rejected_ids": rejected[n:]}
        if not item["chosen_ids"] or not item["rejected_ids"]:
            return None
        item["length"] = len(chosen) + len(rejected)
        return item

    def _unpaired_tokens(self, ex: Any) -> dict[str, Any] | None:
        ids, start = self._encode(ex.prompt, ex.completion)
        if start >= len(ids):
            return None
        return {"prompt_ids": ids[:start], "completion_ids": ids[start:], "label": bool(ex.label), "length": len(ids)}

    @staticmethod
    def _example_length(example: dict[str, Any]) -> int:
        return example["length"]  # prompt twice with both replies (DPO, ORPO), or prompt and completion (KTO)

    # ------------------------------------------------------------------ TRL
    def _attach_adapter(self, loaded):
        model = super()._attach_adapter(loaded)
        self.trl = self._build_trl_trainer(model, loaded.tokenizer)
        return model

    def _build_trl_trainer(self, model: Any, tokenizer: Any) -> Any:
        """TRL's trainer for the method, around our PEFT model, used only for its loss and collator."""
        from datasets import Dataset

        cfg, pref = self.config, self.config.preference
        cuda = self.device.type == "cuda"
        mixed = self.accelerator.mixed_precision
        common = dict(report_to="none", seed=cfg.seed, bf16=mixed == "bf16", fp16=mixed == "fp16", use_cpu=not cuda,
                      per_device_train_batch_size=max(2, self.config.batch_size), max_length=None,
                      gradient_checkpointing=False, remove_unused_columns=False, disable_tqdm=True)
        trained_dtypes = {name: p.dtype for name, p in model.named_parameters() if p.requires_grad}
        scratch = tempfile.mkdtemp(prefix="amauta-trl-")  # TRL wants an output_dir; it never writes there
        if tokenizer.pad_token is None:
            tokenizer.pad_token = tokenizer.eos_token
        try:
            with _quiet():
                if cfg.method == "dpo":
                    from trl import DPOConfig, DPOTrainer

                    args = DPOConfig(scratch, beta=pref.beta, loss_type=[pref.loss_type], **common)
                    rows = [{"prompt": "a", "chosen": " b", "rejected": " c"}]
                    trainer = DPOTrainer(model=model, args=args, train_dataset=Dataset.from_list(rows),
                                         processing_class=tokenizer)
                elif cfg.method == "kto":
                    from trl import KTOConfig, KTOTrainer

                    args = KTOConfig(scratch, beta=pref.beta, desirable_weight=pref.desirable_weight,
                                     undesirable_weight=pref.undesirable_weight, **common)
                    rows = [{"prompt": "a", "completion": " b", "label": True},
                            {"prompt": "c", "completion": " d", "label": False}]
                    trainer = KTOTrainer(model=model, args=args, train_dataset=Dataset.from_list(rows),
                                         processing_class=tokenizer)
                else:
                    from trl.experimental.orpo import ORPOConfig, ORPOTrainer

                    common.pop("max_length")
                    args = ORPOConfig(scratch, beta=pref.beta, **common)
                    rows = [{"prompt": "a", "chosen": " b", "rejected": " c"}]
                    trainer = ORPOTrainer(model=model, args=args, train_dataset=Dataset.from_list(rows),
                                          processing_class=tokenizer)
        except ValueError as exc:  # TRL checks combinations of its settings (e.g. a loss that needs smoothing)
            reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise AmautaError(f"method {cfg.method}: TRL refused these settings ({reason}); change preference.* "
                              "in the run config") from None
        finally:
            shutil.rmtree(scratch, ignore_errors=True)
        if "ref" in getattr(model, "peft_config", {}):
            # DPOTrainer keeps a frozen copy of a pre-existing adapter as the reference. Ours is freshly
            # initialised (its update is zero), so the base with the adapter off is the same reference,
            # costs no memory, and leaves only our adapter in every checkpoint.
            model.delete_adapter("ref")
            model.set_adapter("default")
        for name, param in model.named_parameters():
            # TRL casts the adapter of a 4-bit base to bf16; Amauta's adapters stay fp32 (as SFT's), so the
            # optimizer's updates are not rounded away.
            if name in trained_dtypes and param.dtype != trained_dtypes[name]:
                param.data = param.data.to(trained_dtypes[name])
        return trainer

    def _collate(self, examples: list[dict[str, Any]]) -> dict[str, Any]:
        """A TRL batch: its own collator for DPO and KTO; ORPO's chosen/rejected tensors for ORPO."""
        if self.config.method == "orpo":
            return self._orpo_batch(examples)
        batch = self.trl.data_collator([{k: v for k, v in ex.items() if k != "length"} for ex in examples])
        return {k: v.to(self.device) if isinstance(v, torch.Tensor) else v for k, v in batch.items()}

    def _with_kl(self, examples: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """KTO's KL term compares each completion with another prompt's: TRL rotates the completions by one
        within a batch. Rotating within the whole step (not each micro-batch) keeps the pairs the same however
        the step is cut, so a resumed run whose micro-batch size changed computes the same loss."""
        if self.config.method != "kto" or not examples:
            return examples
        rotated = [examples[-1]["completion_ids"]] + [ex["completion_ids"] for ex in examples[:-1]]
        return [{**ex, "KL_completion_ids": kl} for ex, kl in zip(examples, rotated, strict=True)]

    def _orpo_batch(self, examples: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
        pad_id = self.loaded.tokenizer.pad_token_id
        batch = {}
        for side in ("chosen", "rejected"):
            rows = [(ex["prompt_ids"] + ex[f"{side}_ids"], len(ex["prompt_ids"])) for ex in examples]
            width = max(len(ids) for ids, _ in rows)
            batch[f"{side}_input_ids"] = torch.tensor([ids + [pad_id] * (width - len(ids)) for ids, _ in rows])
            batch[f"{side}_attention_mask"] = torch.tensor([[1] * len(ids) + [0] * (width - len(ids)) for ids, _ in rows])
            batch[f"{side}_labels"] = torch.tensor([[-100] * n + ids[n:] + [-100] * (width - len(ids)) for ids, n in rows])
        return {k: v.to(self.device) for k, v in batch.items()}

    def _loss(self, batch: dict[str, Any]) -> tuple[torch.Tensor, dict[str, float]]:
        """TRL's loss of one micro-batch and its metrics (rewards, margins, accuracies, log-probs)."""
        mode = "train" if self.model.training else "eval"
        if self.config.method == "dpo":  # precomputed reference log-probs ride in the batch (TRL's collator)
            self.trl.precompute_ref_logps = "ref_chosen_logps" in batch
        if self.config.method == "orpo":
            loss, raw = self.trl.get_batch_loss_metrics(self.model, batch, train_eval=mode)
            raw = {k.removeprefix("eval_"): v for k, v in raw.items()}
        else:
            loss = self.trl.compute_loss(self.model, batch)
            raw = {k: v[-1] for k, v in self.trl._metrics[mode].items() if isinstance(v, list) and v}
            self.trl._metrics[mode].clear()
        return loss, {METRICS[k]: float(v) for k, v in raw.items() if k in METRICS}

    # ------------------------------------------------------------------ reference log-probs
    def _splits_to_precompute(self) -> list[str]:
        """The DPO splits whose reference log-probs are computed once: all with `precompute_ref: true`; with
        `auto` only where that saves forward passes (a split scored more than once)."""
        cfg = self.config
        setting = cfg.preference.precompute_ref
        if cfg.method != "dpo" or setting is False:
            return []
        if setting is True:
            return ["train", "val"]
        evaluations = len({s for s in range(1, self.total_steps + 1) if s % cfg.eval_every == 0 or s == self.total_steps})
        splits = ["train"] if self.total_steps > self.steps_per_epoch else []
        return splits + (["val"] if evaluations > 1 or cfg.early_stopping.enabled else [])

    def _reference_key(self, examples: list[dict[str, Any]]) -> str:
        """What a split's reference log-probs depend on: the base model, how it is stored, and the token ids."""
        cfg = self.config
        what = {"model": cfg.model, "dtype": str(self.loaded.model.dtype), "quantization": cfg.quantization.model_dump(),
                "loss": cfg.preference.loss_type, "mixed": self.accelerator.mixed_precision,
                "pairs": [[ex["prompt_ids"], ex["chosen_ids"], ex["rejected_ids"]] for ex in examples]}
        return hashlib.sha256(json.dumps(what, sort_keys=True).encode()).hexdigest()[:16]

    def _precompute_reference(self) -> None:
        """Give every example of the chosen splits its reference log-probs (`ref_chosen_logps`,
        `ref_rejected_logps`), read from ref_logps.json where it has them, else computed with TRL's
        `compute_ref_log_probs` (adapter off, no gradients) and saved as they come.

        Every process computes every pair, in the same order: under DDP/FSDP the forward passes stay in
        lockstep; the main process writes the file.
        """
        path = self.out / REF_LOGPS_FILE
        try:
            cache = json.loads(path.read_text()) if path.is_file() else {}
        except (OSError, ValueError):
            cache = {}  # our own cache file, unreadable: computed again and rewritten
        cache = cache if isinstance(cache, dict) else {}
        for split in self._splits_to_precompute():
            examples = self.train_examples if split == "train" else self.val_examples
            if not examples:
                continue
            key = self._reference_key(examples)
            saved = cache.get(split) if isinstance(cache.get(split), dict) else {}
            chosen, rejected = (list(saved.get("chosen", [])), list(saved.get("rejected", []))) \
                if saved.get("key") == key else ([], [])
            if len(chosen) < len(examples):
                already = f", after the {len(chosen)} already in {REF_LOGPS_FILE}" if chosen else ""
                self.print(f"{split}: reference log-probs of {len(examples) - len(chosen)} pairs, computed once "
                           f"(preference.precompute_ref){already}")
                cache[split] = {"key": key, "chosen": chosen, "rejected": rejected}
                self._compute_reference(examples, cache, split)
            else:
                self.print(f"{split}: reference log-probs of {len(examples)} pairs read from {REF_LOGPS_FILE}")
            for ex, c, r in zip(examples, chosen, rejected, strict=True):
                ex["ref_chosen_logps"], ex["ref_rejected_logps"] = c, r

    def _compute_reference(self, examples: list[dict[str, Any]], cache: dict[str, Any], split: str) -> None:
        """Append the reference log-probs of the examples `cache[split]` lacks to its `chosen` and `rejected`
        lists, writing the cache every `REF_SAVE_SECONDS` and at the end."""
        chosen, rejected = cache[split]["chosen"], cache[split]["rejected"]
        was_training = self.model.training
        self.model.eval()  # the reference is the frozen base: no dropout
        last_save = time.perf_counter()
        try:
            for start in range(len(chosen), len(examples), self.micro):
                batch = self._collate([{k: v for k, v in ex.items() if not k.startswith("ref_")}
                                       for ex in examples[start:start + self.micro]])
                with torch.no_grad(), self.accelerator.autocast():
                    ref_c, ref_r = self.trl.compute_ref_log_probs(self.model, batch)
                chosen += ref_c.float().cpu().tolist()
                rejected += ref_r.float().cpu().tolist()
                if time.perf_counter() - last_save > REF_SAVE_SECONDS:
                    self._save_reference(cache)
                    last_save = time.perf_counter()
            self._save_reference(cache)
        finally:
            self.model.train(was_training)

    def _save_reference(self, cache: dict[str, Any]) -> None:
        if self.main:
            atomic_write_json(self.out / REF_LOGPS_FILE, cache, indent=None)

    # ------------------------------------------------------------------ fit
    def fit(self) -> None:
        """LoRARecipe's loop, after the reference log-probs that are computed once (their time counts as
        training time)."""
        if self.step < self.total_steps and not self.early["stopped"]:
            started = time.perf_counter()
            self._precompute_reference()
            self.elapsed_before += time.perf_counter() - started
        super().fit()

    def _step(self, indices: list[int]) -> dict[str, Any]:
        """One optimizer step: micro-batches weighted by their share of the step's examples, clip, step."""
        acc = self.accelerator
        examples = self._with_kl([self.train_examples[i] for i in indices])
        loss_sum, metrics, weights = 0.0, {}, {}
        micro_batches = [examples[i:i + self.micro] for i in range(0, len(examples), self.micro)]
        for i, micro in enumerate(micro_batches):
            share = len(micro) / len(examples)  # TRL's losses are means over the micro-batch's examples
            with contextlib.nullcontext() if i == len(micro_batches) - 1 else acc.no_sync(self.model):
                with acc.autocast():
                    loss, numbers = self._loss(self._collate(micro))
                acc.backward(loss * share)
            loss_sum += loss.detach().float().item() * share
            for key, value in numbers.items():  # KTO reports chosen/rejected only for micro-batches that have them
                metrics[key] = metrics.get(key, 0.0) + value * share
                weights[key] = weights.get(key, 0.0) + share
        row = self._apply_update(loss_sum, sum(ex["length"] for ex in examples))  # LoRARecipe's
        return {**row, "answer_tokens": int(sum(ex["length"] - len(ex["prompt_ids"]) for ex in examples)),
                "metrics": {k: round(v / weights[k], 6) for k, v in metrics.items()}}

    @torch.no_grad()
    def evaluate(self) -> float | None:
        """Mean preference loss over the validation examples (None without any)."""
        if not self.val_examples:
            return None
        acc = self.accelerator
        self.model.eval()
        mine = self._with_kl(self.val_examples[acc.process_index::acc.num_processes])
        total = 0.0
        for i in range(0, len(mine), self.micro):
            micro = mine[i:i + self.micro]
            with acc.autocast():
                loss, _ = self._loss(self._collate(micro))
            total += loss.float().item() * len(micro)
        self.model.train()
        sums = acc.reduce(torch.tensor([total, float(len(mine))], device=self.device), reduction="sum")
        return (sums[0] / sums[1].clamp(min=1)).item()


@contextlib.contextmanager
def _quiet():
    """TRL's trainers log and warn while being built (dataset maps, deprecation notes) about our dummy rows."""
    import logging
    import warnings

    from datasets.utils.logging import disable_progress_bar, enable_progress_bar, is_progress_bar_enabled

    bars = is_progress_bar_enabled()
    disable_progress_bar()
    loggers = [logging.getLogger(name) for name in ("trl", "transformers.trainer")]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        for lg, level in zip(loggers, levels, strict=True):
            lg.setLevel(level)
        if bars:
            enable_progress_bar()
