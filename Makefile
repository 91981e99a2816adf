# The two set-up commands: `make run` (stack + services + demo) and `make test`.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
INSTALLED := $(VENV)/.installed

LOCK := requirements.lock

.PHONY: run test unit check stop bench chaos system-deps test-deps lock

run: $(INSTALLED) system-deps
	$(BIN)/creditledger stack up
	$(BIN)/creditledger serve --detach
	$(BIN)/creditledger demo

test: $(INSTALLED) test-deps check
	$(BIN)/pytest

# The pure unit tests (no Kafka, no Postgres, no browser): about a minute, for the edit-test loop.
unit: $(INSTALLED)
	$(BIN)/pytest -q tests/unit

check: $(INSTALLED)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

bench: $(INSTALLED) test-deps
	$(BIN)/creditledger bench --json bench.json

# The whole fault matrix on a stack of its own: SEED=n ROUNDS=n EVENTS=n to vary it.
chaos: $(INSTALLED) test-deps
	$(BIN)/python -m tests.chaos --seed $(or $(SEED),$(shell date +%s)) \
		--rounds $(or $(ROUNDS),3) --events $(or $(EVENTS),2000) --json chaos.json

stop: $(INSTALLED)
	-[ -f .creditledger/serve.pid ] && kill "$$(cat .creditledger/serve.pid)" 2>/dev/null; rm -f .creditledger/serve.pid
	$(BIN)/creditledger stack down
	CREDITLEDGER_STACK_DIR=.creditledger/chaos-stack $(BIN)/creditledger stack down
	CREDITLEDGER_STACK_DIR=.creditledger/test-stack $(BIN)/creditledger stack down

system-deps:
	@bash services/platform/install-system-deps.sh

test-deps:
	@bash services/platform/install-system-deps.sh tests

# Exactly what the lock file names, each file checked against its hash, so a fresh machine
# installs what CI tested; then the project itself, without resolving anything again.
$(INSTALLED): pyproject.toml $(LOCK)
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --require-hashes -r $(LOCK)
	$(BIN)/python -m pip install -q --no-deps -e .
	touch $@

# After changing dependencies in pyproject.toml: regenerate the lock (every extra, hashes of
# every platform's files), commit both. `make lock UPGRADE=1` also moves pins to the newest
# versions the ranges allow.
lock:
	@[ -x $(BIN)/python ] || $(PYTHON) -m venv $(VENV)
	@[ -x $(BIN)/uv ] || $(BIN)/python -m pip install -q 'uv>=0.5,<1'
	$(BIN)/uv pip compile pyproject.toml --extra test --extra bench --generate-hashes \
		--universal --python-version 3.11 --custom-compile-command "make lock" \
		$(if $(UPGRADE),--upgrade,) -q -o $(LOCK)
