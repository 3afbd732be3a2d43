# litvision: `make help` lists the targets. `make demo` and `make test` set everything up on first use.
.DEFAULT_GOAL := help
SHELL := /bin/bash

PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# The torch build to install; override for another platform, e.g. make install TORCH="torch torchvision".
TORCH ?= torch==2.14.1 torchvision==0.29.1
STAMP := $(VENV)/.installed

.PHONY: help install demo test test-all lint format tensorboard benchmark clean

help: ## list the targets
	@grep -E '^[a-zA-Z_-]+:.*## ' $(MAKEFILE_LIST) | awk 'BEGIN {FS = ":.*## "}; {printf "  make %-12s %s\n", $$1, $$2}'

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet $(TORCH)
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $@

install: $(STAMP) ## create .venv and install litvision with its dev tools

demo: $(STAMP) ## train an LSTM on the bundled digits (offline, about a minute on 2 cores)
	$(BIN)/litvision fit --config configs/digits_lstm.yaml

test: $(STAMP) ## run the test suite (no slow tests; under 10 minutes on 2 cores)
	$(BIN)/pytest -m "not slow"

test-all: $(STAMP) ## run every test, slow ones included
	$(BIN)/pytest

lint: $(STAMP) ## ruff lint and format check
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/ruff format --check src tests benchmarks

format: $(STAMP) ## apply ruff's fixes and formatting
	$(BIN)/ruff check --fix src tests benchmarks
	$(BIN)/ruff format src tests benchmarks

tensorboard: $(STAMP) ## serve TensorBoard on lightning_logs/ (http://localhost:6006)
	$(BIN)/tensorboard --logdir lightning_logs

benchmark: $(STAMP) ## litvision vs a plain PyTorch loop on the CIFAR-10 JPEG copy in ../shared/data
	$(BIN)/python benchmarks/cnn_cifar_vs_plain.py

clean: ## remove caches (keeps .venv, data and the runs in lightning_logs/)
	rm -rf .pytest_cache .ruff_cache
	find . -name __pycache__ -not -path "./$(VENV)/*" -prune -exec rm -rf {} +
