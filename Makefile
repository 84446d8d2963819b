# The two set-up commands of the README: `make demo` and `make test`.
# Both create their own virtual environment; nothing is installed globally.

PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   ?= .venv
BIN    := $(VENV)/bin

.PHONY: demo test lint unit slow fuzz bench diagram clean

$(BIN)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $@

node_modules/.installed: package.json package-lock.json
	npm ci --no-audit --no-fund --loglevel=error
	touch $@

demo: $(BIN)/.installed
	$(BIN)/hybrid-ingest demo

lint: $(BIN)/.installed
	$(BIN)/ruff check .
	$(BIN)/mypy

unit: $(BIN)/.installed node_modules/.installed
	$(BIN)/python -m pytest

test: lint unit

slow: $(BIN)/.installed node_modules/.installed
	$(BIN)/python -m pytest -m slow

# Randomized exploration: the property soak tests (both kernels) with fresh random seeds. A failure
# prints its reproduction blob; pin the example with @example on the test that found it.
fuzz: $(BIN)/.installed node_modules/.installed
	$(BIN)/python -m pytest -m slow --hypothesis-profile=fuzz tests/reliability tests/merge

bench: $(BIN)/.installed
	$(BIN)/python bench/run_all.py

diagram: $(BIN)/.installed
	$(BIN)/python docs/diagram.py

clean:
	rm -rf $(VENV) node_modules .hybrid-ingest .pytest_cache .mypy_cache .ruff_cache
