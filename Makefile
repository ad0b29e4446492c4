# The two commands: `make demo` and `make test`. Both set everything up first.
SHELL := /bin/bash
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
DURATION ?=
DEMO_ARGS := $(if $(DURATION),--duration $(DURATION),)

.PHONY: setup demo test test-unit bench lint clean-data

$(STAMP): pyproject.toml scripts/setup.sh infra/maven/pom.xml portal/package-lock.json
	bash scripts/setup.sh
	touch $(STAMP)

setup: $(STAMP)

demo: $(STAMP)
	$(BIN)/backbone demo $(DEMO_ARGS)

# Everything: the linters, then every test against the real services, on two workers (one per core),
# each with its own Kafka and registry; a file's tests stay on one worker (they share module fixtures).
test: lint
	$(BIN)/python -m pytest -q -n 2 --dist loadfile --durations=20

# The fast tests alone (no local stack, no large volumes): under a minute.
test-unit: $(STAMP)
	$(BIN)/python -m pytest -q -m "not integration and not slow"

bench: $(STAMP)
	$(BIN)/python -m bench.run
	$(BIN)/python -m bench.adapters_postgres
	$(BIN)/python -m bench.adapters_mariadb
	$(BIN)/python -m bench.adapters_files_push
	$(BIN)/python -m bench.adapters_freshness
	$(BIN)/python -m bench.kpis
	$(BIN)/python -m bench.ready_views

# Style, and the layout's import contract (pyproject.toml [tool.importlinter]).
lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/lint-imports

clean-data:
	rm -rf var
