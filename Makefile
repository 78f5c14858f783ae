# Two entry points on a fresh machine: `make demo` and `make test`.
# Torch is pinned and installed first so that no CUDA build is pulled in.
VENV := .venv
BIN := $(VENV)/bin
TORCH := torch==2.13.0

.PHONY: setup demo test lint bench

$(VENV)/.installed: pyproject.toml
	python3 -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet $(TORCH)
	$(BIN)/pip install --quiet -e ".[dev]"
	touch $@

# the tests also need the optional extras psycopg (MLflow on PostgreSQL), ray (sweeps) and trl
$(VENV)/.installed-test: $(VENV)/.installed
	$(BIN)/pip install --quiet $(TORCH) -e ".[dev,postgres,ray,trl]"
	touch $@

setup: $(VENV)/.installed

demo: setup
	$(BIN)/python experiments/demo.py

test: $(VENV)/.installed-test
	$(BIN)/python -m pytest -q

lint: setup
	$(BIN)/ruff check . && $(BIN)/ruff format --check .
