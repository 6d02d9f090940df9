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


# ----------------------------------------------------------------------- one reader path (issue 10, item 9)

LATIN1 = '{"texto": "¿Cuál es la tarifa?"}\n'.encode("latin-1")


def test_read_jsonl_names_the_line_and_byte_of_text_that_is_not_utf8(tmp_path):
    path = tmp_path / "x.jsonl"
    path.write_bytes(b'{"a": 1}\n' + LATIN1 + b'{"a": 2}\n')
    with pytest.raises(AmautaError) as info:
        list(read_jsonl(path))
    assert str(info.value).startswith(f"{path}:2: not UTF-8 text (byte 0xbf at column 12); save the file as UTF-8")
    assert list(read_jsonl(path, skip_invalid=True)) == [{"a": 1}, {"a": 2}]


def test_read_jsonl_tolerates_a_multibyte_character_torn_by_a_killed_writer(tmp_path):
    path = tmp_path / "cache.jsonl"
    append_jsonl(path, {"id": 1})
    with open(path, "ab") as handle:
        handle.write('{"id": 2, "texto": "á'.encode()[:-1])  # cut inside "á"
    assert list(read_jsonl(path, tolerate_torn_tail=True)) == [{"id": 1}]


def test_read_jsonl_refuses_a_line_nested_too_deeply_in_one_line(tmp_path):
    path = tmp_path / "x.jsonl"
    path.write_text('{"a": 1}\n{"a": ' + "[" * 100_000 + "]" * 100_000 + "}\n", encoding="utf-8")
    with pytest.raises(AmautaError, match=rf"^{path}:2: nested too deeply to read") as info:
        list(read_jsonl(path))
    assert "\n" not in str(info.value)
    assert list(read_jsonl(path, skip_invalid=True)) == [{"a": 1}]


def test_json_messages_read_naturally(tmp_path):
    path = tmp_path / "x.jsonl"
    path.write_text('{"a": "sin cerrar}\n', encoding="utf-8")
    with pytest.raises(AmautaError) as info:
        list(read_jsonl(path))
    assert "Unterminated string starting at column 7" in str(info.value) and "at at" not in str(info.value)


@pytest.mark.parametrize("data, message", [
    (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR", ":1: not UTF-8 text (byte 0x89 at column 1); save the file as UTF-8"),
    ("model: tiny-llama\nnota: Año\n".encode("latin-1"), ":2: not UTF-8 text (byte 0xf1 at column 8)"),
    ("model: tiny-llama\n".encode("utf-16"), ":1: not UTF-8 text (byte 0xff at column 1); save the file as UTF-8 "
                                             "(it looks UTF-16"),
    (b"model: tiny-llama\x00\x01\x02\n", ":1: not a YAML text file (character #x00"),
    (b"model: " + b"[" * 5000 + b"]" * 5000 + b"\n", ":1: nested too deeply to read"),
    (("model: tiny-llama\nx:\n" + "".join("  " * i + f"k{i}:\n" for i in range(1, 2000)) + "  " * 2000 + "v: 1\n")
     .encode(), ":2002: nested too deeply to read"),
])
def test_yaml_config_that_cannot_be_read_is_one_line_naming_file_and_line(tmp_path, data, message):
    path = tmp_path / "c.yaml"
    path.write_bytes(data)
    with pytest.raises(AmautaError) as info:
        load_config(Run, path)
    text = str(info.value)
    assert text.startswith(str(path) + message) and "\n" not in text


def test_yaml_config_with_a_utf8_bom_is_read(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_bytes(b"\xef\xbb\xbfmodel: tiny-llama\n")
    assert load_config(Run, path).model == "tiny-llama"


def test_a_key_at_the_wrong_level_is_suggested_by_its_dotted_path(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("model: tiny-llama\nweight_decay: 0.1\n")
    with pytest.raises(AmautaError, match=r"unknown key 'weight_decay' \(did you mean: optim.weight_decay\?\)"):
        load_config(Run, path)
    path.write_text("model: tiny-llama\noptim:\n  model: x\n")
    with pytest.raises(AmautaError, match=r"unknown key 'optim.model' \(did you mean: model\?\)"):
        load_config(Run, path)


def test_train_config_learning_rate_points_to_optimizer_lr(tmp_path):
    from amauta.train.config import TrainConfig

    data = {"model": "tiny-llama", "dataset": "d", "output_dir": "o"}
    path = tmp_path / "t.yaml"
    for key, suggestion in [("learning_rate", "optimizer.lr"), ("lr", "optimizer.lr"), ("rank", "lora.r"),
                            ("max_grad_norm", "optimizer.max_grad_norm")]:
        path.write_text("".join(f"{k}: {v}\n" for k, v in {**data, key: 1}.items()))
        with pytest.raises(AmautaError) as info:
            load_config(TrainConfig, path)
        assert str(info.value).endswith(f"unknown key '{key}' (did you mean: {suggestion}?)"), str(info.value)
    path.write_text("".join(f"{k}: {v}\n" for k, v in data.items()) + "lora:\n  learning_rate: 1\n")
    with pytest.raises(AmautaError, match=r"unknown key 'lora.learning_rate' \(did you mean: optimizer.lr\?\)"):
        load_config(TrainConfig, path)
