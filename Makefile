# The commands a person runs are the commands CI runs (.ci/run calls `make test`).
SHELL := /bin/bash
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
export JPC_BROKERS ?= 127.0.0.1:9092

.PHONY: setup jars broker broker-stop demo test test-core lint replay-demo clean bench bench-quick

$(STAMP): pyproject.toml constraints.txt
	@command -v $(PYTHON) >/dev/null || { echo "need $(PYTHON) (Python 3.11+)"; exit 2; }
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -c constraints.txt -e '.[dev]'
	@touch $(STAMP)

setup: $(STAMP)  ## the Python environment, pinned

jars:  ## Apache Kafka's broker jars from Maven Central (KAFKA_VERSION=3.9.1 by default)
	bash deploy/kafka.sh fetch

broker: jars  ## a local single-node broker on 127.0.0.1:9092
	bash deploy/kafka.sh start

broker-stop:
	bash deploy/kafka.sh stop

demo: setup broker  ## the bus on the Guangyuan directory with the New Year's Eve 2020 scenario
	$(BIN)/jpc demo --brokers $(JPC_BROKERS)

replay-demo: setup  ## the same scenario through `jpc replay`, no broker needed
	$(BIN)/jpc replay agents/scenarios/guangyuan-2020-01-24.jsonl

lint: setup
	$(BIN)/ruff check .
	$(BIN)/mypy

test-core: setup  ## the pure tiers only (no broker)
	$(BIN)/pytest -m core -q

test: setup jars lint  ## everything: lint, types, core, broker and end-to-end tests (they start their own brokers)
	$(BIN)/pytest -q

bench: setup jars  ## the benchmark: core, Kafka's limit, live worker, latency, memory, recovery (~20 min; bench-out/)
	$(BIN)/python -m bench

bench-quick: setup jars  ## the same, small, in about a minute (CI runs it: tests/test_bench_quick.py)
	$(BIN)/python -m bench --quick

clean:
	bash deploy/kafka.sh stop || true
	rm -rf .cache .pytest_cache .mypy_cache .ruff_cache .hypothesis
