"""Library noise goes to amauta.log: logging, warnings and progress bars, also of libraries imported later."""

from __future__ import annotations

import logging
import sys
import textwrap
import warnings

import pytest

from amauta.core import logs
from amauta.core.outdir import claim


def _library_warning(text: str) -> None:
    """A warning as a library raises it (from its own file), shown whatever was shown before."""
    warnings.warn_explicit(text, FutureWarning, "/site-packages/somelib/core.py", 7)


def test_logging_warnings_and_bars_of_transformers_go_to_the_log_and_come_back(tmp_path, capfd):
    from transformers.utils import logging as hf_logging

    bars_before = hf_logging.is_progress_bar_enabled()
    handlers_before = list(logging.getLogger().handlers)
    show_before = warnings.showwarning
    with logs.capture_libraries(tmp_path / "amauta.log", verbose=False):
        hf_logging.get_logger("transformers.modeling_utils").warning("a note from transformers")
        _library_warning("a deprecation from a library")
        for _ in hf_logging.tqdm(range(3), desc="Loading weights"):
            pass
        assert not hf_logging.is_progress_bar_enabled()
    out, err = capfd.readouterr()
    assert out == "" and err == ""
    text = (tmp_path / "amauta.log").read_text(encoding="utf-8")
    assert "a note from transformers" in text and "FutureWarning: a deprecation from a library" in text
    # Everything is put back: the next command (or test) sees the libraries as they were.
    assert hf_logging.is_progress_bar_enabled() == bars_before
    assert logging.getLogger().handlers == handlers_before and warnings.showwarning is show_before
    hf_logging.get_logger("transformers.modeling_utils").warning("after the capture")
    assert "after the capture" in capfd.readouterr().err


def test_a_library_imported_inside_the_capture_is_quieted_too(tmp_path, monkeypatch, capfd):
    # A library that, like datasets and the hub, gives its logger a stderr handler when imported.
    (tmp_path / "noisylib_logging.py").write_text(textwrap.dedent("""
        import logging
        logger = logging.getLogger("noisylib")
        logger.addHandler(logging.StreamHandler())
        logger.propagate = False
    """))
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "noisylib_logging", raising=False)
    monkeypatch.setitem(logs._LIBRARY_SWITCHES, "noisylib_logging", logs._quiet_library_logger("noisylib"))
    with logs.capture_libraries(tmp_path / "amauta.log", verbose=False):
        import noisylib_logging  # noqa: F401  (imported after the capture opened)

        logging.getLogger("noisylib.sub").warning("noisylib speaks")
    assert capfd.readouterr().err == ""
    assert "noisylib speaks" in (tmp_path / "amauta.log").read_text(encoding="utf-8")
    logging.getLogger("noisylib.sub").warning("noisylib again")  # its own handler is back
    assert "noisylib again" in capfd.readouterr().err


def test_a_single_stage_command_logs_into_the_folder_it_claimed(tmp_path, capfd):
    with logs.capture_libraries(verbose=False):
        _library_warning("said before the folder was known")
        with claim(tmp_path / "run", "demo.stage") as folder:
            folder.start({"x": 1})
            _library_warning("said while the stage ran")
        _library_warning("said after")
    assert capfd.readouterr().err == ""
    text = (tmp_path / "run" / logs.LOG_NAME).read_text(encoding="utf-8")
    assert [w in text for w in ("said before", "said while", "said after")] == [True, True, True]


def test_a_refused_folder_gets_no_log(tmp_path):
    other = tmp_path / "theirs"
    other.mkdir()
    (other / "manifest.json").write_text('{"stage": "train"}')
    with logs.capture_libraries(verbose=False):
        _library_warning("a warning")
        with pytest.raises(Exception, match="not a demo.stage folder"), claim(other, "demo.stage"):
            pass
    assert not (other / logs.LOG_NAME).exists()


def test_verbose_leaves_the_libraries_on_screen(tmp_path, capfd, monkeypatch):
    from transformers.utils import logging as hf_logging

    monkeypatch.setenv(logs.VERBOSE_ENV, "1")
    with logs.capture_libraries(tmp_path / "amauta.log") as capture:
        hf_logging.get_logger("transformers.modeling_utils").warning("shown on screen")
    assert capture is None and not (tmp_path / "amauta.log").exists()
    assert "shown on screen" in capfd.readouterr().err


def test_the_log_file_does_not_make_a_folder_foreign(tmp_path):
    with claim(tmp_path / "run", "demo.stage") as folder:
        folder.start({"x": 1})
    (tmp_path / "run" / logs.LOG_NAME).write_text("a log\n")
    with claim(tmp_path / "run", "demo.stage", overwrite=True) as folder:
        assert folder.foreign_entries() == []
