# Two commands do all set-up on a fresh machine (Python 3.11 or 3.12 with venv):
#   make demo   train + evaluate the study's CNN on the embedded synthetic default
#   make test   the test suite
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin

$(BIN)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[port,test]'
	touch $@

.PHONY: demo test lint
demo: $(BIN)/.installed
	$(BIN)/python -m artjax.train --config experiments/cnn.py:synthetic --workdir checkpoints/demo
	$(BIN)/python -m artjax.evaluate --workdir checkpoints/demo --split test

# One pytest worker more than cores, at most 4 (each holds TensorFlow and JAX): a worker idles
# while a command it started runs (forked by its command server, tests/command_server.py), and the
# extra worker fills that time (two extra were slower on 2 cores: BENCHMARKS.md). Tests marked
# with an xdist_group share a worker, so their module-scoped fixtures are built once.
WORKERS := $(shell $(PYTHON) -c "import os; print(min(4, (os.cpu_count() or 1) + 1))")
test: $(BIN)/.installed
	$(BIN)/python -m pytest -q -n $(WORKERS) --dist loadgroup

# ruff's lint and format check (pyproject.toml [tool.ruff]); CI runs it before the tests.
lint: $(BIN)/.installed
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
