# mcp-edge: `make sandbox` (a working HTTPS MCP endpoint on local targets),
# `make test` (the whole suite against real targets), `make sandbox-down`,
# `make bench` (performance table + plot against the sandbox; BENCH_ARGS="--hosts 8 --long-idle"),
# `make drift` (drift check of inventory.py: exit 0 none, 2 drift, 1 error).
SHELL := /bin/bash
VENV := .venv
PY := $(VENV)/bin/python

.PHONY: setup sandbox test sandbox-down bench drift

setup:
	bash sandbox/setup-machine.sh
	$(MAKE) --no-print-directory $(VENV)/.installed tests/clients/node_modules/.installed sandbox/images/oauth/node_modules/.installed

$(VENV)/.installed: requirements.txt requirements-sdk2.txt
	python3 -m venv $(VENV)
	$(VENV)/bin/pip install -q --disable-pip-version-check -r requirements.txt
	python3 -m venv .venv-sdk2
	.venv-sdk2/bin/pip install -q --disable-pip-version-check -r requirements-sdk2.txt
	touch $@

# The MCP clients real users run (Inspector CLI, mcp-remote, TypeScript SDK) and the bench
# authorization server's unit-test copy, pinned by their package-lock.json.
%/node_modules/.installed: %/package-lock.json
	npm ci --prefix $* --no-audit --no-fund --loglevel=error
	touch $@

sandbox: setup
	$(PY) -m sandbox sandbox

test: setup
	$(PY) -m sandbox up --fresh
	$(PY) -m pytest -ra tests

bench: setup
	$(PY) -m bench $(BENCH_ARGS)

sandbox-down:
	$(PY) -m sandbox down

INVENTORY ?= inventory.py
drift: $(VENV)/.installed
	$(PY) -m mcpedge.drift $(INVENTORY)
