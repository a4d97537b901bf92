# Concord — the targets a person types are the ones CI runs.
SHELL := /bin/bash
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
KAFKA_LIBS := .local/kafka/libs
KAFKA_STAMP := $(KAFKA_LIBS)/.resolved

.DEFAULT_GOAL := help

help: ## list the targets
	@grep -hE '^[a-zA-Z_-]+:.*?## ' $(MAKEFILE_LIST) | awk 'BEGIN {FS = ":.*?## "}; {printf "  \033[36m%-10s\033[0m %s\n", $$1, $$2}'

$(STAMP): pyproject.toml constraints.txt
	$(PY) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -c constraints.txt -e ".[dev]"
	touch $(STAMP)

install: $(STAMP) ## create .venv and install Concord (.venv/bin/concord)

$(KAFKA_STAMP): deploy/local/pom.xml
	mvn -q -B -f deploy/local/pom.xml dependency:copy-dependencies -DoutputDirectory=$(CURDIR)/$(KAFKA_LIBS)
	touch $(KAFKA_STAMP)

kafka: $(KAFKA_STAMP) ## resolve the Kafka broker jars from Maven Central into .local/kafka/libs

run: install kafka ## set everything up, start the local exchange, play the demo, serve until Ctrl-C
	$(BIN)/concord run

demo: install kafka ## the same, but exit after the scenario (0 only if every expectation held)
	$(BIN)/concord run --once

status: install ## is the local broker, fan-out and every subscriber healthy?
	$(BIN)/concord status

test: install kafka ## the whole test suite: unit, then integration and fault tests on a real broker
	$(BIN)/pytest -q

unit: install ## unit tests only (no broker)
	$(BIN)/pytest -q -m unit

bench: bench-records ## run the benchmarks (figures, not tests: none is part of make test)

bench-records: install ## record path per core: encode+sign, verify+decode, beside raw fastavro and Ed25519
	$(BIN)/python bench/bench_records.py

bench-subscriber: install kafka ## subscriber: bootstrap of 1M directives, RSS, in-process and HTTP check rates
	$(BIN)/python bench/bench_subscriber.py

clean: ## remove the local state (broker data, keys, stores); keeps .venv and jars
	rm -rf .local/broker .local/keys .local/data .local/run .local/logs .local/demo .local/*.json

.PHONY: help install kafka run demo status test unit clean bench bench-records bench-subscriber
