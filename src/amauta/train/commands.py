"""`amauta train` (LoRA/QLoRA fine-tuning, resumable) and `amauta export` (merge, safetensors, GGUF)."""

from __future__ import annotations

from pathlib import Path

import typer

from amauta.core.threads import THREADS_OPTION, apply_threads


def train_command(
    config: Path = typer.Argument(None, help="Run config YAML (see examples/train-*.yaml); optional with --preset."),
    preset: str = typer.Option(None, "--preset", help="Start from a preset: thesis-llama2, thesis-mistral, thesis-falcon, cpu-quick."),
    model: str = typer.Option(None, "--model", help="Base model: registry name, hub id, folder or .gguf."),
    dataset: Path = typer.Option(None, "--dataset", help="Dataset folder from `amauta data prepare`."),
    output_dir: Path = typer.Option(None, "--output-dir", "--out", "-o", help="Run folder to write (or resume)."),
    method: str = typer.Option(None, "--method", help="sft (default), or dpo, orpo, kto on a folder from `amauta data preferences`."),
    lr: float = typer.Option(None, "--lr", help="Peak learning rate (optimizer.lr)."),
    epochs: float = typer.Option(None, "--epochs", help="Passes over the training set."),
    max_steps: int = typer.Option(None, "--max-steps", help="Stop after this many optimizer steps."),
    batch_size: int = typer.Option(None, "--batch-size", help="Examples per optimizer step (all processes)."),
    micro_batch_size: int = typer.Option(None, "--micro-batch-size", help="Examples per forward pass (default: fitted)."),
    lora_r: int = typer.Option(None, "--lora-r", help="LoRA rank (lora.r)."),
    seed: int = typer.Option(None, "--seed", help="Random seed."),
    set_: list[str] = typer.Option(None, "--set", help="Any other key as KEY=VALUE, e.g. --set lora.dropout=0.1 (repeatable)."),
    resume: bool = typer.Option(False, "--resume", help="Continue from the newest checkpoint (a plain rerun does too)."),
    overwrite: bool = typer.Option(False, "--overwrite",
                                   help="Start afresh in a run folder of another config or dataset (only a folder `amauta train` made)."),
    list_presets: bool = typer.Option(False, "--list-presets", help="List the presets and exit."),
    progress: bool = typer.Option(True, "--progress/--no-progress", help="Show the progress bar."),
    threads: int | None = THREADS_OPTION,
) -> None:
    """Fine-tune a model with LoRA/QLoRA (SFT, or DPO/ORPO/KTO on preferences); a killed run resumes."""
    apply_threads(threads)
    from amauta.core.console import make_console
    from amauta.train.config import build_config, parse_set, preset_names, read_preset

    console = make_console()
    if list_presets:
        for name in preset_names():
            data = read_preset(name)
            q = data.get("quantization", {}).get("mode", "none")
            lora = data.get("lora", {})
            console.print(f"[bold]{name}[/]: {data.get('model')}, {q}, LoRA r {lora.get('r')} on {lora.get('targets')}, "
                          f"lr {data.get('optimizer', {}).get('lr')}", highlight=False)
        return
    overrides = {"model": model, "dataset": str(dataset) if dataset else None,
                 "output_dir": str(output_dir) if output_dir else None, "method": method, "optimizer.lr": lr, "epochs": epochs,
                 "max_steps": max_steps, "batch_size": batch_size, "micro_batch_size": micro_batch_size,
                 "lora.r": lora_r, "seed": seed, **parse_set(set_ or [])}
    cfg = build_config(config, overrides, preset=preset)

    from amauta.train.recipe import run

    out = run(cfg, resume=resume, progress=progress, overwrite=overwrite)
    import json

    summary = json.loads((out / "summary.json").read_text()) if (out / "summary.json").is_file() else {}
    if summary:
        console.print(f"{summary['steps']} steps, final loss {summary['final_loss']:.4f}"
                      + (f", validation {summary['final_val_loss']:.4f}" if summary.get("final_val_loss") else "")
                      + f"; adapter in {out / 'adapter'}, plot {out / 'loss.png'}", highlight=False)


def export_command(
    run_dir: Path = typer.Argument(..., help="A run folder written by `amauta train`."),
    out: Path = typer.Option(..., "--out", "-o", help="Folder to write the exported model to."),
    merge: bool = typer.Option(False, "--merge", help="Merge the adapter into the base weights (else export the adapter)."),
    gguf: bool = typer.Option(False, "--gguf", help="Also write a GGUF file for llama.cpp / Ollama (implies --merge)."),
    dtype: str = typer.Option("float16", "--dtype", help="Weights' data type: float16, bfloat16 or float32."),
    overwrite: bool = typer.Option(False, "--overwrite",
                                   help="Replace an export made from other inputs (never any other folder)."),
) -> None:
    """Export a trained run: merged safetensors + tokenizer + model card, optionally a GGUF file."""
    from amauta.core.console import make_console
    from amauta.train.export import export_run

    folder = export_run(run_dir, out, merge=merge or gguf, gguf=gguf, dtype=dtype, overwrite=overwrite)
    files = ", ".join(sorted(p.name for p in folder.iterdir()))
    make_console().print(f"wrote {folder}: {files}", highlight=False)


def plot_loss_command(
    run_dirs: list[Path] = typer.Argument(..., help="One or more run folders (their log.jsonl)."),
    out: Path = typer.Option(..., "--out", "-o", help="PNG file to write."),
    title: str = typer.Option(None, "--title", help="Figure title."),
) -> None:
    """Draw train/validation loss of one run, or overlay several (the thesis's Figures 4-6)."""
    from amauta.core.errors import AmautaError
    from amauta.train.plots import plot_loss

    logs = [Path(d) / "log.jsonl" if Path(d).is_dir() else Path(d) for d in run_dirs]
    for log in logs:
        if not log.is_file():
            raise AmautaError(f"{log}: not found; pass run folders written by `amauta train`")
    plot_loss(logs, out, title=title or "training loss")
    typer.echo(f"wrote {out}")


def register(app: typer.Typer) -> None:
    """Add `train`, `export` and `plot-loss` to the `amauta` app."""
    app.command("train")(train_command)
    app.command("export")(export_command)
    app.command("plot-loss")(plot_loss_command)
