"""Readers: one function per input format, each turning rows into `Record`s.

Formats: Alpaca (`instruction`, `input`, `output`; JSON array or JSONL), Dolly (`instruction`, `context`,
`response`, `category`), chat (`messages` with roles), ShareGPT (`conversations` with `from`/`value`),
SQuAD JSON (context + question → answer), CSV with a column mapping, and Hugging Face datasets (a hub id
through `load_dataset`, or a local folder written by `save_to_disk` or holding data files).

Every problem names the file, the line (or record) and what is wrong. With `skip_invalid` the bad row
is counted and reading goes on; without it the first bad row stops the run before anything is written.
Input files are only ever opened for reading.
"""

from __future__ import annotations

import csv
import json
import re
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, model_validator

from amauta.core.config import StageConfig
from amauta.core.errors import AmautaError, did_you_mean
from amauta.core.files import json_error_detail, nesting_line, not_utf8_message, too_deep_message
from amauta.data.records import Record, check_messages

Format = Literal["auto", "alpaca", "dolly", "chat", "sharegpt", "squad", "csv", "columns"]

# Fields a column mapping may fill (for CSV files and datasets with their own column names).
MAPPABLE = ("instruction", "input", "output", "system", "category")

# ShareGPT speaker names seen in the wild, mapped to our roles.
SHAREGPT_ROLES = {"human": "user", "user": "user", "gpt": "assistant", "assistant": "assistant",
                  "chatgpt": "assistant", "bard": "assistant", "model": "assistant", "system": "system"}

# SQuAD becomes an instruction in Spanish: the model reads a passage and answers from it.
SQUAD_PROMPT = "Lee el texto y responde la pregunta con las palabras del texto.\n\nTexto: {context}\n\nPregunta: {question}"


class SourceConfig(StageConfig):
    """One input of `amauta data prepare`."""

    path: str | None = Field(None, description="A file (.json, .jsonl, .csv) or a local `datasets` folder.")
    hf: str | None = Field(
        None, description="A Hugging Face dataset id, read with `datasets.load_dataset` (instead of `path`).")
    name: str | None = Field(
        None, description="The source's name in records and stats (default: the file or dataset name).")
    format: Format = Field(
        "auto", description="Record layout; `auto` tells Alpaca, Dolly, chat, ShareGPT and SQuAD apart by "
                            "their keys.")
    columns: dict[str, str] = Field(
        default_factory=dict, description="Our field → the input's column, e.g. {instruction: pregunta, "
                                          "output: respuesta} (CSV, odd datasets).")
    delimiter: str = Field(",", description="CSV field separator.")
    split: str = Field(
        "train", description="Which split of a Hugging Face dataset (or a saved DatasetDict) to read.")
    subset: str | None = Field(
        None, description="The dataset's configuration name on the hub, if it has several.")
    category: str | None = Field(None, description="Category given to records that carry none.")
    system: str | None = Field(
        None, description="A system prompt put before every conversation of this source.")
    weight: float = Field(
        1.0, gt=0, description="Mixing weight: below 1 keeps that fraction of the records, above 1 repeats "
                               "them in train.")
    cap: int | None = Field(
        None, gt=0, description="Keep at most this many records of this source (after cleaning), chosen by "
                                "hashed id.")

    @model_validator(mode="after")
    def _one_input(self) -> SourceConfig:
        if bool(self.path) == bool(self.hf):
            raise ValueError("give exactly one of 'path' (a file or local datasets folder) or 'hf' (a hub id)")
        unknown = [k for k in self.columns if k not in MAPPABLE]
        if unknown:
            raise ValueError(f"columns: unknown field {unknown[0]!r}{did_you_mean(unknown[0], MAPPABLE)}; "
                             f"map some of {', '.join(MAPPABLE)}")
        if self.format in ("csv", "columns") and self.columns and not {"instruction", "output"} <= set(self.columns):
            raise ValueError("columns must map at least 'instruction' and 'output'")
        return self

    @property
    def source_name(self) -> str:
        if self.name:
            return self.name
        if self.hf:
            return self.hf.rstrip("/").split("/")[-1]
        return Path(self.path).stem if Path(self.path).suffix else Path(self.path).name


