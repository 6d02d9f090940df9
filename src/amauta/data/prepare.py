"""`amauta data prepare`: read sources, clean, mix, split, and write a dataset folder.

    read (readers) → clean (rules, in order) → mix + split (hashed ids) → lengths → write (atomic)

The output folder (docs/CONTRACTS.md) holds train.jsonl and val.jsonl (`{"id", "messages", "source",
"category"}` per line), stats.json (counts per source and rule, token-length percentiles per template,
seconds per stage), lengths.png and manifest.json (with the model, template and system prompt the
lengths were measured with). It appears only when everything succeeded: a bad input stops the run before any file
is written, unless `skip_invalid` is set, in which case bad rows are counted in stats.json.
"""

from __future__ import annotations

import time
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

from pydantic import Field, model_validator

from amauta.core.config import StageConfig
from amauta.core.errors import AmautaError
from amauta.core.files import atomic_write_json, atomic_write_jsonl
from amauta.core.manifest import write_manifest
from amauta.core.outdir import OutputFolder, claim
from amauta.data.clean import RULES, CleanConfig, Cleaner
from amauta.data.mix import SplitConfig, mix
from amauta.data.readers import SourceConfig, read_source
from amauta.data.records import Record
from amauta.data.stats import length_summary, plot_lengths
from amauta.models.load import load_tokenizer


class PrepareConfig(StageConfig):
    """Config of `amauta data prepare` (and the pipeline's `data.prepare` stage)."""

    sources: list[SourceConfig] = Field(
        min_length=1, description="The inputs, each with its format, mixing weight and cap (see "
                                  "`SourceConfig`).")
    out: str | None = Field(None, description="The dataset folder to write (the CLI's --out overrides it).")
    model: str = Field(
        "smollm2-135m-instruct", description="The target model: its tokenizer and template measure token "
                                             "lengths (`clean.max_tokens`).")
    system_prompt: str | None = Field(
        None, description="System prompt rendered into every conversation that brings none (lengths are "
                          "measured with it): None = the model profile's (`amauta models show MODEL`), \"\" = "
                          "none. Training must use the same.")
    length_templates: list[str] = Field(
        default_factory=list, description="More templates to report token-length percentiles for (with the "
                                          "same tokenizer), e.g. [llama2, mistral].")
    clean: CleanConfig = Field(default_factory=CleanConfig, description="Cleaning rules.")
    split: SplitConfig = Field(default_factory=SplitConfig, description="Train/validation split.")
    skip_invalid: bool = Field(
        False, description="Skip and count malformed rows instead of stopping at the first one.")
    max_record_chars: int = Field(
        1_000_000, gt=0, description="A single input record (JSONL line or array element) longer than this "
                                     "is malformed.")

    @model_validator(mode="after")
    def _unique_names(self) -> PrepareConfig:
        names = [s.source_name for s in self.sources]
        dup = next((n for n in names if names.count(n) > 1), None)
        if dup:
            raise ValueError(f"two sources are named '{dup}'; give each a distinct 'name'")
        return self


def run(config: PrepareConfig, *, out: str | Path | None = None, skip_invalid: bool | None = None,
        quiet: bool = False, overwrite: bool = False) -> Path:
    """Prepare the dataset folder described by `config`; return its path.

    out: overrides `config.out`.
    skip_invalid: overrides `config.skip_invalid`.
    quiet: print no progress (progress goes to stderr, so stdout stays clean either way).
    overwrite: replace `out` when it is a dataset folder prepared from other inputs (see core/outdir.py:
        a folder `data prepare` did not make, or one holding a source, is never replaced).
    """
    out = Path(out or config.out or "")
    if not str(out) or str(out) == ".":
        raise AmautaError("no output folder: set 'out:' in the prepare config or pass --out DIR")
    if skip_invalid is not None:
        config = config.model_copy(update={"skip_invalid": skip_invalid})  # the manifest records what ran
    with claim(out, "data.prepare", overwrite=overwrite, quiet=quiet) as folder:
        return _prepare(config, out, folder, quiet)


