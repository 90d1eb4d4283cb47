# The obvious targets. `make demo` and `make test` are the README's two commands.
PY := .venv/bin/python
BIN := .venv/bin

.PHONY: install services-up services-down demo test lint typecheck unit integration fmt clean bench

install:
	scripts/bootstrap

services-up:
	scripts/services up

services-down:
	scripts/services down

demo:
	scripts/demo

lint:
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck:
	$(BIN)/mypy

unit:
	$(PY) -m pytest tests/unit -q

integration: services-up
	$(PY) -m pytest tests/integration -q

# The whole suite: lint, types, unit tests (no services) and integration tests (real services).
test: lint typecheck services-up
	$(PY) -m pytest tests -q --durations=10

# Throughput, read latency, memory and freshness on the local services (bench/run.py).
EVENTS ?= 1000000
bench: services-up
	$(PY) -m bench.run --events $(EVENTS)

fmt:
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

clean:
	scripts/services down --purge
