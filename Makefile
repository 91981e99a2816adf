# The two set-up commands: `make run` (stack + services + demo) and `make test`.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
INSTALLED := $(VENV)/.installed

.PHONY: run test check stop bench chaos system-deps test-deps

run: $(INSTALLED) system-deps
	$(BIN)/creditledger stack up
	$(BIN)/creditledger serve --detach
	$(BIN)/creditledger demo

test: $(INSTALLED) test-deps check
	$(BIN)/pytest

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

$(INSTALLED): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[test]'
	touch $@
