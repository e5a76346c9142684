# Two commands do all set-up on a fresh machine (Python 3.11 or 3.12 with venv):
#   make demo   train + evaluate on the embedded synthetic default (for now: EDA + pipeline benchmark)
#   make test   the test suite
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin

$(BIN)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test]'
	touch $@

.PHONY: demo test
demo: $(BIN)/.installed
	$(BIN)/python -m artjax.eda --config experiments/cnn.py:synthetic --outdir checkpoints/demo/eda
	$(BIN)/python -m artjax.bench pipeline --config experiments/cnn.py:synthetic --images 320

test: $(BIN)/.installed
	$(BIN)/python -m pytest -q
