# Two commands a new user needs: `make run` (the demo) and `make test` (lint, types, tests).
# Both create .venv on first use; later runs reuse it until pyproject.toml or the lock changes.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# The runtime dependencies, pinned: installs are reproducible, and `make audit` checks these.
LOCK := requirements.lock

.PHONY: run test lint types unit clean bench soak audit

$(STAMP): pyproject.toml $(LOCK)
	$(PYTHON) -c 'import sys; sys.exit("authproxy needs Python 3.11 or newer") if sys.version_info < (3, 11) else None'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]' -c $(LOCK)
	touch $(STAMP)

# `make run LISTEN=127.0.0.1:9000` (or LISTEN=9000) when port 8080 is taken.
LISTEN ?=
run: $(STAMP)
	$(BIN)/authproxy demo $(if $(LISTEN),--listen $(LISTEN))

test: lint types unit

lint: $(STAMP)
	$(BIN)/ruff check authproxy tests bench tools
	$(BIN)/ruff format --check authproxy tests bench tools
	$(BIN)/lint-imports

types: $(STAMP)
	$(BIN)/mypy

unit: $(STAMP)
	sh tools/test-services.sh
	$(BIN)/pytest

# Not part of `make test`: several minutes of load on this machine (see bench/run.py).
bench: $(STAMP)
	$(BIN)/python bench/run.py

# Not part of `make test`: token churn for MINUTES (default 10), one process and two workers side
# by side, with a verdict on memory, descriptors, client-visible errors and logins (bench/soak.py).
MINUTES ?= 10
soak: $(STAMP)
	$(BIN)/python bench/soak.py --minutes $(MINUTES)

# pip-audit over the locked dependencies, then request-smuggling probes sent raw through a real
# `authproxy serve` to a recording upstream (tools/smuggle_audit.py). Both run; either fails it.
audit: $(STAMP)
	$(BIN)/python -m pip install --quiet pip-audit
	$(BIN)/python -m tools.dependency_audit $(LOCK); deps=$$?; \
	$(BIN)/python -m tools.smuggle_audit; probes=$$?; \
	test $$deps -eq 0 && test $$probes -eq 0

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .mypy_cache .ruff_cache