@dataclass
class ReadResult:
    """What one source gave.

    records: the valid records, in input order.
    invalid: one message per skipped bad row (only with `skip_invalid`).
    skipped: rows left out on purpose, by reason (e.g. SQuAD v2 questions without an answer).
    inputs: the files read (their hashes go to the manifest).
    """

    records: list[Record] = field(default_factory=list)
    invalid: list[str] = field(default_factory=list)
    skipped: Counter = field(default_factory=Counter)
    inputs: list[Path] = field(default_factory=list)


class _Rows:
    """Collects errors: raises at once, or counts them when `skip_invalid` is set."""

    def __init__(self, skip_invalid: bool) -> None:
        self.skip_invalid = skip_invalid
        self.invalid: list[str] = []

    def fail(self, message: str) -> None:
        if not self.skip_invalid:
            raise AmautaError(message)
        self.invalid.append(message)


# ---------------------------------------------------------------------------------------------- raw text


def _decode(path: Path) -> str:
    """The file's text. A UTF-8 BOM is accepted; UTF-16/32 and undecodable bytes are refused by line.

    Bad bytes are kept as lone surrogates (`surrogateescape`) so a row holding them can be reported and
    skipped on its own while the rest of the file is read.
    """
    data = path.read_bytes()
    if not data.strip():
        raise AmautaError(f"{path}: file is empty; expected records (JSONL, a JSON array, SQuAD JSON or CSV)")
    if data[:4] in (b"\xff\xfe\x00\x00", b"\x00\x00\xfe\xff"):
        raise AmautaError(f"{path}: file is UTF-32 encoded; re-save it as UTF-8 (iconv -f UTF-32 -t UTF-8)")
    if data[:2] in (b"\xff\xfe", b"\xfe\xff"):
        raise AmautaError(f"{path}: file is UTF-16 encoded; re-save it as UTF-8 (iconv -f UTF-16 -t UTF-8)")
    if data[:3] == b"\xef\xbb\xbf":
        data = data[3:]
    if b"\x00" in data[:4096]:
        raise AmautaError(f"{path}: file holds NUL bytes; it is binary or UTF-16 without a BOM, not UTF-8 text")
    return data.decode("utf-8", errors="surrogateescape")


_BAD_BYTES = re.compile("[\udc80-\udcff]")


def _bad_utf8(text: str, where: str) -> str | None:
    """An error message when `text` (one line) holds bytes that were not valid UTF-8, else None."""
    match = _BAD_BYTES.search(text)
    return _utf8_message(where, match.group(), match.start() + 1) if match else None


def _utf8_message(where: str, char: str, column: int) -> str:
    return not_utf8_message(where, ord(char) - 0xDC00, column)


def _line_col(text: str, pos: int) -> tuple[int, int]:
    line = text.count("\n", 0, pos) + 1
    return line, pos - (text.rfind("\n", 0, pos) + 1) + 1


class _LineCounter:
    """Line numbers of increasing positions in one text, counted incrementally (a 50k-record array stays linear)."""

    def __init__(self, text: str) -> None:
        self.text, self.pos, self.line = text, 0, 1

    def __call__(self, pos: int) -> int:
        if pos < self.pos:
            return _line_col(self.text, pos)[0]
        self.line += self.text.count("\n", self.pos, pos)
        self.pos = pos
        return self.line


def _size(n: int) -> str:
    return f"{n / 1e6:.1f} MB" if n >= 1e6 else f"{n / 1e3:.0f} kB"


