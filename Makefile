# The venv is rebuilt whenever pyproject.toml or the lock changes, so `make demo` and
# `make test` work on a fresh machine with nothing but Python 3.11+. It installs the versions
# pinned in docker/requirements.lock, the same the image runs: a test run never meets a
# release nobody tested. `make lock` re-resolves them.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

# `make up` runs the Procfile with the venv's commands first on PATH (honcho runs each entry
# through /bin/sh, which knows nothing of the venv). ENV_FILE picks the settings.
ENV_FILE ?= local.env

.PHONY: demo test lint bench chaos-full receipts-full up lock

LOCK := docker/requirements.lock

$(STAMP): pyproject.toml $(LOCK)
	$(PY) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -c $(LOCK) -e '.[dev]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/sendcloud-jobs demo

test: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/mypy
	$(BIN)/pytest -q

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/mypy

up: $(STAMP)
	PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/honcho -e $(ENV_FILE) start

bench: $(STAMP)
	$(BIN)/python -m bench.run

chaos-full: $(STAMP)
	$(BIN)/pytest tests/chaos --chaos-full

# A 100,000-number campaign with hooks on: one delivery record per number, the simulator's mix.
receipts-full: $(STAMP)
	SENDCLOUD_RECEIPTS_E2E_NUMBERS=100000 $(BIN)/pytest -q tests/test_receipts_e2e.py

# A fresh resolve of pyproject.toml's dependencies (runtime and dev) into the lock.
lock:
	rm -rf build/lock-venv
	$(PY) -m venv build/lock-venv
	build/lock-venv/bin/pip install --quiet --upgrade pip
	build/lock-venv/bin/pip install --quiet '.[dev]'
	head -3 $(LOCK) > $(LOCK).new
	build/lock-venv/bin/pip freeze --exclude sendcloud-jobs | LC_ALL=C sort -f >> $(LOCK).new
	mv $(LOCK).new $(LOCK)
	rm -rf build/lock-venv
