# Two entry points: `make run` (the server on an embedded SQLite file) and `make test`.
PYTHON ?= python3
VENV   ?= .venv
BIN     = $(VENV)/bin

.PHONY: run demo test lint bench clean

run: $(VENV)/.runtime
	$(BIN)/python -m server

# The server, a simulated ECS host and the agent on this machine; prints curl commands; Ctrl-C cleans up.
demo: $(VENV)/.runtime
	$(BIN)/python -m simhost.demo

test: lint
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
	$(BIN)/python -m bench.cpu
	$(BIN)/python -m bench.lookup
	$(BIN)/python -m bench.profile
	$(BIN)/python -m bench.sd_prometheus
	$(BIN)/python -m bench.soak
	$(BIN)/python -m bench.fleet_restart
	$(BIN)/python -m bench.lease_writes
	$(BIN)/python -m bench.taskdef_calls

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

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache .mypy_cache .hypothesis