def iter_json_rows(path: Path, text: str, rows: _Rows, max_record_chars: int) -> Iterator[tuple[str, Any]]:
    """Yield (where, object) for a JSONL file or a JSON array, element by element.

    Elements of an array are decoded one at a time, so a file cut short still yields the elements
    before the cut (with `skip_invalid`) and the error names the line where the array breaks.
    """
    decoder = json.JSONDecoder()
    start = len(text) - len(text.lstrip())
    if text[start] == "[":
        pos, n = start + 1, 0
        line_of = _LineCounter(text)
        while True:
            while pos < len(text) and text[pos] in " \t\r\n":
                pos += 1
            if pos < len(text) and text[pos] == "]" and n == 0:
                return
            where = f"{path}:{line_of(pos)} (record {n + 1})"
            if pos >= len(text):
                rows.fail(f"{where}: the JSON array is cut short (the file ends before its closing ']'); "
                          "the file is probably truncated: export it again")
                return
            try:
                obj, end = decoder.raw_decode(text, pos)
            except RecursionError:
                rows.fail(too_deep_message(where))
                return  # as below: no safe place to go on from
            except json.JSONDecodeError as exc:
                cut = not text.rstrip().endswith("]")  # a whole array ends with its bracket
                why = ("the JSON array is cut short (the file ends inside this record); the file is probably "
                       "truncated: export it again") if cut else f"invalid JSON at line {exc.lineno} ({json_error_detail(exc)})"
                rows.fail(f"{where}: {why}")
                return  # an array cannot be resynchronised safely after a broken element
            bad = _BAD_BYTES.search(text, pos, end)
            if bad:
                bline, bcol = _line_col(text, bad.start())
                rows.fail(_utf8_message(f"{path}:{bline} (record {n + 1})", bad.group(), bcol))
            elif end - pos > max_record_chars:
                rows.fail(f"{where}: record is {_size(end - pos)} long, over the limit of {_size(max_record_chars)} "
                          "(max_record_chars); split it or raise the limit")
            else:
                yield where, obj
            n += 1
            pos = end
            while pos < len(text) and text[pos] in " \t\r\n":
                pos += 1
            if pos < len(text) and text[pos] == ",":
                pos += 1
            elif pos < len(text) and text[pos] == "]":
                tail = text[pos + 1:].strip()
                if tail:
                    tline, _ = _line_col(text, pos + 1 + text[pos + 1:].find(tail[0]))
                    rows.fail(f"{path}:{tline}: unexpected text after the JSON array's closing ']'; remove it")
                return
            else:
                line, col = _line_col(text, pos)
                cut = pos >= len(text)
                rows.fail(f"{path}:{line}: " + ("the JSON array is cut short (no closing ']'); the file is probably "
                          "truncated: export it again" if cut else f"expected ',' or ']' after record {n} at column {col}"))
                return
    for number, line in enumerate(text.split("\n"), start=1):
        if not line.strip():
            continue
        where = f"{path}:{number}"
        if len(line) > max_record_chars:
            rows.fail(f"{where}: line is {_size(len(line))} long, over the limit of {_size(max_record_chars)} per record "
                      "(max_record_chars); is this really one record per line (JSONL)?")
            continue
        bad = _bad_utf8(line, where)
        if bad:
            rows.fail(bad)
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as exc:
            hint = "; is the file JSONL (one object per line)?" if number == 1 else "; fix or remove the line"
            rows.fail(f"{where}: invalid JSON ({json_error_detail(exc)}){hint}")
            continue
        except RecursionError:
            rows.fail(too_deep_message(where))
            continue
        yield where, obj


# ---------------------------------------------------------------------------------------------- formats


def _text(obj: dict, key: str, where: str, kind: str, *, required: bool = True) -> str:
    """obj[key] as a string; a clear error when it is missing or of another type."""
    if key not in obj or obj[key] is None:
        if not required:
            return ""
        if key in obj:  # present but null: saying it is missing would send the user looking for a typo
            raise AmautaError(f"{where}: {kind} field '{key}' is null; write its text, or remove the record")
        keys = ", ".join(map(repr, obj)) or "none"
        raise AmautaError(f"{where}: {kind} record lacks '{key}'{did_you_mean(key, [str(k) for k in obj])} (has: {keys})")
    value = obj[key]
    if not isinstance(value, str):
        shown = f" {value!r}" if isinstance(value, int | float) else ""
        raise AmautaError(f"{where}: {kind} field '{key}' must be a string, got {type(value).__name__}{shown}; "
                          "write it as text in the file")
    return value


