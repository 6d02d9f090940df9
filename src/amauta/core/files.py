"""Files written atomically, and JSONL read with errors that name the file and line.

A killed run must never leave a half-written file that a later stage reads as finished: every write goes
to a temporary name in the same folder, is flushed to disk, and is renamed into place.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from amauta.core.errors import AmautaError


def _current_umask() -> int:
    umask = os.umask(0)
    os.umask(umask)
    return umask


# The modes a plain open()/mkdir() would give: mkstemp's 0600 and mkdtemp's 0700 would hide outputs from other users.
_FILE_MODE = 0o666 & ~_current_umask()
_DIR_MODE = 0o777 & ~_current_umask()


def give_usual_permissions(folder: str | Path) -> None:
    """Give every file under `folder` the mode a plain open() would (0666 less the umask).

    safetensors (through transformers' and peft's save_pretrained) writes weights as private 0600 files,
    unreadable to the other users an export or a shared cache is for.
    """
    for path in Path(folder).rglob("*"):
        if path.is_file() and not path.is_symlink():
            path.chmod(_FILE_MODE)


def _fsync_dir(path: Path) -> None:
    with contextlib.suppress(OSError):
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def atomic_write_bytes(path: str | Path, data: bytes) -> Path:
    """Write `data` to `path` through a temporary file and a rename."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.fchmod(fd, _FILE_MODE)
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    _fsync_dir(path.parent)
    return path


def atomic_write_text(path: str | Path, text: str) -> Path:
    """Write UTF-8 text atomically."""
    return atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: str | Path, obj: Any, indent: int = 2) -> Path:
    """Write an object as pretty JSON (UTF-8, accents kept) atomically."""
    return atomic_write_text(path, json.dumps(obj, ensure_ascii=False, indent=indent, default=str) + "\n")


def atomic_write_jsonl(path: str | Path, rows: Iterable[Any]) -> Path:
    """Write one JSON object per line atomically."""
    lines = [json.dumps(row, ensure_ascii=False, default=str) for row in rows]
    return atomic_write_text(path, "\n".join(lines) + ("\n" if lines else ""))


def append_jsonl(path: str | Path, row: Any) -> None:
    """Append one JSON line and flush it to disk: for caches and logs that a killed run must keep."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a", encoding="utf-8") as handle:
        handle.write(json.dumps(row, ensure_ascii=False, default=str) + "\n")
        handle.flush()
        os.fsync(handle.fileno())


def not_utf8_message(where: str, byte: int, column: int, encoding: str | None = None) -> str:
    """The one message for text that is not UTF-8: `FILE:LINE: not UTF-8 text (byte 0x.. at column N); ...`.

    encoding: what the file seems to be instead (default: Latin-1/Windows-1252 for bytes 0xA0–0xFF).
    """
    if encoding is None and 0xA0 <= byte <= 0xFF:
        encoding = "WINDOWS-1252"
    shown = {"WINDOWS-1252": "Latin-1/Windows-1252"}.get(encoding, encoding)
    hint = f" (it looks {shown} encoded: iconv -f {encoding} -t UTF-8)" if encoding else ""
    return f"{where}: not UTF-8 text (byte 0x{byte:02x} at column {column}); save the file as UTF-8{hint}"


def decode_utf8(data: bytes, path: str | Path, first_line: int = 1) -> str:
    """`data` (a file or one line of it) as text; a UTF-8 BOM is dropped, other bytes raise `AmautaError`.

    The error names the line and the column (in characters) of the first byte that is not UTF-8.
    """
    if data.startswith(b"\xef\xbb\xbf"):
        data = data[3:]
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line_start = data.rfind(b"\n", 0, exc.start) + 1
        line = first_line + data.count(b"\n", 0, exc.start)
        column = len(data[line_start:exc.start].decode("utf-8", errors="replace")) + 1
        utf16 = "UTF-16" if first_line == 1 and data[:2] in (b"\xff\xfe", b"\xfe\xff") else None
        raise AmautaError(not_utf8_message(f"{path}:{line}", data[exc.start], column, utf16)) from None


def read_text(path: str | Path) -> str:
    """A UTF-8 text file's content (BOM accepted); a file in another encoding or binary raises one clear line."""
    return decode_utf8(Path(path).read_bytes(), path)


