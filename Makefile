# Two commands for a fresh clone (with ../shared beside it): `make run` and `make test`.
PYTHON ?= python3.11
VENV   := .venv
BIN    := $(VENV)/bin
# Stage commands in dvc.yaml call `python`: make it the venv's.
export PATH := $(abspath $(BIN)):$(PATH)
export VIRTUAL_ENV := $(abspath $(VENV))
export HF_HUB_OFFLINE := 1
export TOKENIZERS_PARALLELISM := false

.PHONY: help run test test-system test-fast lint lock clean serve bento image promote rollback deploy exp score drift report ingest retrain

## help: list the targets
help:
	@sed -n 's/^## \([a-z-]*\): /\1\t/p' $(MAKEFILE_LIST) | awk -F '\t' '{printf "  make %-10s %s\n", $$1, $$2}'

$(BIN)/python:
	@command -v $(PYTHON) >/dev/null || { echo "$(PYTHON) not found: set PYTHON=/path/to/python3.11"; exit 1; }
	$(PYTHON) -m venv $(VENV)

# The dataset params.yaml names (dataset: flipkart): its files are in data/raw/<name>/.
DATASET := $(shell sed -n 's/^dataset:[[:space:]]*\([^[:space:]#]*\).*/\1/p' params.yaml)

# torch: the lock pins the version, the Makefile the build. On Linux PyPI's wheel is the CUDA
# build (several GB), so it comes from PyTorch's CPU index first (as in CI);
# `make run TORCH_VARIANT=cu128` takes a CUDA 12.8 build instead. macOS wheels are CPU-only.
TORCH_VARIANT ?= cpu
TORCH_VERSION := $(shell sed -n 's/^torch==//p' requirements/main.lock)
TORCH_INDEX   := https://download.pytorch.org/whl/$(TORCH_VARIANT)
PIP := $(BIN)/python -m pip install --quiet --disable-pip-version-check

# $(call need,VARS,EXAMPLE): a target run without a variable it needs stops with one line
# naming the missing ones and an example.
missing = $(strip $(foreach v,$(1),$(if $($(v)),,$(v))))
need = $(if $(call missing,$(1)),$(error make $@: set $(call missing,$(1)), as in: $(2)))

$(VENV)/.installed: requirements/main.lock | $(BIN)/python
ifeq ($(shell uname -s),Linux)
	$(PIP) --no-deps --index-url $(TORCH_INDEX) "torch==$(TORCH_VERSION)+$(TORCH_VARIANT)"
endif
	$(PIP) -r requirements/main.lock
	touch $@

$(VENV)/.dev-installed: requirements/dev.lock $(VENV)/.installed
	$(PIP) -r requirements/dev.lock
	touch $@

