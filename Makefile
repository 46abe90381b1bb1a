# Two commands for a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin

.PHONY: install demo test lint protos bench bench-quick bench-backlog clean

$(BIN)/exchange: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $@

install: $(BIN)/exchange

demo: install
	$(BIN)/exchange demo

test: install
	$(BIN)/pytest -q

# Linters and the import layers (docs/design.md §1); .ci/run runs them before the tests.
lint: install
	$(BIN)/ruff check .
	$(BIN)/lint-imports
	$(BIN)/mypy exchange/contracts exchange/store

protos: install
	$(BIN)/python -m grpc_tools.protoc -I . --python_out=. --pyi_out=. --grpc_python_out=. protos/exchange/v1/exchange.proto protos/exchange/v1/catalog.proto protos/exchange/v1/sharing.proto protos/exchange/v1/query.proto

# The fast-path figures beside their baselines, written to docs/performance.md (about 5 minutes).
bench: install
	$(BIN)/python bench/report.py

# The same with small sizes, to check that every benchmark runs (figures not comparable).
bench-quick: install
	$(BIN)/python bench/report.py --quick --out /tmp/performance-quick.md

# Backlog catch-up of node and hub (what `make bench` ran before the table).
bench-backlog: install
	$(BIN)/python bench/backlog.py

clean:
	rm -rf $(VENV) build *.egg-info