def _join(instruction: str, extra: str) -> str:
    return f"{instruction}\n\n{extra}" if extra.strip() else instruction


def _with_system(messages: list[dict], system: str | None) -> list[dict]:
    if system and messages[0]["role"] != "system":
        return [{"role": "system", "content": system}, *messages]
    return messages


def from_alpaca(obj: dict, where: str, spec: SourceConfig) -> Record:
    user = _join(_text(obj, "instruction", where, "Alpaca"), _text(obj, "input", where, "Alpaca", required=False))
    messages = [{"role": "user", "content": user}, {"role": "assistant", "content": _text(obj, "output", where, "Alpaca")}]
    category = _text(obj, "category", where, "Alpaca", required=False) or spec.category or ""
    return Record(_with_system(messages, spec.system), spec.source_name, category, where=where)


def from_dolly(obj: dict, where: str, spec: SourceConfig) -> Record:
    user = _join(_text(obj, "instruction", where, "Dolly"), _text(obj, "context", where, "Dolly", required=False))
    messages = [{"role": "user", "content": user}, {"role": "assistant", "content": _text(obj, "response", where, "Dolly")}]
    category = _text(obj, "category", where, "Dolly", required=False) or spec.category or ""
    return Record(_with_system(messages, spec.system), spec.source_name, category, where=where)


def from_chat(obj: dict, where: str, spec: SourceConfig) -> Record:
    if "messages" not in obj:
        raise AmautaError(f"{where}: chat record lacks 'messages'{did_you_mean('messages', [str(k) for k in obj])}")
    messages = check_messages(obj["messages"], where)
    category = _text(obj, "category", where, "chat", required=False) or spec.category or ""
    return Record(_with_system(messages, spec.system), spec.source_name, category, where=where)


def from_sharegpt(obj: dict, where: str, spec: SourceConfig) -> Record:
    turns = obj.get("conversations")
    if not isinstance(turns, list) or not turns:
        raise AmautaError(f"{where}: ShareGPT record needs 'conversations', a non-empty list of {{from, value}}")
    messages = []
    for i, turn in enumerate(turns):
        if not isinstance(turn, dict) or "from" not in turn or "value" not in turn:
            raise AmautaError(f"{where}: ShareGPT turn {i} must be an object with 'from' and 'value'")
        role = SHAREGPT_ROLES.get(str(turn["from"]).lower())
        if role is None:
            raise AmautaError(f"{where}: ShareGPT turn {i} has from={turn['from']!r}; use one of "
                              f"{', '.join(SHAREGPT_ROLES)}")
        messages.append({"role": role, "content": turn["value"]})
    category = _text(obj, "category", where, "ShareGPT", required=False) or spec.category or ""
    return Record(_with_system(check_messages(messages, where), spec.system), spec.source_name, category, where=where)


def from_columns(obj: dict, where: str, spec: SourceConfig) -> Record:
    """A row whose columns are named in `spec.columns` (CSV files, datasets with their own names)."""
    cols = spec.columns
    for ours, theirs in cols.items():
        if theirs not in obj:
            raise AmautaError(f"{where}: no column '{theirs}' (mapped to {ours}){did_you_mean(theirs, [str(k) for k in obj])}; "
                              f"columns are: {', '.join(map(str, obj))}")
    get = lambda ours: _text(obj, cols[ours], where, "row", required=False) if ours in cols else ""  # noqa: E731
    user = _join(_text(obj, cols["instruction"], where, "row"), get("input"))
    messages = [{"role": "user", "content": user}, {"role": "assistant", "content": _text(obj, cols["output"], where, "row")}]
    system = get("system") or spec.system
    return Record(_with_system(messages, system), spec.source_name, get("category") or spec.category or "", where=where)


CONVERTERS: dict[str, Callable[[dict, str, SourceConfig], Record]] = {
    "alpaca": from_alpaca, "dolly": from_dolly, "chat": from_chat, "sharegpt": from_sharegpt, "columns": from_columns,
}


