# Concord — the targets a person types are the ones CI runs.
SHELL := /bin/bash
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
KAFKA_LIBS := .local/kafka/libs
KAFKA_STAMP := $(KAFKA_LIBS)/.resolved
STRIMZI_LIBS := .local/strimzi/libs
STRIMZI_STAMP := $(STRIMZI_LIBS)/.resolved

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
	mvn -q -B -f deploy/local/pom.xml dependency:copy-dependencies dependency:copy@jmx-exporter \
		-DoutputDirectory=$(CURDIR)/$(KAFKA_LIBS) -Djmx.exporter.dir=$(CURDIR)/.local/kafka/agent
	touch $(KAFKA_STAMP)

kafka: $(KAFKA_STAMP) ## resolve the Kafka broker jars and the JMX exporter agent from Maven Central into .local/kafka

$(STRIMZI_STAMP): deploy/local/strimzi/pom.xml
	mvn -q -B -f deploy/local/strimzi/pom.xml dependency:copy-dependencies -DoutputDirectory=$(CURDIR)/$(STRIMZI_LIBS)
	touch $(STRIMZI_STAMP)

strimzi: $(STRIMZI_STAMP) ## resolve Strimzi's API model from Maven Central into .local/strimzi (the deployment test reads it)

prometheus: ## Prometheus and promtool from Debian's packages (apt-get install prometheus, only when missing)
	@if command -v promtool >/dev/null 2>&1 && command -v prometheus >/dev/null 2>&1; then exit 0; fi; \
	if ! command -v apt-get >/dev/null 2>&1; then \
		echo "prometheus/promtool are missing and apt-get is not available: install Prometheus 2.x" \
			"(it ships promtool) so that both are on PATH" >&2; exit 1; fi; \
	SUDO=; if [ "$$(id -u)" != 0 ]; then \
		command -v sudo >/dev/null 2>&1 || { echo "installing Prometheus needs root: run" \
			"'apt-get update && apt-get install -y prometheus' as root" >&2; exit 1; }; SUDO=sudo; fi; \
	echo "installing Prometheus (and promtool) from Debian's packages"; \
	$$SUDO apt-get update -qq && \
	$$SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends prometheus >/dev/null && \
	command -v promtool >/dev/null

run: install kafka ## set everything up, start the local exchange, play the demo, serve until Ctrl-C
	$(BIN)/concord run

demo: install kafka ## the same, but exit after the scenario (0 only if every expectation held)
	$(BIN)/concord run --once

status: install ## is the local broker, fan-out and every subscriber healthy?
	$(BIN)/concord status

lint: install ## ruff (lint and format check) and mypy --strict
	$(BIN)/ruff check services tests bench
	$(BIN)/ruff format --check services tests bench
	$(BIN)/mypy

# Two processes: the suite mostly waits on brokers, so one process runs (say) the three-broker faults while
# the other runs the rest; each file stays in one process, each process has its own broker.
test: install kafka strimzi prometheus lint docs ## lint and types first, then the docs site built strictly, then the whole test suite: unit (with promtool), integration and fault tests
	$(BIN)/pytest -q -n 2 --dist loadfile

unit: install strimzi prometheus ## unit tests only (no broker)
	$(BIN)/pytest -q -m unit

dashboards: install ## regenerate deploy/grafana/dashboards/*.json from services/ops/dashboards.py
	$(BIN)/python -m services.ops.dashboards

# Material for MkDocs prints a notice about its successor at every build: the build's own output is what matters here.
MKDOCS := NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs

# Not --quiet: mkdocs --strict counts only the warnings it prints.
docs: install ## build the docs site strictly into .local/site (reference, runbook index and benchmark figures generated)
	$(MKDOCS) build --strict

docs-serve: install ## serve the docs site on http://127.0.0.1:8000/, rebuilt on every change
	$(MKDOCS) serve --watch services --watch schemas --watch deploy/prometheus --watch bench

RUNBOOK_BASE ?=
ALERTS_OUT ?=
alerts: install ## write each alert's runbook URL from mkdocs.yml's site_url (or RUNBOOK_BASE=URL [ALERTS_OUT=FILE])
	$(BIN)/python -m services.ops.alerts $(if $(RUNBOOK_BASE),--runbook-base $(RUNBOOK_BASE)) $(if $(ALERTS_OUT),--out $(ALERTS_OUT))

observe: install prometheus ## Prometheus on the exchange `make run` started (run it in another terminal)
	$(BIN)/python -m services.ops.observe

deploy: install ## render deploy/kubernetes/ from topics/ (the example the tests keep in step)
	$(BIN)/concord deploy render kubernetes --out deploy/kubernetes --at 2026-01-01

QUIX_VENV := .local/venv-quix
QUIX_STAMP := $(QUIX_VENV)/.installed

$(QUIX_STAMP): bench/quix-constraints.txt
	$(PY) -m venv $(QUIX_VENV)
	$(QUIX_VENV)/bin/pip install --quiet -c bench/quix-constraints.txt quixstreams
	touch $(QUIX_STAMP)

bench: install kafka $(QUIX_STAMP) bench-records ## the record path per core (bench-records), then the exchange under load: BENCH_N listings (200,000), beside Kafka's producer tool, a passthrough and the engine's floor
	$(BIN)/python bench/bench_exchange.py --n $(or $(BENCH_N),200000) --quix-python $(QUIX_VENV)/bin/python

bench-scale: install kafka ## the fan-out holding a million entries: memory, state on disk, latency, pauses, mass expiry, re-evaluation
	$(BIN)/python bench/bench_scale.py --entries $(or $(SCALE_N),1000000)

bench-records: install ## record path per core: encode+sign, verify+decode beside raw fastavro and Ed25519; redacted beside plain
	$(BIN)/python bench/bench_records.py

bench-subscriber: install kafka ## subscriber: bootstrap of 1M directives, RSS, in-process and HTTP check rates
	$(BIN)/python bench/bench_subscriber.py

clean: ## remove the local state (broker data, keys, stores, Prometheus data); keeps .venv and jars
	rm -rf .local/broker .local/keys .local/data .local/run .local/logs .local/demo .local/inbox .local/prometheus \
		.local/*.json .local/site

.PHONY: help install kafka strimzi prometheus deploy run demo status lint test unit dashboards observe clean bench \
	docs docs-serve alerts \
	bench-records bench-subscriber bench-scale
