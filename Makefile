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

# The whole suite: lint, types, unit tests (no services), integration tests and fault tests
# (real services, and a 3-master Redis Cluster), in two processes: the integration tests
# spend most of their time waiting on workers, brokers and timers.
test: lint typecheck
	scripts/services up --redis-cluster 3
	$(PY) -m pytest tests -q -n 2 --dist loadgroup --durations=10

# Throughput, read latency, memory and freshness on the local services (bench/run.py).
EVENTS ?= 1000000
bench: services-up
	$(PY) -m bench.run --events $(EVENTS)

fmt:
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

clean:
	scripts/services down --purge
