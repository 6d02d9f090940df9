"""One rule for every stage's output folder: Amauta never replaces or deletes what it did not make.

Every stage that writes a folder (data prepare, train, export, the evals, the judge, report, chat demo,
RAG index, pipeline runs) takes it through `claim`:

    with claim(out, "data.prepare", overwrite=overwrite) as folder:   # lock, tidy, refuse a foreign folder
        ...read the inputs...
        if folder.up_to_date(config, inputs):                        # same config and input hashes: done
            return out
        folder.check_replace(config, inputs)                         # changed: refuse, or --overwrite
        with folder.replace() as tmp:                                # built aside, renamed into place
            ...

The rule (docs/CONTRACTS.md, "Output folders"):
- A missing or empty folder is fine. A folder is a stage's own when its `manifest.json` names the stage;
  any other folder that is not empty is refused in one line and left untouched.
- Re-running into your own finished folder does nothing when the config and the inputs' hashes match and
  refuses otherwise, saying what changed. Stages that resume (train) or extend a cache (evals, judge, chat
  demo, RAG index) go on where the folder stands instead.
- `--overwrite` replaces only a folder of the same stage, and only when it holds nothing the stage did not
  write and no input of the run.
- A run holds a lock (`.NAME.lock` beside the folder, recording pid, host and start time) from its first
  check to its last write, so a second run into the same folder is refused while the first one lives.
  Holding the lock proves that whoever left temporaries (`.x.XXXXXXXX.tmp`, `.x.old`) in the folder is
  gone: they are removed then, and never while their run is alive.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import re
import shutil
import socket
import sys
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

from amauta.core import logs
from amauta.core.errors import AmautaError
from amauta.core.files import atomic_dir, sha256_file

MANIFEST = "manifest.json"

# What `atomic_dir` / `atomic_write_*` leave when killed: `.NAME.XXXXXXXX.tmp` (tempfile's 8 random
# characters) and `.NAME.old` (a folder moved aside between atomic_dir's two renames).
_TEMPORARY = re.compile(r"^\.(?P<target>.+)\.[a-z0-9_]{8}\.tmp$")
_ASIDE = re.compile(r"^\.(?P<target>.+)\.old$")

# How a refusal names the folder a stage makes.
_NOUNS = {"data.prepare": "dataset", "train": "run", "export": "export", "evaluate.report": "report",
          "evaluate.judge": "judge run", "chat.demo": "chat demo", "rag.index": "RAG index", "pipeline": "pipeline",
          "data.preferences": "preference dataset"}


def folder_noun(stage: str) -> str:
    """'dataset', 'run', 'eval'...: what a user calls the folder `stage` writes."""
    return _NOUNS.get(stage, "eval" if stage.startswith("evaluate.") else stage)


def _a(noun: str) -> str:
    return f"{'an' if noun[:1].lower() in 'aeiou' else 'a'} {noun}"


def lock_path(folder: Path) -> Path:
    """The lock file of an output folder: `.NAME.lock` beside it (it exists only while a run holds it)."""
    return folder.parent / f".{folder.name}.lock"


def is_within(path: str | Path, folder: Path) -> bool:
    """True when `path` is `folder` or lies inside it (symlinks resolved)."""
    try:
        return Path(path).resolve().is_relative_to(folder.resolve())
    except OSError:
        return False


def input_hashes(inputs: Iterable[str | Path]) -> dict[str, str]:
    """SHA-256 of each input that is a file, keyed as `write_manifest` keys them."""
    return {str(Path(p)): sha256_file(p) for p in inputs if Path(p).is_file()}


def _short(value: Any, limit: int = 60) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def differences(old: Any, new: Any, prefix: str = "") -> list[str]:
    """`key: old → new` for every value that differs between two JSON-like values (nested keys dotted,
    list items by index)."""
    if isinstance(old, dict) and isinstance(new, dict):
        out = []
        for key in sorted(set(old) | set(new), key=str):
            out += differences(old.get(key), new.get(key), f"{prefix}{key}.")
        return out
    if isinstance(old, list) and isinstance(new, list) and len(old) == len(new):
        return [d for i, (a, b) in enumerate(zip(old, new, strict=True)) for d in differences(a, b, f"{prefix}{i}.")]
    if old == new:
        return []
    where = prefix.rstrip(".") or "value"
    if isinstance(old, list) and isinstance(new, list):
        return [f"{where}: {len(old)} entries → {len(new)}"]
    return [f"{where}: {_short(old)} → {_short(new)}"]


def summarize(changes: Sequence[str], shown: int = 3) -> str:
    """The first few changes, '; '-joined, with how many more there are."""
    text = "; ".join(changes[:shown])
    return text + (f" (+{len(changes) - shown} more)" if len(changes) > shown else "")


def _as_json(config: Any) -> Any:
    if hasattr(config, "model_dump"):
        config = config.model_dump(mode="json")
    return json.loads(json.dumps(config, default=str))


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()


def _held(lock_file: Path) -> bool:
    """Whether the run recorded in a lock file may still be alive (its process exists, or it ran on
    another host, which this one cannot check). A lock file left by a killed run names a gone process."""
    if not lock_file.exists():
        return False
    try:
        owner = json.loads(lock_file.read_text(encoding="utf-8"))
        pid, host = int(owner["pid"]), owner["host"]
    except (OSError, ValueError, KeyError, TypeError):
        return True  # being written right now, or unreadable: leave it be
    if host != socket.gethostname():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def tidy(directory: Path, *, only: str | None = None) -> list[Path]:
    """Remove the temporaries a killed writer left in `directory`; return them.

    only: just those of the entry named `only` (in a parent folder, where the lock holder owns no others).
    A temporary whose target has a lock file beside it naming a live process belongs to that target's run,
    unless the target is `only`, whose lock the caller holds. A folder moved aside
    whose target is missing (killed between atomic_dir's two renames) is put back instead.
    """
    removed: list[Path] = []
    if not directory.is_dir():
        return removed
    for entry in sorted(directory.iterdir()):
        match = _TEMPORARY.match(entry.name) or _ASIDE.match(entry.name)
        if not match:
            continue
        target = match.group("target")
        if only is not None and target != only:
            continue
        if target != only and _held(directory / f".{target}.lock"):
            continue
        if match.re is _ASIDE:
            if not entry.is_dir() or entry.is_symlink():
                continue  # atomic_dir moves only folders aside: this is someone's file
            if not (directory / target).exists():
                os.replace(entry, directory / target)
                continue
        _remove(entry)
        removed.append(entry)
    return removed


class FolderLock:
    """An exclusive, non-blocking `fcntl.flock` on `.NAME.lock` beside a folder, recording its owner.

    The kernel drops the lock when its process dies (kill -9 included), so a lock that can be taken proves
    that no live run writes the folder. The file is removed on release; one left by a killed run is reused.
    """

    def __init__(self, folder: Path):
        self.folder = folder
        self.path = lock_path(folder)
        self._handle = None

    def acquire(self) -> None:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise AmautaError(f"{self.folder}: cannot create its parent folder ({exc.strerror}); "
                              "choose a folder you can write to") from None
        for _ in range(10):
            try:
                handle = open(self.path, "a+", encoding="utf-8")
            except OSError as exc:
                raise AmautaError(f"{self.folder}: cannot create the lock file {self.path} ({exc.strerror}); "
                                  "choose a folder you can write to") from None
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                owner = self.owner()
                handle.close()
                who = (f"pid {owner.get('pid')} on {owner.get('host')}, since {owner.get('started')}" if owner
                       else f"{self.path} is locked")
                raise AmautaError(f"{self.folder}: in use by another Amauta run ({who}); wait for it to end "
                                  "or choose another folder") from None
            # A finishing owner may have removed the file between our open and flock: lock the new one.
            with contextlib.suppress(FileNotFoundError):
                if os.fstat(handle.fileno()).st_ino == os.stat(self.path).st_ino:
                    break
            handle.close()
        else:
            raise AmautaError(f"{self.folder}: could not lock {self.path}; try again")
        handle.seek(0)
        handle.truncate()
        handle.write(json.dumps({"pid": os.getpid(), "host": socket.gethostname(),
                                 "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                                 "command": " ".join(sys.argv)[:300]}) + "\n")
        handle.flush()
        self._handle = handle

    def owner(self) -> dict[str, Any]:
        """What the lock file says about its holder ({} when unreadable)."""
        try:
            return json.loads(self.path.read_text(encoding="utf-8") or "{}")
        except (OSError, ValueError):
            return {}

    def release(self) -> None:
        if self._handle is None:
            return
        with contextlib.suppress(OSError):
            if os.fstat(self._handle.fileno()).st_ino == os.stat(self.path).st_ino:
                self.path.unlink()
        self._handle.close()
        self._handle = None


def visible_entries(folder: Path) -> list[Path]:
    """A folder's entries, less the temporaries a killed writer left (a folder of only those is empty)."""
    return [e for e in folder.iterdir() if not (_TEMPORARY.match(e.name) or _ASIDE.match(e.name))]


def read_manifest(folder: Path) -> dict[str, Any] | None:
    """The folder's manifest.json, None when absent; an unreadable one is an error naming it."""
    path = folder / MANIFEST
    if not path.is_file():
        return None
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        manifest = None
    if not isinstance(manifest, dict):
        raise AmautaError(f"{path}: unreadable manifest, so Amauta cannot tell who made {folder}; "
                          "choose a new or empty folder")
    return manifest


def inspect(folder: str | Path, stage: str, legacy: Callable[[Path], bool] | None = None) -> dict[str, Any] | None:
    """Whose folder this is, without changing anything: None for a missing or empty folder, the manifest
    for this stage's own (`{}` for an own folder from before manifests were written at start), or an
    `AmautaError` naming the folder and the fix.

    legacy: recognises this stage's folders that have no manifest yet (written by older Amauta versions).
    """
    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise AmautaError(f"{folder}: is a file, not a folder; choose a folder for the {folder_noun(stage)}")
    if not folder.exists() or not visible_entries(folder):
        return None
    manifest = read_manifest(folder)
    noun = folder_noun(stage)
    if manifest is None:
        if legacy is not None and legacy(folder):
            return {}
        raise AmautaError(f"{folder}: exists and is not an Amauta {noun} folder (no {MANIFEST}); Amauta "
                          f"never writes into a folder it did not make: choose a new or empty folder")
    if manifest.get("stage") != stage:
        other = manifest.get("stage")
        raise AmautaError(f"{folder}: is an Amauta {folder_noun(str(other))} folder (stage '{other}'), not "
                          f"{_a(noun)} folder; choose a new or empty folder for the {noun}")
    return manifest


class OutputFolder:
    """A stage's hold on its output folder during one run (made by `claim`)."""

    def __init__(self, path: Path, stage: str, manifest: dict[str, Any] | None, *, overwrite: bool,
                 owned: Sequence[str]):
        self.path = path
        self.stage = stage
        self.manifest = manifest
        self.overwrite = overwrite
        self.owned = tuple(owned)
        self._replaceable = manifest is None

    @property
    def is_new(self) -> bool:
        """Missing or empty."""
        return self.manifest is None

    @property
    def finished(self) -> bool:
        """This stage's own folder whose last run ended (atomic stages' manifests are always complete)."""
        return bool(self.manifest) and bool(self.manifest.get("complete", True))

    def changes(self, config: Any, inputs: Iterable[str | Path] = (), ignore: Sequence[str] = ("out", "output_dir")) -> list[str]:
        """What differs from the run that made the folder: config values and input files."""
        old = {k: v for k, v in ((self.manifest or {}).get("config") or {}).items() if k not in ignore}
        new_config = _as_json(config)
        new = {k: v for k, v in new_config.items() if k not in ignore} if isinstance(new_config, dict) else new_config
        found = differences(old, new)
        before, now = (self.manifest or {}).get("inputs") or {}, input_hashes(inputs)
        # New and changed inputs first: they are what the user just did; the order must not depend on
        # where the folders live (sorting paths alone put /check/... removals before /tmp/... additions).
        found += [f"{path} is a new input" for path in sorted(set(now) - set(before))]
        found += [f"{path} changed" for path in sorted(set(now) & set(before)) if before[path] != now[path]]
        found += [f"{path} is no longer an input" for path in sorted(set(before) - set(now))]
        return found

    def up_to_date(self, config: Any, inputs: Iterable[str | Path] = ()) -> bool:
        """True when the folder is finished from the same config and inputs (the run has nothing to do).

        With --overwrite it is never up to date: the user asked for a new build.
        """
        return not self.overwrite and self.finished and not self.changes(config, inputs)

    def check_replace(self, config: Any, inputs: Iterable[str | Path] = (), *, flag: str = "--overwrite") -> None:
        """Allow `replace()`, or refuse in one line: without --overwrite, saying what changed; with it, when
        the folder holds an input of this run or anything the stage did not write."""
        if self.is_new:
            return
        inputs = list(inputs)
        if not self.overwrite:
            changed = self.changes(config, inputs) if self.finished else ["its last run did not finish"]
            raise AmautaError(f"{self.path}: holds {_a(folder_noun(self.stage))} made from other inputs "
                              f"({summarize(changed or ['nothing but the request to rebuild'])}); pass {flag} "
                              "to replace it, or choose another folder")
        self.check_replaceable(inputs)

    def check_replaceable(self, inputs: Iterable[str | Path] = ()) -> None:
        """Refuse to replace a folder that holds an input of this run or a file the stage did not write."""
        for path in inputs:
            if is_within(path, self.path):
                raise AmautaError(f"{self.path}: holds {path}, an input of this run, so it cannot be replaced; "
                                  "choose another output folder")
        foreign = self.foreign_entries()
        if foreign:
            raise AmautaError(f"{self.path}: holds {', '.join(foreign[:3])}{' and more' if len(foreign) > 3 else ''}, "
                              f"which Amauta did not write there; move it out or choose another output folder")
        self._replaceable = True

    def foreign_entries(self) -> list[str]:
        """Top-level names in the folder that neither its manifest's `files` nor the stage's own names list."""
        known = set((self.manifest or {}).get("files") or []) | set(self.owned) | {MANIFEST, logs.LOG_NAME}
        if not self.path.is_dir():
            return []
        return sorted(e.name for e in self.path.iterdir()
                      if e.name not in known and not _TEMPORARY.match(e.name) and not _ASIDE.match(e.name))

    @contextlib.contextmanager
    def replace(self) -> Iterator[Path]:
        """Build the folder under a temporary name and rename it into place (replacing only a folder
        `check_replace` verified as this stage's own)."""
        if not self._replaceable:
            raise RuntimeError(f"{self.path}: replace() before check_replace() allowed it")
        with atomic_dir(self.path, overwrite=True) as tmp:
            yield tmp

    def start(self, config: Any, inputs: Iterable[str | Path] = (), **extra: Any) -> None:
        """Mark a new folder as this stage's (manifest with `complete: false`) before any result is written,
        so a killed run's folder is recognised, resumed and tidied next time."""
        from amauta.core.manifest import write_manifest

        if self.manifest:
            return
        self.path.mkdir(parents=True, exist_ok=True)
        write_manifest(self.path, self.stage, config, list(inputs), complete=False, **extra)
        self.manifest = read_manifest(self.path)

    def clear(self) -> None:
        """Empty this stage's own folder to start afresh (after `check_replaceable`)."""
        if not self._replaceable:
            raise RuntimeError(f"{self.path}: clear() before check_replaceable() allowed it")
        if self.path.exists():
            aside = self.path.with_name(f".{self.path.name}.old")
            _remove(aside)
            os.replace(self.path, aside)  # killed here, the next claim puts it back
            self.path.mkdir()
            _remove(aside)
        self.manifest = None


@contextlib.contextmanager
def claim(folder: str | Path, stage: str, *, overwrite: bool = False, legacy: Callable[[Path], bool] | None = None,
          owned: Sequence[str] = (), subfolders: Sequence[str] = (), quiet: bool = False) -> Iterator[OutputFolder]:
    """Hold `folder` for one run of `stage`: lock it, tidy what a killed run left, refuse a foreign folder.

    overwrite: the user's --overwrite (see `OutputFolder.check_replace`).
    legacy: recognises this stage's folders written before manifests were (see `inspect`).
    owned: names the stage writes at the top of its folder (besides its manifest's `files`).
    subfolders: folders inside it where the stage's temporaries may lie too (e.g. `checkpoints`).
    quiet: do not report the temporaries removed.
    """
    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        inspect(folder, stage)  # the one-line refusal, before a lock file appears beside it
    lock = FolderLock(folder)
    lock.acquire()
    logs.folder_claimed(folder)
    ours = False  # a refused folder gets no amauta.log
    try:
        removed = tidy(folder.parent, only=folder.name)
        manifest = inspect(folder, stage, legacy)
        ours = True
        if folder.is_dir():  # this stage's own folder, or one holding nothing but temporaries
            for sub in ("", *subfolders):
                removed += tidy(folder / sub)
        if removed and not quiet:
            from rich.console import Console
            from rich.markup import escape

            names = ", ".join(str(p.relative_to(folder.parent)) for p in removed[:3])
            Console(stderr=True, highlight=False).print(
                escape(f"removed {len(removed)} temporar{'y' if len(removed) == 1 else 'ies'} left by a killed run: {names}"
                       + (" …" if len(removed) > 3 else "")))
        yield OutputFolder(folder, stage, manifest, overwrite=overwrite, owned=owned)
    except AmautaError:
        ours = False  # a refusal (e.g. the run's dataset changed) leaves the folder as it was: no amauta.log either
        raise
    finally:
        lock.release()
        logs.folder_released(folder, ours)  # the first folder a command finishes gets its amauta.log
