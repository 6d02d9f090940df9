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


def read_jsonl(path: str | Path, *, skip_invalid: bool = False, tolerate_torn_tail: bool = False) -> Iterator[dict]:
    """Yield the JSON objects of a JSONL file.

    A malformed line raises `AmautaError` naming the file and line, unless `skip_invalid` is set.
    `tolerate_torn_tail` drops a last line cut short by a killed writer (for append-only caches).
    """
    path = Path(path)
    if not path.is_file():
        raise AmautaError(f"{path}: file not found")
    with open(path, encoding="utf-8-sig") as handle:
        lines = handle.readlines()
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as exc:
            last = number == len(lines)
            if skip_invalid or (tolerate_torn_tail and last and not line.endswith("\n")):
                continue
            raise AmautaError(f"{path}:{number}: invalid JSON ({exc.msg} at column {exc.colno}); fix or remove the line") from None
        if not isinstance(obj, dict):
            if skip_invalid:
                continue
            raise AmautaError(f"{path}:{number}: expected a JSON object, found {type(obj).__name__}")
        yield obj


@contextlib.contextmanager
def atomic_dir(path: str | Path, *, overwrite: bool = True) -> Iterator[Path]:
    """Build a folder under a temporary name and rename it into place when the block succeeds.

    Nothing half-built is ever visible at `path`; on error the temporary folder is removed.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.exists() and not overwrite:
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
