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

## demo: the whole system on embedded defaults (or DATABASE_URL / MQTT_URL), a verified claim.
demo: $(STAMP)
	$(PY) -m stack demo

## bench: the benchmarks (issue 8), 3 to 5 minutes; sizes: make bench BENCH_ARGS="--help".
bench: $(STAMP)
	$(PY) -m bench $(BENCH_ARGS)

## up: the stack in the foreground (API on 127.0.0.1:8000, a live simulated fleet) until Ctrl-C.
up: $(STAMP)
	$(PY) -m stack up

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache .hypothesis build *.egg-info
