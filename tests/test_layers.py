"""The rooms of src/amauta stay layered: each imports only the rooms below it, and nothing imports in a circle.

The contracts live in pyproject.toml (`[tool.importlinter]`) and docs/CONTRACTS.md ("Layers") explains
the order; import-linter (the `dev` extra) reads every import, those inside functions included.
"""

from __future__ import annotations

from pathlib import Path

import pytest

pytest.importorskip("importlinter", reason="import-linter is in the dev extra: pip install -e '.[dev]'")

ROOT = Path(__file__).resolve().parents[1]
PYPROJECT = ROOT / "pyproject.toml"


def _contracts() -> list[dict]:
    from importlinter.api import read_configuration

    return read_configuration(str(PYPROJECT))["contracts_options"]


def test_the_import_graph_keeps_every_contract(capsys):
    from importlinter.cli import lint_imports

    exit_code = lint_imports(config_filename=str(PYPROJECT), no_cache=True)
    assert exit_code == 0, capsys.readouterr().out


def test_the_contracts_excuse_no_import_and_place_every_room():
    contracts = {c["id"]: c for c in _contracts()}
    assert {"layers", "acyclic"} <= set(contracts)
    assert all(not c.get("ignore_imports") for c in contracts.values()), "fix the import instead of ignoring it"
    layers = contracts["layers"]
    rooms = {p.name for p in (ROOT / "src" / "amauta").iterdir() if (p / "__init__.py").is_file()}
    assert rooms <= set(layers["layers"]), f"rooms missing from the layers contract: {rooms - set(layers['layers'])}"
    assert str(layers.get("exhaustive")).lower() == "true"
