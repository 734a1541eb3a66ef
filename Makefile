# Two entry points: `make run` (the server on an embedded SQLite file) and `make test`.
PYTHON ?= python3
VENV   ?= .venv
BIN     = $(VENV)/bin
# checkov pins older boto3/botocore than the project's: it gets a venv of its own.
CHECKOV_VENV ?= .venv-checkov

.PHONY: run demo test lint bench clean lock images

run: $(VENV)/.runtime
	$(BIN)/python -m server

# The server, a simulated ECS host and the agent on this machine; prints curl commands; Ctrl-C cleans up.
demo: $(VENV)/.runtime
	$(BIN)/python -m simhost.demo

test: lint $(CHECKOV_VENV)/.installed
	$(BIN)/python -m pytest $(PYTEST_ARGS)

# Types are checked over agent/ and server/ (pyproject.toml says where and how strictly).
lint: $(VENV)/.dev
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

# The lookup benchmark and the soak drive wrk: installed here from Debian's packages when missing and we may.
bench: $(VENV)/.dev
	@command -v wrk >/dev/null || { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null \
		&& apt-get update -qq && apt-get install -y -qq wrk >/dev/null; } \
		|| echo "wrk is missing: apt-get install wrk (Debian, Ubuntu) or brew install wrk"
	$(BIN)/python bench/agent_poll.py
	$(BIN)/python -m bench.sdb_cost
	$(BIN)/python -m bench.dynamodb_cost
	$(BIN)/python -m bench.address_index
	$(BIN)/python -m bench.cpu
	$(BIN)/python -m bench.lookup
	$(BIN)/python -m bench.profile
	$(BIN)/python -m bench.sd_prometheus
	$(BIN)/python -m bench.page_search
	$(BIN)/python -m bench.soak
	$(BIN)/python -m bench.fleet_restart
	$(BIN)/python -m bench.lease_writes
	$(BIN)/python -m bench.taskdef_calls
	$(BIN)/python -m bench.flowlogs

# The images' lock files (every package, with its hashes; tests/deploy/test_locks.py fails when one is stale).
# Pins already locked are kept: `make lock LOCK_ARGS=--upgrade` moves everything below the top-level pins too.
LOCK = $(BIN)/uv pip compile --quiet --universal --python-version 3.11 --generate-hashes $(LOCK_ARGS)
lock: $(VENV)/.dev
	$(LOCK) requirements.txt -o locks/server.txt
	$(LOCK) pyproject.toml --constraint requirements.txt -o locks/agent.txt
	$(LOCK) locks/sbom.in -o locks/sbom.txt

# Both images with this machine's tools (Docker, else buildah/podman); docs/deploy.md says how and what it prints.
images:
	scripts/build-images

$(VENV)/bin/python:
	$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11))' || { echo "Python 3.11+ needed"; exit 1; }
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip

$(VENV)/.runtime: $(VENV)/bin/python requirements.txt pyproject.toml
	$(BIN)/python -m pip install -q -r requirements.txt
	$(BIN)/python -m pip install -q --no-deps -e .
	touch $@

$(VENV)/.dev: $(VENV)/.runtime requirements-dev.txt
	$(BIN)/python -m pip install -q -r requirements-dev.txt
	touch $@

$(CHECKOV_VENV)/.installed: requirements-checkov.txt
	$(PYTHON) -m venv $(CHECKOV_VENV)
	$(CHECKOV_VENV)/bin/python -m pip install -q -r requirements-checkov.txt
	touch $@

clean:
	rm -rf $(VENV) $(CHECKOV_VENV) .pytest_cache .ruff_cache .mypy_cache .hypothesis
