# Two commands for a fresh clone (with ../shared beside it): `make run` and `make test`.
PYTHON ?= python3.11
VENV   := .venv
BIN    := $(VENV)/bin
# Stage commands in dvc.yaml call `python`: make it the venv's.
export PATH := $(abspath $(BIN)):$(PATH)
export VIRTUAL_ENV := $(abspath $(VENV))
export HF_HUB_OFFLINE := 1
export TOKENIZERS_PARALLELISM := false

.PHONY: run test test-fast lint lock clean serve bento promote rollback exp

$(BIN)/python:
	@command -v $(PYTHON) >/dev/null || { echo "$(PYTHON) not found: set PYTHON=/path/to/python3.11"; exit 1; }
	$(PYTHON) -m venv $(VENV)

# torch: the lock pins the version, the Makefile the build. On Linux PyPI's wheel is the CUDA
# build (several GB), so it comes from PyTorch's CPU index first (as in CI);
# `make run TORCH_VARIANT=cu128` takes a CUDA 12.8 build instead. macOS wheels are CPU-only.
TORCH_VARIANT ?= cpu
TORCH_VERSION := $(shell sed -n 's/^torch==//p' requirements.lock)
TORCH_INDEX   := https://download.pytorch.org/whl/$(TORCH_VARIANT)
PIP := $(BIN)/python -m pip install --quiet --disable-pip-version-check

$(VENV)/.installed: requirements.lock | $(BIN)/python
ifeq ($(shell uname -s),Linux)
	$(PIP) --no-deps --index-url $(TORCH_INDEX) "torch==$(TORCH_VERSION)+$(TORCH_VARIANT)"
endif
	$(PIP) -r requirements.lock
	touch $@

$(VENV)/.dev-installed: requirements-dev.lock $(VENV)/.installed
	$(PIP) -r requirements-dev.lock
	touch $@

## run: install, fetch the data, rebuild every stale stage, act on the gate's decision, summarise
run: $(VENV)/.installed
	$(BIN)/dvc pull --allow-missing --quiet
	$(BIN)/dvc repro
	$(BIN)/python -m sentiment.registry promote
	$(BIN)/python -m sentiment.summary

## promote: make the registry and the BentoML store match reports/gate/decision.json (idempotent)
promote: $(VENV)/.installed
	$(BIN)/python -m sentiment.registry promote

## test: install with dev tools and run the whole suite (slow end-to-end tests included)
test: $(VENV)/.dev-installed
	$(BIN)/ruff check .
	$(BIN)/python -m pytest

# The headline metrics (reports/evaluate/headline.json, reports/gate/verdict.json, reports/drift/verdicts.json) and the
# params: every other column (detail metrics, deps) is dropped.
EXP_COLUMNS := ^(?!(headline|gate|drift|prepare|featurize|tune|train_transformer|evaluate)\.|Experiment$$|Created$$).*

## exp: compare experiments at a glance: headline metrics and the params that differ
exp: $(VENV)/.installed
	$(BIN)/dvc exp show --only-changed --drop '$(EXP_COLUMNS)'

## serve: serve the promoted model (BentoML store model `sentiment`) on http://127.0.0.1:3000
serve: $(VENV)/.installed
	$(BIN)/bentoml serve service:Sentiment --host 127.0.0.1 --port 3000

## bento: build the bento; prints its tag and the generated Dockerfile
bento: $(VENV)/.installed
	@tag=$$($(BIN)/bentoml build --output tag | tail -n 1 | sed 's/^__tag__://') && \
	echo "bento: $$tag" && \
	echo "Dockerfile: $$($(BIN)/bentoml get $$tag -o path)/env/docker/Dockerfile"

## rollback: move `production` back to `previous-production` and re-export it to BentoML
rollback: $(VENV)/.installed
	$(BIN)/python -m sentiment.registry rollback

test-fast: $(VENV)/.dev-installed
	$(BIN)/python -m pytest -m "not slow"

lint: $(VENV)/.dev-installed
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

## lock: re-resolve pyproject.toml into requirements.lock / requirements-dev.lock
lock: | $(BIN)/python
	$(BIN)/python tools/lock.py

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