def detect_format(obj: Any, where: str) -> str:
    """Tell the record layout from its keys."""
    if not isinstance(obj, dict):
        raise AmautaError(f"{where}: expected a JSON object per record, found {type(obj).__name__}")
    keys = set(obj)
    if "messages" in keys:
        return "chat"
    if "conversations" in keys:
        return "sharegpt"
    if "instruction" in keys and "response" in keys:
        return "dolly"
    if "instruction" in keys and "output" in keys:
        return "alpaca"
    if "data" in keys:
        return "squad"
    known = ["instruction", "input", "output", "response", "context", "messages", "conversations"]
    hints = "".join(did_you_mean(str(k), known) for k in keys)
    raise AmautaError(f"{where}: cannot tell the format from the keys {sorted(map(str, keys))}{hints}; set the source's "
                      "'format' (alpaca, dolly, chat, sharegpt, squad) or map them with 'columns'")


def _convert_rows(items: Iterator[tuple[str, Any]], spec: SourceConfig, rows: _Rows, result: ReadResult) -> None:
    """Turn (where, object) rows into records with the source's (or detected) format; check duplicate ids."""
    fmt = "columns" if spec.columns else (None if spec.format == "auto" else spec.format)
    seen_ids: dict[str, str] = {}
    for where, obj in items:
        try:
            if fmt is None:
                fmt = detect_format(obj, where)
                if fmt == "squad":
                    raise AmautaError(f"{where}: a SQuAD document must be the whole file, not one record of a list")
            if not isinstance(obj, dict):
                raise AmautaError(f"{where}: expected a JSON object, found {type(obj).__name__}")
            rid = obj.get("id")
            if rid is not None:
                key = str(rid)
                if key in seen_ids:
                    raise AmautaError(f"{where}: duplicate id {key!r} (first used at {seen_ids[key]}); ids must be "
                                      "unique within a file: rename or remove one")
                seen_ids[key] = where
            result.records.append(CONVERTERS[fmt](obj, where, spec))
        except AmautaError as exc:
            rows.fail(str(exc))


def read_squad(path: Path, text: str, spec: SourceConfig, rows: _Rows, result: ReadResult) -> None:
    """SQuAD JSON: every answerable question becomes (passage + question → first answer)."""
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as exc:
        cut = not text.rstrip().endswith("}")  # a whole document ends with its brace
        why = "the file is cut short; export it again" if cut else json_error_detail(exc)
        raise AmautaError(f"{path}:{exc.lineno}: invalid SQuAD JSON ({why})") from None
    except RecursionError:
        raise AmautaError(too_deep_message(f"{path}:{nesting_line(text)}")) from None
    if not isinstance(doc, dict) or not isinstance(doc.get("data"), list):
        raise AmautaError(f"{path}: SQuAD JSON needs a top-level object with a 'data' list of articles")
    seen: dict[str, str] = {}
    for a, article in enumerate(doc["data"]):
        paragraphs = article.get("paragraphs") if isinstance(article, dict) else None
        if not isinstance(paragraphs, list):
            rows.fail(f"{path}: data[{a}]: article needs a 'paragraphs' list")
            continue
        for p, para in enumerate(paragraphs):
            if not isinstance(para, dict) or not isinstance(para.get("context"), str) or not isinstance(para.get("qas"), list):
                rows.fail(f"{path}: data[{a}].paragraphs[{p}]: needs a string 'context' and a 'qas' list")
                continue
            for q, qa in enumerate(para["qas"]):
                where = f"{path}: data[{a}].paragraphs[{p}].qas[{q}]"
                try:
                    if not isinstance(qa, dict):
                        raise AmautaError(f"{where}: question must be an object, got {type(qa).__name__}")
                    if qa.get("id") is not None:
                        where += f" (id {qa['id']})"
                        if str(qa["id"]) in seen:
                            raise AmautaError(f"{where}: duplicate id (first at {seen[str(qa['id'])]}); ids must be unique")
                        seen[str(qa["id"])] = where
                    question = _text(qa, "question", where, "SQuAD")
                    answers = qa.get("answers") or []
                    if qa.get("is_impossible") or not answers:
                        result.skipped["unanswerable"] += 1
                        continue
                    if not isinstance(answers, list) or not all(isinstance(a, dict) for a in answers):
                        raise AmautaError(f"{where}: 'answers' must be a list of {{text, answer_start}} objects")
                    texts = [_text(a, "text", where, "SQuAD answer").strip() for a in answers]
                    # The most given non-empty answer (SQuAD-es lost some answers in translation: "").
                    texts = [t for t in texts if t] or [""]
                    answer = max(texts, key=texts.count)
                    bad = _bad_utf8(para["context"] + question + answer, where)
                    if bad:
                        raise AmautaError(bad)
                    user = SQUAD_PROMPT.format(context=para["context"], question=question)
                    messages = _with_system([{"role": "user", "content": user}, {"role": "assistant", "content": answer}],
                                            spec.system)
                    result.records.append(Record(messages, spec.source_name, spec.category or "qa", where=where))
                except AmautaError as exc:
                    rows.fail(str(exc))