def json_error_detail(exc: json.JSONDecodeError) -> str:
    """json's message with the column, reading naturally ("Unterminated string starting at column 9")."""
    joiner = " " if exc.msg.endswith(" at") else " at "
    return f"{exc.msg}{joiner}column {exc.colno}"


def nesting_line(text: str) -> int:
    """The line where the brackets of a JSON (or YAML flow) text first reach their deepest level.

    Text without brackets (YAML's block style nests by indentation): the first most indented line.
    """
    depth = deepest = 0
    line = where = 1
    in_string = escaped = False
    for char in text:
        if char == "\n":
            line += 1
        elif in_string:  # brackets inside strings do not count
            if escaped:
                escaped = False
            elif char == "\\":
                escaped = True
            elif char == '"':
                in_string = False
        elif char == '"':
            in_string = True
        elif char in "[{":
            depth += 1
            if depth > deepest:
                deepest, where = depth, line
        elif char in "]}":
            depth -= 1
    if deepest == 0:
        indents = [len(row) - len(row.lstrip(" ")) for row in text.split("\n")]
        return indents.index(max(indents)) + 1 if indents else 1
    return where


def too_deep_message(where: str) -> str:
    """The one message for a JSON/YAML value nested deeper than Python's parsers can follow."""
    return f"{where}: nested too deeply to read (hundreds of levels of brackets); flatten this record or remove it"


def parse_json(text: str, path: str | Path, first_line: int = 1, fix: str = "fix or remove the line") -> Any:
    """`json.loads(text)`, whose errors become one line naming the file and line.

    text: a whole JSON file, or one line of a JSONL file (then `first_line` is its number).
    fix: what the message tells the user to do about invalid JSON.
    """
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        where = f"{path}:{first_line + exc.lineno - 1}"
        raise AmautaError(f"{where}: invalid JSON ({json_error_detail(exc)}); {fix}") from None
    except RecursionError:
        raise AmautaError(too_deep_message(f"{path}:{first_line + nesting_line(text) - 1}")) from None


def read_jsonl(path: str | Path, *, skip_invalid: bool = False, tolerate_torn_tail: bool = False) -> Iterator[dict]:
    """Yield the JSON objects of a JSONL file.

    A malformed line (invalid JSON, not UTF-8, nested too deeply, not an object) raises `AmautaError`
    naming the file and line, unless `skip_invalid` is set.
    `tolerate_torn_tail` drops a last line cut short by a killed writer (for append-only caches).
    """
    path = Path(path)
    if not path.is_file():
        raise AmautaError(f"{path}: file not found")
    lines = path.read_bytes().splitlines(keepends=True)
    for number, raw in enumerate(lines, start=1):
        torn = tolerate_torn_tail and number == len(lines) and not raw.endswith(b"\n")
        try:
            line = decode_utf8(raw, path, first_line=number)
            if not line.strip():
                continue
            obj = parse_json(line.rstrip("\r\n"), path, first_line=number)
        except AmautaError:  # not UTF-8, invalid JSON or nested too deeply
            if skip_invalid or torn:
                continue
            raise
        if not isinstance(obj, dict):
            if skip_invalid:
                continue
            raise AmautaError(f"{path}:{number}: expected a JSON object, found {type(obj).__name__}")
        yield obj


@contextlib.contextmanager
def atomic_dir(path: str | Path, *, overwrite: bool = False) -> Iterator[Path]:
    """Build a folder under a temporary name and rename it into place when the block succeeds.

    Nothing half-built is ever visible at `path`; on error the temporary folder is removed.
    overwrite: replace (and delete) an existing non-empty folder at `path`. Pass it only for a folder the
        caller made itself: a stage's output folder goes through `amauta.core.outdir.claim`, which checks that.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.exists() and not overwrite and (not path.is_dir() or any(path.iterdir())):
        raise AmautaError(f"{path}: already exists; choose another output folder or pass --overwrite")
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent))
    os.chmod(tmp, _DIR_MODE)
    try:
        yield tmp
        if path.exists():
            old = path.with_name(f".{path.name}.old")
            shutil.rmtree(old, ignore_errors=True)
            os.replace(path, old)
            os.replace(tmp, path)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, path)
        _fsync_dir(path.parent)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def sha256_file(path: str | Path, chunk: int = 1 << 20) -> str:
    """The SHA-256 of a file's bytes (for manifests and content-hash caches)."""
    import hashlib

    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(chunk):
            digest.update(block)
    return digest.hexdigest()