def _prepare(config: PrepareConfig, out: Path, folder: OutputFolder, quiet: bool) -> Path:
    """The body of `run`, while it holds `out`."""
    from rich.console import Console
    from rich.markup import escape

    console = Console(stderr=True, quiet=quiet, highlight=False)
    skip = config.skip_invalid
    seconds: dict[str, float] = {}
    started = time.perf_counter()

    # 1. Read every source first: a bad row stops the run here, before anything is written.
    per_source: dict[str, dict[str, Any]] = {}
    records: list[Record] = []
    inputs: list[Path] = []
    invalid_messages: list[str] = []
    t = time.perf_counter()
    for spec in config.sources:
        result = read_source(spec, skip_invalid=skip, max_record_chars=config.max_record_chars)
        name = spec.source_name
        per_source[name] = {"read": len(result.records), "invalid": len(result.invalid),
                            "skipped": dict(result.skipped)}
        records += result.records
        inputs += result.inputs
        invalid_messages += result.invalid
        console.print(escape(f"read {name}: {len(result.records)} records"
                             + (f", {len(result.invalid)} invalid skipped" if result.invalid else "")
                             + "".join(f", {n} {why} skipped" for why, n in result.skipped.items())))
    seconds["read"] = time.perf_counter() - t
    for message in invalid_messages[:5]:
        console.print(f"[yellow]skipped:[/] {escape(message)}", soft_wrap=True)
    if not records:
        raise AmautaError("no valid records in any source; check the sources' paths and formats")
    if folder.up_to_date(config, inputs):
        console.print(escape(f"{out}: already prepared from this config and these inputs; nothing to do"))
        return out
    folder.check_replace(config, inputs)

    # 2. Clean. The target tokenizer measures lengths; the same numbers feed the stats.
    t = time.perf_counter()
    tokenizer, profile = load_tokenizer(config.model, system_prompt=config.system_prompt)
    seconds["load_tokenizer"] = time.perf_counter() - t
    from amauta.data.tokenize import conversation_lengths

    def target_lengths(rs: list[Record]) -> list[int]:
        return conversation_lengths(tokenizer, profile, [r.messages for r in rs])

    with console.status("cleaning") as status:
        cleaner = Cleaner(config.clean, token_lengths=target_lengths,
                          progress=lambda rule, n: status.update(f"cleaning: {rule.replace('_', ' ')} on {n} records"))
        kept = cleaner.run(records)
    seconds.update(cleaner.report.seconds)
    console.print(f"clean: kept {len(kept)} of {len(records)} in {sum(cleaner.report.seconds.values()):.1f} s")
    if not kept:
        raise AmautaError(f"every record was removed by cleaning ({cleaner.report.by_rule()}); relax the 'clean' rules")

    # 3. Mix and split by hashed id.
    t = time.perf_counter()
    by_source: dict[str, list[Record]] = defaultdict(list)
    for r in kept:
        by_source[r.source].append(r)
    train, val, mix_counts = mix(by_source, {s.source_name: s.weight for s in config.sources},
                                 {s.source_name: s.cap for s in config.sources}, config.split)
    seconds["mix_split"] = time.perf_counter() - t

    # 4. Token lengths per template (the target's come from the length filter, computed once).
    t = time.perf_counter()
    base_id = lambda r: r.id.split("~")[0]  # noqa: E731  (up-sampled copies share their original's length)
    final = train + val
    lengths = {profile.template: [cleaner.lengths[base_id(r)] for r in final if base_id(r) in cleaner.lengths]}
    for template in config.length_templates:
        if template != profile.template:
            lengths[template] = conversation_lengths(tokenizer, profile, [r.messages for r in final], template=template)
    seconds["lengths"] = time.perf_counter() - t

    # 5. Stats.
    removed_by_source: dict[str, Counter] = defaultdict(Counter)
    for (source, rule), n in cleaner.report.removed.items():
        removed_by_source[source][rule] += n
    for name, entry in per_source.items():
        entry["removed"] = {rule: removed_by_source[name].get(rule, 0) for rule in RULES}
        entry["kept"] = len(by_source.get(name, []))
        entry.update({k: mix_counts.get(name, Counter()).get(k, 0) for k in ("selected", "train", "val")})
    stats: dict[str, Any] = {
        "model": config.model,
        "template": profile.template,
        "system_prompt": profile.system_prompt,
        "totals": {"read": len(records), "invalid": len(invalid_messages), "kept": len(kept),
                   "train": len(train), "val": len(val)},
        "removed": cleaner.report.by_rule(),
        "sources": per_source,
        "categories": dict(Counter(r.category or "(none)" for r in train).most_common()),
        "token_lengths": {name: length_summary(v) for name, v in lengths.items()},
        "invalid_examples": invalid_messages[:20],
        "removed_examples": cleaner.report.examples,
    }

    # 6. Write everything into a temporary folder renamed into place at the end.
    write_dataset(folder, train, val, stats=stats, lengths=lengths, seconds=seconds, started=started, config=config,
                  inputs=inputs, model=config.model, profile=profile, max_tokens=config.clean.max_tokens)
    return out


def write_dataset(folder: OutputFolder, train: list[Record], val: list[Record], *, stats: dict[str, Any],
                  lengths: dict[str, list[int]], seconds: dict[str, float], started: float, config: Any,
                  inputs: list[Path], model: str, profile: Any, max_tokens: int | None = None,
                  **manifest_extra: Any) -> None:
    """Write a dataset folder (the contract `amauta train` reads) atomically into `folder`.

    train.jsonl, val.jsonl, lengths.png, stats.json (with `seconds`, timed from `started`) and a manifest of
    stage `data.prepare` recording the model, template and system prompt the lengths were measured with;
    `manifest_extra` adds keys to it (e.g. `amauta data augment`'s recipe). Built aside, renamed into place.
    """
    t = time.perf_counter()
    with folder.replace() as tmp:
        atomic_write_jsonl(tmp / "train.jsonl", (r.to_json() for r in train))
        atomic_write_jsonl(tmp / "val.jsonl", (r.to_json() for r in val))
        plot_lengths(lengths, tmp / "lengths.png", max_tokens=max_tokens, title=f"Token lengths ({model})")
        seconds["write"] = time.perf_counter() - t
        seconds["total"] = time.perf_counter() - started
        stats["seconds"] = {k: round(v, 3) for k, v in seconds.items()}
        stats["records_per_second"] = round(stats["totals"]["read"] / max(seconds["total"], 1e-9), 1)
        atomic_write_json(tmp / "stats.json", stats)
        write_manifest(tmp, "data.prepare", config, inputs=inputs, model=model, template=profile.template,
                       system_prompt=profile.system_prompt, counts=stats["totals"], **manifest_extra)
