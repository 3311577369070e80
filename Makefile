# fhirhub: `make run` and `make test` each set everything up on a fresh machine.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-$(shell cat pyproject.toml | cksum | cut -d' ' -f1)
HOST ?= 127.0.0.1
PORT ?= 8080
PYTEST_WORKERS ?= 2

.PHONY: setup run test test-quick lint typecheck system-deps ohif bench clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e ".[test]"
	rm -f $(VENV)/.installed-*
	touch $(STAMP)

setup: $(STAMP)

## Start the hub on the embedded default (SQLite under ./data) with demo patients, and the
## OSCAR adapter reading its demo clinic (synthetic OSCAR rows, not a live OSCAR).
run: setup ohif
	FHIRHUB_OSCAR_SOURCE=$${FHIRHUB_OSCAR_SOURCE:-demo} \
	FHIRHUB_TERMINOLOGY_LOAD_ICD10CM=$${FHIRHUB_TERMINOLOGY_LOAD_ICD10CM:-true} \
	$(BIN)/fhirhub serve --demo --host $(HOST) --port $(PORT)

## The OHIF Viewer (pinned @ohif/app build from the npm registry) into plugins/ohif/dist, once;
## without npm (or offline) it says why and the DICOM adapter's built-in viewer is used.
ohif: setup
	@$(BIN)/python -m fhirhub.plugins.ohif || echo "Continuing with the built-in DICOM viewer"

## Debian packages the real-peer tests use (a browser for the UI tests).
system-deps:
	@bash tools/install_system_deps.sh

lint: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	PYTHONPATH=. $(BIN)/lint-imports

typecheck: setup
	$(BIN)/mypy fhirhub

## The whole suite: lint, types, unit and integration tests (SQLite and PostgreSQL).
test: setup system-deps ohif lint typecheck
	$(BIN)/python -m pytest -n $(PYTEST_WORKERS) --dist loadgroup -q

## Quick subset for iteration: in-process tests only, stop at the first failure.
test-quick: setup
	$(BIN)/python -m pytest -q -x -m "not slow and not postgres"

bench: setup
	$(BIN)/python benchmarks/ingest.py

clean:
	rm -rf $(VENV) data .mypy_cache .ruff_cache
