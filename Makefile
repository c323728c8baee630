# Two commands do all the set-up:  make run  (main job, embedded defaults)  and  make test.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
EDGE_AGE_DATA ?= $(abspath ../shared/data/utkface64)
export EDGE_AGE_DATA

.PHONY: setup run test
setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[train,test]'
	touch $@

run: setup
	$(BIN)/edge-age data split --out runs/split.csv --check
	$(BIN)/edge-age data audit --split runs/split.csv --out runs/audit

test: setup
	$(BIN)/python -m pytest -q
