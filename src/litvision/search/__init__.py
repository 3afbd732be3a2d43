"""Hyperparameter search on Optuna: ``litvision search`` (cli.py) reads a search space (space.py), runs
a study's trials as ordinary runs in workers that share it (study.py), and writes the best config, the
table of trials and Optuna's figures (results.py). docs/search.md describes the files."""
