# The two commands: `make demo` and `make test`. Both set everything up first.
SHELL := /bin/bash
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
DURATION ?=
DEMO_ARGS := $(if $(DURATION),--duration $(DURATION),)

.PHONY: setup demo test bench lint clean-data

$(STAMP): pyproject.toml scripts/setup.sh infra/maven/pom.xml
	bash scripts/setup.sh
	touch $(STAMP)

setup: $(STAMP)

demo: $(STAMP)
	$(BIN)/backbone demo $(DEMO_ARGS)

test: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/python -m pytest -q

bench: $(STAMP)
	$(BIN)/python -m bench.run
	$(BIN)/python -m bench.adapters_postgres
	$(BIN)/python -m bench.adapters_mariadb
	$(BIN)/python -m bench.adapters_files_push
	$(BIN)/python -m bench.adapters_freshness

lint: $(STAMP)
	$(BIN)/ruff check .

clean-data:
	rm -rf var
