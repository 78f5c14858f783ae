# Two entry points on a fresh machine: `make demo` and `make test`.
# Torch is pinned and installed first so that no CUDA build is pulled in.
VENV := .venv
BIN := $(VENV)/bin
TORCH := torch==2.13.0

# The floor environment: the lowest torch, transformers and peft releases that pyproject.toml
# allows (torch from PyPI: a CUDA build, about 3 GB with its nvidia-* wheels, that runs on the
# CPU too; transformers with the `kernels` release it declares), layered over the test
# environment (a .pth adds the test venv's site-packages behind its own). `make test` runs the
# tests of the code that calls into these libraries in it first (test-floor).
FLOOR := .venv-floor
FLOOR_PINS := torch==2.11.0 "transformers[kernels]==5.5.0" peft==0.18.0
FLOOR_TESTS := tests/test_attribution.py tests/test_tracker.py tests/test_updater.py \
	tests/test_families_end_to_end.py

.PHONY: setup demo test test-floor lint bench

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

$(FLOOR)/.installed: $(VENV)/.installed-test Makefile
	rm -rf $(FLOOR) && python3 -m venv $(FLOOR)
	echo "import site; site.addsitedir('$$($(BIN)/python -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')')" \
		> "$$($(FLOOR)/bin/python -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')/test_env.pth"
	$(FLOOR)/bin/pip install --quiet $(FLOOR_PINS)
	touch $@

test-floor: $(FLOOR)/.installed
	$(FLOOR)/bin/python -m pytest -q -p no:cacheprovider $(FLOOR_TESTS)

test: $(VENV)/.installed-test test-floor
	$(BIN)/python -m pytest -q

lint: setup
	$(BIN)/ruff check . && $(BIN)/ruff format --check .
