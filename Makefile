# Two commands do all the set-up:  make run  (main job, embedded defaults)  and  make test.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
EDGE_AGE_DATA ?= $(abspath ../shared/data/utkface64)
export EDGE_AGE_DATA

IMAGENET ?= $(abspath ../shared/models/imagenet/mobilenet_v2_weights_tf_dim_ordering_tf_kernels_1.0_224_no_top.h5)
REFERENCE_FILES := model.keras qat.h5 MODEL_CARD.md metrics.json config.json curves.png

.PHONY: setup run test reference
setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[train,test]'
	touch $@

run: setup
	$(BIN)/edge-age data split --out runs/split.csv
	$(BIN)/edge-age convert --split runs/split.csv --out runs/convert

test: setup
	$(BIN)/python -m pytest -q

# Reproduce the bundled reference model (float + QAT) on EDGE_AGE_DATA and copy it into the package.
reference: setup
	$(BIN)/edge-age data split --out runs/split.csv
	$(BIN)/edge-age train --preset reference --data $(EDGE_AGE_DATA) --split runs/split.csv \
		--weights $(IMAGENET) --out runs/reference $(if $(wildcard runs/reference/config.json),--resume)
	cd runs/reference && cp $(REFERENCE_FILES) $(CURDIR)/edge_age/reference/
