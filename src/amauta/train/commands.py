"""`amauta train` (LoRA/QLoRA fine-tuning, resumable) and `amauta export` (merge, safetensors, GGUF)."""

from __future__ import annotations

from pathlib import Path

import typer

from amauta.core.cli_options import ConfigArgs, FlagSpec, config_options
from amauta.core.threads import THREADS_OPTION, apply_threads
from amauta.train.config import TrainConfig

# Spellings older than the derived options (the learning rate and the LoRA rank have flags of their own),
# and the system prompt spelt as every other command spells it.
TRAIN_FLAGS: dict[str, FlagSpec] = {"output_dir": ("--output-dir", "--out", "-o"), "optimizer.lr": "--lr",
                                    "lora.r": "--lora-r", "system_prompt": "--system"}


@config_options(TrainConfig, TRAIN_FLAGS, config=typer.Argument(
    None, help="Run config YAML (see examples/train-*.yaml); optional with --preset."))
def train_command(
    config: ConfigArgs,
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
    from amauta.train.config import build_config, preset_names, read_preset

    console = make_console()
    if list_presets:
        for name in preset_names():
            data = read_preset(name)
            q = data.get("quantization", {}).get("mode", "none")
            lora = data.get("lora", {})
            console.print(f"[bold]{name}[/]: {data.get('model')}, {q}, LoRA r {lora.get('r')} on {lora.get('targets')}, "
                          f"lr {data.get('optimizer', {}).get('lr')}", highlight=False)
        return
    overrides = dict(config.values)
    # A preset named on the command line wins over the file's `preset:` and lies under the file's keys.
    preset = overrides.pop("preset", None)
    cfg = build_config(config.path, overrides, preset=preset)

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
    gguf_type: str = typer.Option(None, "--gguf-type",
                                  help="GGUF weights: f16 (default), f32, or quantized by llama.cpp: q8_0, q4_k_m, "
                                       "q4_0, q5_k_m, q6_k (implies --gguf)."),
    ollama: bool = typer.Option(False, "--ollama",
                                help="Also write an Ollama Modelfile (with --merge over the merged GGUF; without, "
                                     "over the base GGUF with the adapter as a GGUF LoRA)."),
    dtype: str = typer.Option("float16", "--dtype", help="Weights' data type: float16, bfloat16 or float32."),
    overwrite: bool = typer.Option(False, "--overwrite",
                                   help="Replace an export made from other inputs (never any other folder)."),
) -> None:
    """Export a trained run: merged safetensors + tokenizer + model card, optionally a GGUF file and an Ollama Modelfile."""
    from amauta.core.console import make_console
    from amauta.train.export import export_run

    merge = merge or gguf or (gguf_type is not None and not ollama)
    folder = export_run(run_dir, out, merge=merge, gguf=gguf or gguf_type is not None and merge, dtype=dtype,
                        overwrite=overwrite, ollama=ollama, gguf_type=gguf_type)
    files = ", ".join(sorted(p.name for p in folder.iterdir()))
    console = make_console()
    console.print(f"wrote {folder}: {files}", highlight=False)
    if ollama:
        console.print(f"for Ollama: ollama create {folder.name} -f {folder / 'Modelfile'}", highlight=False)


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
