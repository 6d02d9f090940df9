"""QLoRA memory and speed of the thesis presets on one CUDA GPU, with real 7B shapes and no download.

For each of Llama-2-7B, Mistral-7B and Falcon-7B this builds a randomly initialised model with the
published configuration (layers, widths, heads, vocabulary), quantizes every linear layer to 4-bit NF4
with double quantization (bitsandbytes, exactly what loading the real checkpoint with the thesis preset
does), attaches the preset's LoRA (r 256, alpha 256, dropout 0.2, attention projections), and runs 20
optimizer steps of paged AdamW 8-bit with bf16 autocast, gradient checkpointing and a cosine schedule
with warmup 0.3 on random token sequences of 512 tokens (the preset's batch size). It reports peak GPU
memory (allocated and reserved, weights included) and tokens/s. Target: peak ≤ 12 GB each, so the
thesis's 16 GB card is comfortable.

Random weights train like real ones as far as memory and time go (same shapes, same kernels); the
loss values mean nothing. The presets are read from src/amauta/train/presets/*.yaml and the attention
target names from src/amauta/models/profiles.yaml, so this measures what `amauta train` would run.
Needs only torch, transformers, peft, accelerate and bitsandbytes (PyYAML comes with transformers).

    python benchmarks/gpu_qlora.py                 # on a CUDA machine: ~1-2 minutes per model on an H100
    python benchmarks/gpu_qlora.py --models llama2 --steps 5 --seq-len 1024
    python benchmarks/gpu_qlora.py --dry-run       # tiny shapes on a CPU: checks the script end to end
"""

from __future__ import annotations

import argparse
import gc
import json
import math
import time
from pathlib import Path

import torch
import yaml

REPO = Path(__file__).resolve().parents[1]
PRESETS = REPO / "src" / "amauta" / "train" / "presets"
PROFILES = REPO / "src" / "amauta" / "models" / "profiles.yaml"

# The published configurations (config.json of each hub repository).
SHAPES = {
    "llama2": ("thesis-llama2", "llama", dict(vocab_size=32000, hidden_size=4096, intermediate_size=11008,
                                              num_hidden_layers=32, num_attention_heads=32, num_key_value_heads=32,
                                              max_position_embeddings=4096, rms_norm_eps=1e-5)),
    "mistral": ("thesis-mistral", "mistral", dict(vocab_size=32000, hidden_size=4096, intermediate_size=14336,
                                                  num_hidden_layers=32, num_attention_heads=32, num_key_value_heads=8,
                                                  max_position_embeddings=32768, rms_norm_eps=1e-5,
                                                  sliding_window=4096)),
    "falcon": ("thesis-falcon", "falcon", dict(vocab_size=65024, hidden_size=4544, num_hidden_layers=32,
                                               num_attention_heads=71, multi_query=True, parallel_attn=True,
                                               new_decoder_architecture=False, alibi=False, bias=False,
                                               layer_norm_epsilon=1e-5)),
}
# --dry-run: the same architectures, a few hundred thousand parameters.
TINY = {"vocab_size": 512, "hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2,
        "num_attention_heads": 4, "max_position_embeddings": 512}


def build_config(arch: str, shape: dict, dry_run: bool):
    from transformers import AutoConfig

    if dry_run:
        shape = {**shape, **TINY}
        if "num_key_value_heads" in shape:
            shape["num_key_value_heads"] = min(shape["num_key_value_heads"], 2)
        if arch == "falcon":
            shape.pop("intermediate_size", None)
    return AutoConfig.for_model(arch, **shape)


def quantize_linears(model, preset: dict, device: torch.device) -> int:
    """Swap every nn.Linear but the output head for a bitsandbytes 4-bit layer holding the same weights."""
    import bitsandbytes as bnb

    q = preset["quantization"]
    compute = getattr(torch, q["compute_dtype"])
    count = 0
    for name, module in list(model.named_modules()):
        for child_name, child in list(module.named_children()):
            if not isinstance(child, torch.nn.Linear) or f"{name}.{child_name}".endswith("lm_head") or child_name == "lm_head":
                continue
            layer = bnb.nn.Linear4bit(child.in_features, child.out_features, bias=child.bias is not None,
                                      compute_dtype=compute, compress_statistics=q["double_quant"],
                                      quant_type=q["quant_type"], device="meta")
            layer.weight = bnb.nn.Params4bit(child.weight.data.to("cpu" if device.type == "cpu" else device),
                                             requires_grad=False, quant_type=q["quant_type"],
                                             compress_statistics=q["double_quant"])
            if child.bias is not None:
                layer.bias = torch.nn.Parameter(child.bias.data, requires_grad=False)
            layer = layer.to(device)  # moving a Params4bit to its device quantizes it
            setattr(module, child_name, layer)
            del child
            count += 1
    model.is_loaded_in_4bit = True  # what peft checks to prepare a k-bit model
    return count


