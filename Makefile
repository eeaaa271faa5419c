# The two commands a newcomer needs: `make demo` and `make test`. Everything else is their parts.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-$(shell cksum pyproject.toml | cut -d' ' -f1)

.PHONY: demo test install lint typecheck unit format bench-smoke clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev,examples,compat,ray]'
	rm -f $(VENV)/.installed-*
	touch $(STAMP)

install: $(STAMP)

## Server up on the embedded defaults, sample model deployed and scored with every auth mode.
demo: install
	$(PY) examples/demo.py

## Lint, types, the whole suite, and the benchmarks in their short smoke mode.
test: install lint typecheck unit bench-smoke

lint: install
	$(VENV)/bin/ruff format --check src tests bench examples
	$(VENV)/bin/ruff check src tests bench examples

typecheck: install
	$(VENV)/bin/mypy

unit: install
	$(VENV)/bin/pytest $(PYTEST_ARGS)

format: install
	$(VENV)/bin/ruff format src tests bench examples
	$(VENV)/bin/ruff check --fix src tests bench examples

bench-smoke: install
	$(PY) bench/authz/run.py --smoke
	$(PY) bench/deploy/run.py --smoke
	$(PY) bench/gateway/run.py --smoke

clean:
	rm -rf $(VENV) .propylon .pytest_cache .mypy_cache .ruff_cache
