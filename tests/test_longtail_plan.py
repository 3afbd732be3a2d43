"""The long-tail plan's published numbers: each comparison from one source, every re-balancing method
ours computes in its table."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import ROOT

from litvision.launch.pool import MARKER
from litvision.reproduce.plan import load_plan
from litvision.reproduce.report import METRICS, RunDir

CAO = {70.36, 77.03}  # Cao et al. 2019, Table 2: cross-entropy, LDAM-DRW
MENON = {71.36, 77.32, 77.89}  # Menon et al. 2021, README: ERM, post-hoc adjustment, logit-adjusted loss


def plan():
    return load_plan(ROOT / "configs/experiments/cifar10_lt.yaml", set(METRICS))


def test_each_published_comparison_comes_from_one_source():
    """Menon et al.'s post-hoc adjustment gains 5.96 points over their own ERM run; beside Cao et al.'s
    cross-entropy it would read 6.96. No table mixes the two papers' numbers."""
    published = {}
    for table in plan().tables:
        values = {value for row in table.rows for value in row.published if value is not None}
        assert not (values & CAO and values & MENON), table.title
        for row in table.rows:
            for metric, value in zip(row.metrics, row.published):
                if value is not None:
                    published[(table.title, row.run, metric)] = value
    menon = {(run, metric): v for (title, run, metric), v in published.items() if v in MENON}
    assert menon[("ce", "posthoc_acc")] - menon[("ce", "test_acc")] == pytest.approx(5.96)
    assert menon[("logit_adjusted", "test_acc")] == 77.89
    assert set(published.values()) == CAO | MENON


def test_the_rebalancing_table_shows_every_method_the_analysis_computes(tmp_path: Path):
    """post-hoc, tau-normalisation, LWS and cRT, read from the run's ``analysis/rebalance.json``."""
    (rebalancing,) = [t for t in plan().tables if any(r.metrics == ["lws_acc"] for r in t.rows)]
    metrics = [row.metrics[0] for row in rebalancing.rows]
    assert metrics == ["test_acc", "posthoc_acc", "tau_norm_acc", "lws_acc", "crt_acc"]
    run = tmp_path / "ce"
    (run / "analysis").mkdir(parents=True)
    (run / MARKER).write_text(json.dumps({"status": "finished"}))
    (run / "test_results.json").write_text(json.dumps({"acc": 0.5}))
    accuracies = {"posthoc": 0.61, "tau_norm": 0.62, "lws": 0.63, "crt": 0.64}
    methods = {key: {"acc": acc} for key, acc in accuracies.items()}
    (run / "analysis/rebalance.json").write_text(json.dumps({"methods": methods}))
    result = RunDir(plan().runs["ce"], run)
    assert [METRICS[m].value(result) for m in metrics] == pytest.approx([50, 61, 62, 63, 64])
