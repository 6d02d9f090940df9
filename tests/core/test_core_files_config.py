"""Core helpers: atomic writes never leave half files; JSONL and YAML errors name file and line."""

from __future__ import annotations

import pytest

from amauta.core.config import StageConfig, load_config
from amauta.core.errors import AmautaError
from amauta.core.files import append_jsonl, atomic_dir, atomic_write_jsonl, read_jsonl


def test_atomic_dir_leaves_nothing_on_failure_and_replaces_on_success(tmp_path):
    target = tmp_path / "ds"
    with pytest.raises(RuntimeError):
        with atomic_dir(target) as tmp:
            (tmp / "train.jsonl").write_text("x")
            raise RuntimeError("killed")
    assert not target.exists() and list(tmp_path.iterdir()) == []
    with atomic_dir(target) as tmp:
        (tmp / "a").write_text("1")
    with pytest.raises(AmautaError, match="ds: already exists"):  # replacing is asked for, never a default
        with atomic_dir(target) as tmp:
            (tmp / "b").write_text("2")
    assert sorted(p.name for p in target.iterdir()) == ["a"]
    with atomic_dir(target, overwrite=True) as tmp:
        (tmp / "b").write_text("2")
    assert sorted(p.name for p in target.iterdir()) == ["b"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ds"]


def test_read_jsonl_names_file_and_line(tmp_path):
    path = tmp_path / "x.jsonl"
    path.write_text('{"a": 1}\n{"a": \n')
    with pytest.raises(AmautaError, match=r"x.jsonl:2: invalid JSON"):
        list(read_jsonl(path))
    assert list(read_jsonl(path, skip_invalid=True)) == [{"a": 1}]


def test_torn_tail_of_an_append_only_cache_is_tolerated(tmp_path):
    path = tmp_path / "cache.jsonl"
    append_jsonl(path, {"id": 1})
    with open(path, "a") as handle:
        handle.write('{"id": 2, "sco')  # a writer killed mid-line
    assert list(read_jsonl(path, tolerate_torn_tail=True)) == [{"id": 1}]
    with pytest.raises(AmautaError):
        list(read_jsonl(path))


def test_atomic_jsonl_round_trip_keeps_accents(tmp_path):
    rows = [{"texto": "¿Cuál es la tarifa del IVA?"}]
    atomic_write_jsonl(tmp_path / "r.jsonl", rows)
    assert list(read_jsonl(tmp_path / "r.jsonl")) == rows


class Optim(StageConfig):
    lr: float = 2e-4
    weight_decay: float = 0.0


class Run(StageConfig):
    model: str
    optim: Optim = Optim()


def test_config_suggests_the_right_key_and_applies_overrides(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("model: tiny-llama\noptim:\n  lr: 1e-3\n  weigth_decay: 0.1\n")
    with pytest.raises(AmautaError, match=r"unknown key 'optim.weigth_decay' \(did you mean: weight_decay\?\)"):
        load_config(Run, path)
    path.write_text("model: tiny-llama\noptim:\n  lr: 1e-3\n")
    assert load_config(Run, path, {"optim.lr": 5e-5}).optim.lr == 5e-5
    path.write_text("model: [unclosed\n")
    with pytest.raises(AmautaError, match=r"c.yaml:\d+: invalid YAML"):
        load_config(Run, path)


def test_atomic_outputs_get_the_usual_permissions(tmp_path):
    import os

    from amauta.core.files import atomic_write_text

    umask = os.umask(0o022)
    try:
        path = atomic_write_text(tmp_path / "a.txt", "x")
        with atomic_dir(tmp_path / "d"):
            pass
    finally:
        os.umask(umask)
    assert oct(path.stat().st_mode & 0o777) == oct(0o666 & ~umask)
    assert oct((tmp_path / "d").stat().st_mode & 0o777) == oct(0o777 & ~umask)


class Source(StageConfig):
    path: str
    weight: float = 1.0


class Mix(StageConfig):
    sources: list[Source]
    fallback: Source | None = None


def test_suggestions_reach_inside_lists_and_optionals(tmp_path):
    path = tmp_path / "m.yaml"
    path.write_text("sources:\n  - {path: a.jsonl, wieght: 2}\n")
    with pytest.raises(AmautaError, match=r"unknown key 'sources.0.wieght' \(did you mean: weight\?\)"):
        load_config(Mix, path)
    path.write_text("sources: []\nfallback: {path: b, wieght: 1}\n")
    with pytest.raises(AmautaError, match=r"did you mean: weight\?"):
        load_config(Mix, path)