def _delimiter_hint(text: str, delimiter: str) -> str:
    """'; the header is separated by ';': set delimiter: ";" in the source' when the header says so, else ''.

    csv.Sniffer guesses the separator from the first lines; a spreadsheet saved with a Spanish locale
    writes ';' (the ',' is the decimal mark there), which the default ',' reads as one column.
    """
    sample = "\n".join(text.splitlines()[:20])
    try:
        found = csv.Sniffer().sniff(sample, delimiters=";\t|,").delimiter
    except csv.Error:
        return ""
    header = text.split("\n", 1)[0]
    if found == delimiter or header.count(found) <= header.count(delimiter):
        return ""
    return f"; the header is separated by {found!r}: set delimiter: {json.dumps(found)} in the source"


def iter_csv_rows(path: Path, text: str, spec: SourceConfig, rows: _Rows) -> Iterator[tuple[str, dict]]:
    """Yield (where, row dict) for a CSV file with a header line."""
    reader = csv.reader(text.splitlines(keepends=True), delimiter=spec.delimiter)
    try:
        header = next(reader)
    except StopIteration:
        raise AmautaError(f"{path}: CSV file has no header line") from None
    header = [h.strip() for h in header]
    wanted = spec.columns or {}
    for ours, theirs in wanted.items():
        if theirs not in header:
            raise AmautaError(f"{path}:1: CSV has no column '{theirs}' (mapped to {ours}){did_you_mean(theirs, header)}; "
                              f"the header has: {', '.join(header)}{_delimiter_hint(text, spec.delimiter)}")
    if not wanted and not ({"instruction", "output"} <= set(header) or {"instruction", "response"} <= set(header)):
        raise AmautaError(f"{path}:1: CSV columns {header} are not Alpaca/Dolly names; map them with 'columns: "
                          "{instruction: ..., output: ...}' in the source" + _delimiter_hint(text, spec.delimiter))
    try:
        for values in reader:
            where = f"{path}:{reader.line_num}"
            if not any(v.strip() for v in values):
                continue
            if len(values) != len(header):
                rows.fail(f"{where}: row has {len(values)} fields but the header has {len(header)}; check quoting and "
                          f"the delimiter ({spec.delimiter!r}){_delimiter_hint(text, spec.delimiter)}")
                continue
            bad = _bad_utf8(spec.delimiter.join(values), where)
            if bad:
                rows.fail(bad)
                continue
            yield where, dict(zip(header, values, strict=True))
    except csv.Error as exc:
        raise AmautaError(f"{path}:{reader.line_num}: malformed CSV ({exc})") from None


