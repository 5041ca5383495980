# The README's commands. Every target creates .venv on first use.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
# The extras edge, gateway, demo and dev, pinned with hashes (requirements/lock.py says which lock is what).
LOCK := requirements/dev.txt

.PHONY: venv lock lock-upgrade test lint typecheck demo bench up clean

venv: $(STAMP)

# Exactly the lock's versions (pip refuses any file whose hash differs), then the project itself
# without dependencies. A lock older than pyproject.toml's lists stops here, saying so.
$(STAMP): pyproject.toml $(LOCK)
	@$(PYTHON) requirements/lock.py --check $(notdir $(LOCK))
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	@$(PY) -m pip install --quiet --require-hashes -r $(LOCK)
	@$(PY) -m pip install --quiet --no-deps -e .
	@touch $(STAMP)

## lock: re-resolve requirements/*.txt after a dependency list in pyproject.toml changed (keeps
## the other pins); lock-upgrade: every pin to the newest version allowed.
lock:
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	@test -x $(VENV)/bin/uv || $(PY) -m pip install --quiet 'uv>=0.4'
	$(PY) requirements/lock.py

lock-upgrade:
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	@test -x $(VENV)/bin/uv || $(PY) -m pip install --quiet 'uv>=0.4'
	$(PY) requirements/lock.py --upgrade

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
