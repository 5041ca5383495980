# The README's commands. Every target creates .venv on first use.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: venv test lint typecheck demo bench up clean

venv: $(STAMP)

$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	@$(PY) -m pip install --quiet --upgrade pip
	@$(PY) -m pip install --quiet -e '.[edge,gateway,demo,dev]'
	@touch $(STAMP)

## test: the full suite (lint, types, tests) against real PostgreSQL and MQTT.
test: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy
	$(PY) -m pytest

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

typecheck: $(STAMP)
	$(VENV)/bin/mypy

demo: $(STAMP)
	@echo "make demo: not built yet (issue 7: one-command demo)." >&2; exit 2

bench: $(STAMP)
	@echo "make bench: not built yet (issue 8: benchmarks)." >&2; exit 2

up: $(STAMP)
	@echo "make up: not built yet (issue 7: the stack in the foreground)." >&2; exit 2

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache .hypothesis build *.egg-info