def run_one(key: str, args, device: torch.device) -> dict:
    from peft import LoraConfig, get_peft_model, prepare_model_for_kbit_training
    from transformers import AutoModelForCausalLM, get_scheduler

    preset_name, arch, shape = SHAPES[key]
    preset = yaml.safe_load((PRESETS / f"{preset_name}.yaml").read_text())
    profile = yaml.safe_load(PROFILES.read_text())["profiles"][preset["model"]]
    targets = profile["lora_targets"][preset["lora"]["targets"]]
    config = build_config(arch, shape, args.dry_run)
    config.use_cache = False

    torch.manual_seed(0)
    started = time.perf_counter()
    # Build directly on the device in bf16 (no download, no fp32 copy), then quantize layer by layer.
    with torch.device(device):
        model = AutoModelForCausalLM.from_config(config, dtype=torch.bfloat16)
    n_params = sum(p.numel() for p in model.parameters())
    quantized = quantize_linears(model, preset, device)
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
    build_s = time.perf_counter() - started

    gradient_checkpointing = preset.get("gradient_checkpointing", "auto") in ("auto", True)
    model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=gradient_checkpointing,
                                            gradient_checkpointing_kwargs={"use_reentrant": False})
    lora = preset["lora"]
    model = get_peft_model(model, LoraConfig(r=lora["r"], lora_alpha=lora["alpha"], lora_dropout=lora["dropout"],
                                             target_modules=targets, task_type="CAUSAL_LM"))
    trainable = [p for p in model.parameters() if p.requires_grad]
    opt = preset["optimizer"]
    if device.type == "cuda":
        import bitsandbytes as bnb

        optimizer = bnb.optim.PagedAdamW8bit(trainable, lr=opt["lr"], weight_decay=opt["weight_decay"])
    else:  # the recipe's CPU fallback
        optimizer = torch.optim.AdamW(trainable, lr=opt["lr"], weight_decay=opt["weight_decay"])
    scheduler = get_scheduler(preset["scheduler"], optimizer, num_warmup_steps=math.ceil(preset["warmup_ratio"] * args.steps),
                              num_training_steps=args.steps)
    batch = args.batch or preset["batch_size"]
    seq_len = args.seq_len
    generator = torch.Generator().manual_seed(0)

    model.train()
    losses, step_times = [], []
    for _ in range(args.steps):
        ids = torch.randint(0, config.vocab_size, (batch, seq_len), generator=generator).to(device)
        t0 = time.perf_counter()
        with torch.autocast(device.type, dtype=torch.bfloat16):
            loss = model(input_ids=ids, labels=ids, use_cache=False).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(trainable, 1.0)
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad(set_to_none=True)
        losses.append(loss.item())  # .item() waits for the GPU, so the step time is real
        step_times.append(time.perf_counter() - t0)
    # The first steps include kernel selection and paging set-up: time the rest.
    timed = step_times[2:] if len(step_times) > 4 else step_times
    result = {
        "model": key, "preset": preset_name, "params_billion": round(n_params / 1e9, 3), "quantized_linears": quantized,
        "lora_targets": targets, "trainable_params": sum(p.numel() for p in trainable), "batch": batch,
        "seq_len": seq_len, "steps": args.steps, "build_s": round(build_s, 1),
        "tokens_per_s": round(batch * seq_len * len(timed) / sum(timed), 1),
        "step_s": round(sum(timed) / len(timed), 3), "first_loss": round(losses[0], 4), "last_loss": round(losses[-1], 4),
    }
    if device.type == "cuda":
        result["peak_allocated_gb"] = round(torch.cuda.max_memory_allocated() / 2**30, 2)
        result["peak_reserved_gb"] = round(torch.cuda.max_memory_reserved() / 2**30, 2)
    del model, optimizer, scheduler, trainable
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", nargs="+", choices=list(SHAPES), default=list(SHAPES), help="Which shapes to run.")
    parser.add_argument("--steps", type=int, default=20, help="Optimizer steps per model.")
    parser.add_argument("--seq-len", type=int, default=512, help="Tokens per sequence.")
    parser.add_argument("--batch", type=int, default=None, help="Sequences per step (default: the preset's batch_size).")
    parser.add_argument("--dry-run", action="store_true", help="Tiny shapes, 2 steps of 32 tokens, on the CPU.")
    parser.add_argument("--limit-gb", type=float, default=12.0, help="Peak memory target per model.")
    args = parser.parse_args()
    if args.dry_run:
        args.steps, args.seq_len = min(args.steps, 2), min(args.seq_len, 32)
        device = torch.device("cpu")
    elif torch.cuda.is_available():
        device = torch.device("cuda")
    else:
        raise SystemExit("no CUDA GPU visible; run with --dry-run to check the script on a CPU")

    results = [run_one(key, args, device) for key in args.models]
    name = torch.cuda.get_device_name() if device.type == "cuda" else "cpu (dry run)"
    print(f"\nQLoRA, thesis presets, {args.steps} steps, seq len {args.seq_len}, on {name}")
    print(f"{'model':<9}{'params':>8}{'batch':>7}{'peak alloc GB':>15}{'peak reserved GB':>18}{'tokens/s':>10}{'step s':>8}  target")
    for r in results:
        peak = r.get("peak_allocated_gb")
        ok = "-" if peak is None else ("ok" if r["peak_reserved_gb"] <= args.limit_gb else "over")
        print(f"{r['model']:<9}{r['params_billion']:>7.2f}B{r['batch']:>7}{peak if peak is not None else '-':>15}"
              f"{r.get('peak_reserved_gb', '-'):>18}{r['tokens_per_s']:>10.0f}{r['step_s']:>8.2f}  {ok}")
    print(json.dumps({"benchmark": "gpu_qlora", "device": name, "dry_run": args.dry_run, "limit_gb": args.limit_gb,
                      "results": results}))


if __name__ == "__main__":
    main()