## run: install, fetch the data, rebuild every stale stage, act on the gate's decision, summarise
run: $(VENV)/.installed
	$(BIN)/dvc pull --allow-missing --quiet
	@for tracked in data/raw/$(DATASET)/*.dvc; do test -f "$${tracked%.dvc}" || { remote=$$($(BIN)/dvc remote default 2>/dev/null); \
	  url=$$(COLUMNS=10000 $(BIN)/dvc remote list 2>/dev/null | awk -v r="$$remote" '$$1 == r {print $$2}'); \
	  echo "make run: no raw data: DVC remote '$$remote' ($$url) could not be read; docs/data.md says how to configure one"; exit 1; }; done
	$(BIN)/dvc repro
	$(BIN)/python -m sentiment.registry promote
	$(BIN)/python -m sentiment.summary

## promote: make the registry and the BentoML store match reports/gate/decision.json (idempotent)
promote: $(VENV)/.installed
	$(BIN)/python -m sentiment.registry promote

# make test's pytest-xdist workers (0: one process); each module's tests run on one worker, as
# its module-scoped fixtures expect. DVC commands in this checkout wait for its lock.
TEST_WORKERS ?= 2

## test: install with dev tools and run the suite (slow end-to-end tests included)
test: $(VENV)/.dev-installed
	$(BIN)/ruff check .
	$(BIN)/python -m pytest -m "not system" -n $(TEST_WORKERS) --dist loadfile

## test-system: the retrain loop end to end, the stack across simulated hosts and the compose stack (as root)
test-system: $(VENV)/.dev-installed
	$(BIN)/python -m pytest -m system

# The headline metrics (reports/evaluate/headline.json, reports/gate/verdict.json, reports/drift/verdicts.json), the
# stages' params and the dataset's: every other column (detail metrics, deps) is dropped.
EXP_COLUMNS := ^(?!(headline|gate|drift|prepare|featurize|tune|train_transformer|evaluate)\.|dataset$$|datasets\.|Experiment$$|Created$$).*

# Shown even where every experiment agrees (--only-changed would hide them right after
# `make run`): the champion, its test macro-F1 with its 95 % CI, and the gate's decision.
EXP_KEEP := ^(headline\.champion\.(name|test_macro_f1|test_ci_low|test_ci_high)|gate\.promote)$$

## exp: compare experiments at a glance: the champion's headline, and the metrics and params that differ
exp: $(VENV)/.installed
	$(BIN)/dvc exp show --only-changed --drop '$(EXP_COLUMNS)' --keep '$(EXP_KEEP)'

## serve: serve the promoted model (BentoML store model `sentiment`) on http://127.0.0.1:3000, following promotions
serve: $(VENV)/.installed
	SENTIMENT_FOLLOW_PRODUCTION=$${SENTIMENT_FOLLOW_PRODUCTION:-1} $(BIN)/bentoml serve service:Sentiment --host 127.0.0.1 --port 3000

## bento: build the bento; prints its tag and the generated Dockerfile
bento: $(VENV)/.installed
	@tag=$$($(BIN)/bentoml build --output tag | tail -n 1 | sed 's/^__tag__://') && \
	echo "bento: $$tag" && \
	echo "Dockerfile: $$($(BIN)/bentoml get $$tag -o path)/env/docker/Dockerfile"

## image: the serving image of the model in production (make image TAG=...; docs/image.md)
image: $(VENV)/.installed
	deploy/image/build.sh $(or $(TAG),sentiment-service:latest)

## rollback: move `production` back to `previous-production` and re-export it to BentoML
rollback: $(VENV)/.installed
	$(BIN)/python -m sentiment.registry rollback

## deploy: put registry version VERSION into production, checked (make deploy VERSION=3 REASON="...")
deploy: $(VENV)/.installed
	$(call need,VERSION REASON,make deploy VERSION=3 REASON="why")
	$(BIN)/python -m sentiment.registry deploy --version "$(VERSION)" --reason "$(REASON)" $(if $(FORCE),--force)

## score: score a file with the dataset's promoted model: make score INPUT=reviews.csv OUTPUT=scored.parquet [TEXT=column]
# The text: column TEXT, or without it the column(s) the dataset in params.yaml declares.
score: $(VENV)/.installed
	$(call need,INPUT OUTPUT,make score INPUT=reviews.csv OUTPUT=scored.parquet [TEXT="Review text"])
	$(BIN)/python -m sentiment.scoring --input "$(INPUT)" --output "$(OUTPUT)" \
	  $(if $(TEXT),--text-column "$(TEXT)")

## ingest: append new rated reviews to the raw data: make ingest INPUT=new-reviews.csv (then make run)
ingest: $(VENV)/.installed
	$(call need,INPUT,make ingest INPUT=new-reviews.csv (CSV/Parquet/JSONL with text and rating))
	$(BIN)/python -m sentiment.ingest --input "$(INPUT)"

## retrain: a drop of new rated reviews to a pushed branch, retrained: make retrain DROP=s3://bucket/new-reviews/week-49
retrain: $(VENV)/.installed
	$(call need,DROP,make retrain DROP=s3://bucket/new-reviews/week-49 (or a folder))
	$(BIN)/python -m sentiment.retrain --drop "$(DROP)"

## drift: test an inference log for drift: make drift LOG=inference-log/predictions.jsonl
drift: $(VENV)/.installed
	$(call need,LOG,make drift LOG=inference-log/predictions.jsonl)
	$(BIN)/python -m sentiment.monitoring --current "$(LOG)"

## report: the pull-request report (base revision vs workspace) as report.md
report: $(VENV)/.installed
	$(BIN)/python -m sentiment.report --base $(or $(BASE),main) --out report.md

## test-fast: the suite without the slow end-to-end tests
test-fast: $(VENV)/.dev-installed
	$(BIN)/python -m pytest -m "not slow"

## lint: ruff check and format check
lint: $(VENV)/.dev-installed
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

## lock: re-resolve pyproject.toml into requirements/main.lock / requirements/dev.lock
lock: | $(BIN)/python
	$(BIN)/python requirements/lock.py

## clean: remove the environment and caches
clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