def iter_hf_rows(spec: SourceConfig) -> Iterator[tuple[str, dict]]:
    """Rows of a Hugging Face dataset: a hub id, a `save_to_disk` folder, or a folder of data files."""
    import datasets

    target = spec.hf or spec.path
    try:
        saved = spec.path and any((Path(spec.path) / n).exists() for n in ("dataset_info.json", "dataset_dict.json"))
        if saved:
            ds = datasets.load_from_disk(spec.path)
        else:
            ds = datasets.load_dataset(target, spec.subset, split=spec.split)
    except FileNotFoundError as exc:
        raise AmautaError(f"{target}: dataset not found ({exc}); check the id or folder") from None
    except Exception as exc:  # datasets raises many types: network, missing split, bad files
        raise AmautaError(f"{target}: could not load the dataset ({type(exc).__name__}: {str(exc).splitlines()[0][:200]})") from None
    if isinstance(ds, datasets.DatasetDict):
        if spec.split not in ds:
            raise AmautaError(f"{target}: no split '{spec.split}'{did_you_mean(spec.split, list(ds))}; "
                              f"splits are: {', '.join(ds)}")
        ds = ds[spec.split]
    for i, row in enumerate(ds):
        yield f"{target}[{spec.split}] row {i}", row


def read_source(spec: SourceConfig, *, skip_invalid: bool = False, max_record_chars: int = 1_000_000) -> ReadResult:
    """Read one source into records (see the module docstring for formats and errors)."""
    result = ReadResult()
    rows = _Rows(skip_invalid)
    if spec.hf or (spec.path and Path(spec.path).is_dir()):
        if spec.format in ("squad", "csv"):
            raise AmautaError(f"{spec.hf or spec.path}: format '{spec.format}' is for files; a dataset is read by its columns")
        _convert_rows(iter_hf_rows(spec), spec, rows, result)
        if spec.path:
            result.inputs = sorted(p for p in Path(spec.path).rglob("*") if p.is_file())
        result.invalid = rows.invalid
        return result
    path = Path(spec.path)
    if not path.exists():
        raise AmautaError(f"{path}: input file not found (paths are relative to the current folder, {Path.cwd()})")
    result.inputs = [path]
    try:
        text = _decode(path)
    except AmautaError as exc:
        rows.fail(str(exc))  # an empty or UTF-16 file: a whole source is bad
        result.invalid = rows.invalid
        return result
    fmt = spec.format
    if fmt == "auto" and path.suffix.lower() in (".csv", ".tsv"):
        fmt = "csv"
    if fmt == "csv":
        _convert_rows(iter_csv_rows(path, text, spec, rows), spec, rows, result)
    elif fmt == "squad" or (fmt == "auto" and _is_one_document(path, text)):
        read_squad(path, text, spec, rows, result)
    else:
        if text.lstrip()[:1] not in ("[", "{"):
            rows.fail(f"{path}:1: not JSON (starts with {text.lstrip()[:20]!r}); expected JSONL or a JSON array"
                      + (" — for CSV set format: csv" if "," in text.splitlines()[0] else ""))
        else:
            _convert_rows(iter_json_rows(path, text, rows, max_record_chars), spec, rows, result)
    result.invalid = rows.invalid
    return result


def _is_one_document(path: Path, text: str) -> bool:
    """Whether the file is a single JSON object with a 'data' list (SQuAD) rather than JSONL records.

    A pretty-printed object spans many lines, so its first line alone is not JSON; a one-line SQuAD
    file is one JSON line whose object holds 'data'. A single object without 'data' is refused here,
    since reading it line by line would only give a confusing error on line 1.
    """
    body = text.lstrip()
    if not body.startswith("{"):
        return False
    first, _, rest = body.partition("\n")
    try:
        obj = json.loads(first)
    except RecursionError:
        return False  # a record nested too deeply: the line reader names its line
    except json.JSONDecodeError:
        try:
            obj = json.loads(body)
        except (json.JSONDecodeError, RecursionError):
            return False  # broken JSONL or a broken document: the line reader names the line
        if isinstance(obj, dict) and "data" not in obj:
            raise AmautaError(f"{path}: one JSON object spread over many lines, not records; write one record per "
                              "line (JSONL), a JSON array of records, or SQuAD JSON with a 'data' list") from None
        return True
    return isinstance(obj, dict) and isinstance(obj.get("data"), list) and not rest.strip()
