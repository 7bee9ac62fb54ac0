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

# The day runs on a real deploy: HEAD released to this machine (var/deploy) and its worker
# posting beside the demo's own; both are stopped afterwards, whatever the day's outcome.
demo: $(STAMP)
	$(BIN)/invoke db.migrate
	@if git rev-parse --verify -q HEAD >/dev/null 2>&1; then $(BIN)/invoke deploy --serial 0; \
	else echo "not a git checkout: no deploy, the demo runs on its own worker"; fi
	$(BIN)/invoke demo; status=$$?; $(BIN)/invoke workers.stop; $(BIN)/invoke stop; exit $$status

test: $(STAMP)
	$(BIN)/pytest -p no:cacheprovider

unit: $(STAMP)
	$(BIN)/pytest -p no:cacheprovider tests/unit

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

# What a deploy to this machine started (its worker, var/run) goes before the Redis it uses.
# The Redis goes even when stopping the workers was refused (say, a login is needed first).
stop: $(STAMP)
	$(BIN)/invoke workers.stop; workers=$$?; $(BIN)/invoke stop && exit $$workers

clean:
	rm -rf var .pytest_cache .mypy_cache .ruff_cache
