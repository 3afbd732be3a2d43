# litvision: `make help` lists the targets. `make demo` and `make test` set everything up on first use.
.DEFAULT_GOAL := help
SHELL := /bin/bash

PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# The torch build to install; override for another platform, e.g. make install TORCH="torch torchvision".
TORCH ?= torch==2.14.1 torchvision==0.29.1
STAMP := $(VENV)/.installed

.PHONY: help install demo search-demo test test-all lint format tensorboard benchmark clean
.PHONY: reproduce-all reproduce-quick reproduce-cpu reproduce-000 reproduce-001 reproduce-002 reproduce-003 reproduce-004
.PHONY: reproduce-longtail reproduce-longtail-cpu

help: ## list the targets
	@grep -E '^[a-zA-Z0-9_-]+:.*## ' $(MAKEFILE_LIST) | awk 'BEGIN {FS = ":.*## "}; {printf "  make %-16s %s\n", $$1, $$2}'

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet $(TORCH)
	$(BIN)/pip install --quiet -e '.[dev,slurm]'
	touch $@

install: $(STAMP) ## create .venv and install litvision with its dev tools

demo: $(STAMP) ## train an LSTM on the bundled digits (offline, ~20 s on 2 quiet cores once installed)
	$(BIN)/litvision fit --config configs/digits_lstm.yaml

search-demo: $(STAMP) ## a hyperparameter search on the digits: 12 trials, pruned (33 s on a 2-core CPU) -> lightning_logs/search/
	$(BIN)/litvision search --config configs/digits_lstm.yaml --space configs/search/digits.yaml --trials 12 --trainer.max_epochs 5

test: $(STAMP) ## run the test suite without the slow tests (target: under 10 minutes on 2 cores)
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

benchmark: $(STAMP) ## throughput: Lightning with the DataLoader, in memory, and the plain loop; needs ../shared/data
	$(BIN)/python benchmarks/throughput.py

# Reproduction of the five reports (docs/reproduce.md): every run is an ordinary `litvision fit`, a
# finished run is never redone, so an interrupted target resumes. `all` is the five numbered reports;
# the long-tail study (cifar10_lt, docs/longtail.md) runs only by name. More options through REPRODUCE_ARGS,
# e.g. make reproduce-all REPRODUCE_ARGS="--jobs 2" (runs at once; default one per visible GPU).
REPRODUCE = $(BIN)/litvision reproduce
# reproduce-quick reads the offline copies in ../shared/data where they exist, else downloads; it runs
# two at a time, each on half the cores (a 2-core CPU spends much of each run starting Python).
QUICK_DATA ?= $(if $(wildcard ../shared/data),offline,download)
QUICK_JOBS ?= 2

reproduce-all: $(STAMP) ## rerun every experiment of the five reports (a GPU box) -> reports/REPORT.md
	$(REPRODUCE) run all $(REPRODUCE_ARGS)

reproduce-quick: $(STAMP) ## all of it scaled down: about 15 min on 2 quiet cores (docs/measurements.md) -> reports/quick/REPORT.md
	$(REPRODUCE) run all --scale quick --data_source $(QUICK_DATA) --jobs $(QUICK_JOBS) $(REPRODUCE_ARGS)

reproduce-cpu: $(STAMP) ## every row a 2-core CPU can train, on the real data in ../shared/data (hours; resumes) -> reports/cpu/REPORT.md
	$(REPRODUCE) run 002 000 001 003 004 --scale cpu --data_source offline $(REPRODUCE_ARGS)

reproduce-000: $(STAMP) ## rerun report 000 (CIFAR-10: CNN, VGG-16, imbalance, IRM) -> reports/REPORT.md
	$(REPRODUCE) run 000 $(REPRODUCE_ARGS)

reproduce-001: $(STAMP) ## rerun report 001 (EuroSAT: ResNet-50, DenseNet-121, SVM head) -> reports/REPORT.md
	$(REPRODUCE) run 001 $(REPRODUCE_ARGS)

reproduce-002: $(STAMP) ## rerun report 002 (MNIST: Elman RNN, LSTM, imbalance, IRM) -> reports/REPORT.md
	$(REPRODUCE) run 002 $(REPRODUCE_ARGS)

reproduce-003: $(STAMP) ## rerun report 003 (CIFAR-10: multi-kernel CNN, 3 learning rates) -> reports/REPORT.md
	$(REPRODUCE) run 003 $(REPRODUCE_ARGS)

reproduce-004: $(STAMP) ## rerun report 004 (CIFAR-10: ResNet-18 ablations, VGG-A, BN) -> reports/REPORT.md
	$(REPRODUCE) run 004 $(REPRODUCE_ARGS)

reproduce-longtail: $(STAMP) ## CIFAR-10-LT, every long-tailed method, 200 epochs (a GPU) -> reports/REPORT.md
	$(REPRODUCE) run cifar10_lt $(REPRODUCE_ARGS)

reproduce-longtail-cpu: $(STAMP) ## the same at the CPU study's budget, 2 seeds (47 min on 2 cores; resumes) -> reports/longtail_cpu/
	$(REPRODUCE) run cifar10_lt --scale longtail_cpu --data_source $(QUICK_DATA) $(REPRODUCE_ARGS)

clean: ## remove caches (keeps .venv, data and the runs in lightning_logs/)
	rm -rf .pytest_cache .ruff_cache
	find . -name __pycache__ -not -path "./$(VENV)/*" -prune -exec rm -rf {} +
