# Two commands on a fresh machine: `make demo` and `make test`. Both create .venv when needed.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip
# torch==2.13.0 first: its CPU build lies on this disk; every other requirement uses a range it meets.
TORCH  ?= torch==2.13.0

.PHONY: demo test install install-dev lint bench clean

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	$(PIP) install -q $(TORCH)
	$(PIP) install -q -e .
	touch $@

# The eval extra too: the lm-evaluation-harness tests (tests/evaluate/test_harness.py) run in CI.
$(VENV)/.installed-dev: $(VENV)/.installed
	$(PIP) install -q -e '.[dev,eval]'
	touch $@

install: $(VENV)/.installed

install-dev: $(VENV)/.installed-dev

demo: install
	$(VENV)/bin/amauta run examples/quickstart.yaml

# Two pytest-xdist workers on a 2-core machine (one torch thread each, tests/conftest.py): the suite's
# subprocess starts and file work overlap; CI stays under 20 minutes.
test: install-dev
	$(PY) -m pytest -q -n auto --timeout 900

# lint-imports checks the rooms' layering ([tool.importlinter] in pyproject.toml; docs/CONTRACTS.md).
lint: install-dev
	$(VENV)/bin/ruff check src tests benchmarks scripts
	$(VENV)/bin/lint-imports --no-cache

clean:
	rm -rf $(VENV) runs .pytest_cache
