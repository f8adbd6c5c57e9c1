# The two commands of the README: `make demo` and `make test`. Both bootstrap .venv themselves.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin

.PHONY: demo test lint typecheck unit schema bench docker-lint clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e .
	touch $@

$(VENV)/.installed-test: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e ".[test]"
	touch $@ $(VENV)/.installed

# The graphql-http audit kit the suite runs with Node (tests/integration/test_graphql_http_audit.py).
AUDIT := tests/http_audit
$(AUDIT)/node_modules/.installed: $(AUDIT)/package.json $(AUDIT)/package-lock.json
	cd $(AUDIT) && npm ci --silent --no-audit --no-fund
	touch $@

demo: $(VENV)/.installed
	$(BIN)/patientgraph demo

# The whole suite: lint, strict typing, the import contract, then every test (unit, integration,
# e2e).
test: $(VENV)/.installed-test $(AUDIT)/node_modules/.installed lint typecheck
	$(BIN)/python -m pytest

lint: $(VENV)/.installed-test
	$(BIN)/ruff check app schema resolvers tests benchmarks
	$(BIN)/ruff format --check app schema resolvers tests benchmarks

typecheck: $(VENV)/.installed-test
	$(BIN)/mypy
	$(BIN)/lint-imports

unit: $(VENV)/.installed-test
	$(BIN)/python -m pytest tests/unit

schema: $(VENV)/.installed
	$(BIN)/patientgraph schema > schema/schema.graphql

bench: $(VENV)/.installed-test
	$(BIN)/python benchmarks/dashboard.py
	$(BIN)/python benchmarks/merge.py
	$(BIN)/python benchmarks/mllp_ingest.py
	$(BIN)/python benchmarks/big_list.py
	$(BIN)/python benchmarks/cache_hit.py
	$(BIN)/python benchmarks/cold.py
	$(BIN)/python benchmarks/hostile.py

docker-lint: $(VENV)/.installed-test
	$(BIN)/hadolint docker/Dockerfile
	$(BIN)/check-jsonschema --builtin-schema vendor.compose-spec docker/compose.yaml

clean:
	rm -rf $(VENV) $(AUDIT)/node_modules .pytest_cache .mypy_cache .ruff_cache
