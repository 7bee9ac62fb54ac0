# `make demo` and `make test` are the whole set-up: each creates the virtual environment it needs.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: demo test unit lint bench clean stop

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[dev]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/invoke demo

test: $(STAMP)
	$(BIN)/pytest -p no:cacheprovider

unit: $(STAMP)
	$(BIN)/pytest -p no:cacheprovider tests/unit

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

stop: $(STAMP)
	$(BIN)/invoke stop

clean:
	rm -rf var .pytest_cache .mypy_cache .ruff_cache
