"""litvision reproduce: report plans, sweeps, the runner, the plain-loop reference, the report."""

from __future__ import annotations

import contextlib
import csv
import gzip
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tarfile
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from conftest import ROOT, run_litvision

import litvision.reproduce.cli as cli
import litvision.reproduce.report as report_module
from litvision.commands import main as litvision_main
from litvision.data.imbalance import LongTailImbalance
from litvision.data.sources import DataSource
from litvision.errors import LitvisionError
from litvision.launch.pool import MARKER, Progress
from litvision.parsing import options
from litvision.plain import STATE
from litvision.plain import run as plain_loop
from litvision.reproduce.cli import main
from litvision.reproduce.estimate import START_S, run_seconds
from litvision.reproduce.plan import (
    Analysis,
    Scale,
    available_plans,
    load_plan,
    load_scale,
    load_sweep,
    select_plans,
    sweep_runs,
)
from litvision.reproduce.report import METRICS, Report, RunDir
from litvision.reproduce.runner import PLAIN_DIR, Reproduction, epochs_trained, is_finished, slots
from litvision.utils import load_checkpoint, lookup, read_yaml

PLANS = ROOT / "configs" / "experiments"
SWEEPS = sorted((ROOT / "configs" / "sweeps").glob("*.yaml"))
SHARED_DATA = ROOT.parent / "shared" / "data"


@pytest.fixture
def in_root(monkeypatch):
    """Plans name configs relative to the repository root, where the make targets run."""
    monkeypatch.chdir(ROOT)


def load_all_plans():
    return {p.stem: load_plan(p, set(METRICS)) for p in available_plans(PLANS).values()}


def test_all_means_the_five_numbered_reports_and_cifar10_lt_runs_by_name():
    """``run all`` (and so make reproduce-quick) stays within the numbered reports: cifar10_lt's ten
    ResNet-32 runs would not fit the quick scale's half hour."""
    assert [p.stem for p in select_plans(["all"], PLANS)] == ["000", "001", "002", "003", "004"]
    assert [p.stem for p in select_plans([], PLANS)] == ["000", "001", "002", "003", "004"]
    assert [p.stem for p in select_plans(["cifar10_lt"], PLANS)] == ["cifar10_lt"]


def test_analysis_tools_declare_their_outputs_and_rebalance_its_table():
    """A plan may ask for any tool that declares the file showing it ran: rebalance writes a table only
    and declares its JSON, so the runner waits on it; compare declares nothing and is not a plan tool."""
    from litvision.analysis.cli import BY_NAME
    from litvision.reproduce.plan import ANALYSIS_TOOLS

    assert BY_NAME["rebalance"].figures == () and BY_NAME["rebalance"].done == "rebalance.json"
    assert "rebalance" in ANALYSIS_TOOLS and "compare" not in ANALYSIS_TOOLS
    assert all(BY_NAME[name].done for name in ANALYSIS_TOOLS)


def test_every_report_has_a_plan_whose_rows_name_runs(in_root):
    plans = load_all_plans()
    assert list(plans) == ["000", "001", "002", "003", "004", "cifar10_lt"]
    for plan in plans.values():
        assert plan.tables, plan.id
        for table in plan.tables:
            if table.kind == "per_class":
                assert sorted(k for k in table.published if isinstance(k, int)) == list(range(10))
                assert "total" in table.published
                assert all(name in plan.runs for name in table.columns.values())
            for row in table.rows:
                assert row.run in plan.runs and len(row.published) == len(table.metrics)
        for spec in plan.unique_runs():
            assert (ROOT / spec.config).is_file()
    # 004's four ablation tables share their baseline: one run, trained once.
    ablation = plans["004"]
    baselines = {"activation-leaky_relu", "weight_decay-0.0", "width-64", "optimizer-sgd"}
    assert {ablation.runs[name].name for name in baselines} == {"resnet18_cifar_ablation"}
    assert len(ablation.unique_runs()) == 3 + 11


def print_config(args: list[str], capsys) -> dict:
    with pytest.raises(SystemExit) as exit_:
        litvision_main(["fit", *args, "--print_config"])
    assert exit_.value.code == 0, capsys.readouterr().err
    return yaml.safe_load(capsys.readouterr().out)


def override_args(run) -> list[str]:
    return options(run.overrides)


def contained(value, resolved) -> bool:
    if isinstance(value, dict):
        return all(contained(v, resolved[k]) for k, v in value.items())
    return value == resolved


@pytest.mark.parametrize("sweep", SWEEPS, ids=lambda p: p.stem)
def test_each_sweep_point_is_an_ordinary_run_of_what_it_claims(sweep, in_root, capsys):
    """Every point's overrides are accepted by the CLI and resolve to the value the point names, while
    the rest of the base config stays as it is."""
    loaded = load_sweep(sweep.relative_to(ROOT))
    base = print_config([f"--config={loaded.config}"], capsys)
    for label, run in sweep_runs(loaded, "sweep").items():
        resolved = print_config([f"--config={run.config}", *override_args(run)], capsys)
        for key, value in loaded.points[label.split("-", 1)[1]].items():
            found, got = lookup(resolved, key)
            assert found and contained(value, got), (label, key, got)
        assert resolved["data"] == base["data"] and resolved["trainer"] == base["trainer"]
    if loaded.name == "optimizer":  # a new optimizer class does not inherit SGD's momentum
        adam_args = override_args(sweep_runs(loaded, "s")["optimizer-adam"])
        adam = print_config([f"--config={loaded.config}", *adam_args], capsys)
        assert "momentum" not in adam["model"]["optimizer"]["init_args"]


@pytest.mark.parametrize(
    ("plan", "message"),
    [
        ({"title": "t", "runs": {"a": "configs/nope.yaml"}}, "config 'configs/nope.yaml' not found"),
        ({"title": "t", "runs": {"a": "configs/digits_lstm.yaml"},
          "tables": [{"title": "T", "metrics": ["accuracy"], "rows": []}]}, "metric 'accuracy'"),
        ({"title": "t", "runs": {"a": "configs/digits_lstm.yaml"},
          "tables": [{"title": "T", "metrics": ["test_acc"], "rows": [{"label": "x", "run": "b",
                                                                        "published": [1.0]}]}]}, "run 'b'"),
        ({"title": "t", "runs": {"a": "configs/digits_lstm.yaml"},
          "tables": [{"title": "T", "metrics": ["test_acc"],
                      "rows": [{"label": "x", "run": "a", "published": [1.0, 2.0]}]}]}, "1 value"),
        ({"title": "t", "runs": {"a": "configs/digits_lstm.yaml"},
          "analyses": [{"tool": "umap", "runs": ["a"]}]}, "tool 'umap'"),
        ({"title": "t", "sweeps": ["sweep.yaml"]}, "give either 'argument' with 'values', or 'points'"),
        ({"title": "t", "tablez": []}, "unknown key 'tablez'"),
        ({"title": "t", "runs": {"a": {"config": "configs/digits_lstm.yaml", "overides": {}}}},
         "unknown key 'overides'"),
        ({"title": "t", "tables": [{"title": "T", "kind": "other"}]}, "Got value: other"),
        ({"title": "t", "runs": {"a": "configs/digits_lstm.yaml"},
          "tables": [{"title": "T", "kind": "per_class", "columns": {"A": "a"},
                      "published": {"4-0": [1.0]}}]},
         "a range of them ('0-4': their mean accuracy) or 'total', not '4-0'"),
        ({"title": "t", "runs": {"a": "configs/digits_lstm.yaml"},
          "tables": [{"title": "T", "kind": "per_class", "columns": {"A": "a"}, "published": {1.5: [1.0]}}]},
         "or 'total', not 1.5"),
        ({"title": "t", "tables": [{"title": "T", "metrics": ["test_acc"],
                                    "rows": [{"label": "x", "run": "a", "published": ["high"]}]}]},
         "--tables.rows.published: 'high' is not a float"),
        ({"runs": {}}, "required: title"),
        ({"title": "t", "runs": {"a": "configs/digits_lstm.yaml"},
          "findings": [{"claim": "c", "higher": {"run": "a"}, "lower": {"run": "b"}}]}, "lower: run 'b'"),
        ({"title": "t", "runs": {"a": "configs/digits_lstm.yaml"},
          "findings": [{"claim": "c", "higher": {"run": "a"}, "lower": {"run": "a"}}]},
         "higher: not a cell of the plan's tables"),
        ({"title": "t", "runs": {"a": "configs/digits_lstm.yaml"},
          "findings": [{"claim": "c", "higher": "a", "lower": {"run": "a"}}]},
         "--findings.higher: Unable to load config 'a'"),
        ({"title": "t", "runs": {"a": "configs/digits_lstm.yaml"},
          "findings": [{"claim": "c", "higher": {"run": "a", "classes": "4-0"}, "lower": {"run": "a"}}]},
         "'classes' '4-0' must be a class id or a range"),
        ({"title": "t", "runs": {"a": "configs/digits_lstm.yaml", "b": "configs/digits_lstm.yaml"},
          "tables": [{"title": "T", "metrics": ["test_acc"], "rows": [
              {"label": "A", "run": "a", "published": [90.0]},
              {"label": "B", "run": "b", "published": [95.0]}]}],
          "findings": [{"claim": "A above B", "higher": {"run": "a"}, "lower": {"run": "b"}}]},
         "the published values (90.0 and 95.0) do not put 'higher' above 'lower'"),
    ],
)  # fmt: skip
def test_a_bad_plan_is_refused_in_one_line_naming_the_value(plan, message, tmp_path, in_root):
    (tmp_path / "sweep.yaml").write_text(yaml.safe_dump({"config": "configs/digits_lstm.yaml"}))
    if "sweeps" in plan:
        plan["sweeps"] = [str(tmp_path / "sweep.yaml")]
    (tmp_path / "900.yaml").write_text(yaml.safe_dump(plan))
    with pytest.raises(LitvisionError, match="^[^\n]*$") as error:
        load_plan(tmp_path / "900.yaml", set(METRICS))
    assert message in str(error.value)


def test_arguments_in_plans_sweeps_and_scales_are_kept_as_written(tmp_path, in_root):
    """A run's overrides may hold classes to build (a list of callbacks): the plan keeps them as written,
    and the run's command passes them on as the CLI takes them."""
    callbacks = [{"class_path": "helpers.crash.KillAtStep", "init_args": {"step": 3}}]
    plan = {"title": "t", "runs": {"a": {"config": "configs/digits_lstm.yaml",
                                         "overrides": {"trainer.callbacks": callbacks}}}}  # fmt: skip
    (tmp_path / "900.yaml").write_text(yaml.safe_dump(plan))
    run = load_plan(tmp_path / "900.yaml", set(METRICS)).runs["a"]
    assert run.overrides == {"trainer.callbacks": callbacks}
    runner = Reproduction(
        [load_plan(tmp_path / "900.yaml", set(METRICS))], Scale(), DataSource("download", Scale()), tmp_path
    )
    given = [arg.partition("=")[2] for arg in runner.fit_args(run) if arg.startswith("--trainer.callbacks=")]
    assert [yaml.safe_load(value) for value in given] == [callbacks]  # one line of YAML, read back as given


def test_the_command_line_names_an_unknown_report_or_scale(in_root, capsys):
    for args, message in [
        (["run", "009"], "report(s) ['009'] not found"),
        (["run", "--scale", "huge"], "'huge'"),
    ]:
        with pytest.raises(SystemExit) as exit_:
            main(args)
        assert exit_.value.code == 1
        err = capsys.readouterr().err.strip()
        assert message in err and len(err.splitlines()) == 1


def test_sources_refuse_what_they_cannot_provide(tmp_path, in_root):
    with pytest.raises(LitvisionError, match="does not exist; use --data_source download"):
        DataSource("offline", Scale("full"), shared_dir=tmp_path / "missing")
    with pytest.raises(LitvisionError, match="scaled-down"):
        DataSource("synthetic", Scale("full"))


def test_scale_arguments_apply_by_pattern_later_entries_winning(in_root):
    quick = load_scale("quick", PLANS / "scales")
    plans = load_all_plans()
    cnn, lstm, resnet = plans["000"].runs["cnn"], plans["002"].runs["lstm"], plans["004"].runs["final"]
    # "*" first, then "000/cnn" or "002/*" overriding its keys: each key once, with the last value.
    assert list(quick.arguments(cnn).items()) == [
        ("trainer.max_epochs", 5), ("trainer.limit_train_batches", 1.0), ("data.batch_size", 128),
        ("data.num_workers", 0),
    ]  # fmt: skip
    assert quick.arguments(lstm) == {
        "trainer.max_epochs": 10, "trainer.limit_train_batches": 1.0, "data.batch_size": 128,
        "data.num_workers": 0,
    }  # fmt: skip
    assert quick.arguments(resnet) == {
        "trainer.max_epochs": 1, "trainer.limit_train_batches": 8, "data.batch_size": 64,
        "data.num_workers": 0,
    }  # fmt: skip


def test_dry_run_prints_each_runs_command_and_writes_nothing(tmp_path, in_root, capsys):
    runs, data = tmp_path / "runs", tmp_path / "data"
    main(["run", "003", "004", "--dry_run", "--scale", "smoke", "--data_source", "synthetic",
          "--runs_dir", str(runs), "--data_root", str(data)])  # fmt: skip
    printed = capsys.readouterr().out
    commands = [line for line in printed.splitlines() if line.startswith("litvision fit --config=")]
    assert len(commands) == 3 + 14  # each run once: the sweeps' baseline points share theirs
    assert "--model.optimizer.init_args.lr=0.005" in printed and "SyntheticDataModule" in printed
    assert not runs.exists() and not data.exists()
    # One row alone (every seed of it), by a pattern of report/run; a pattern that matches nothing is refused.
    main(["run", "002", "--dry_run", "--scale", "cpu", "--only", "002/unb*",
          "--runs_dir", str(runs), "--data_root", str(data), "--seeds", "2"])  # fmt: skip
    printed = capsys.readouterr().out
    assert [line for line in printed.splitlines() if line.startswith("# ")] == [
        "# 002/unbalanced (to run)", "# 002/unbalanced-seed1 (to run)"
    ]  # fmt: skip
    # With the commands: the time they take here, where the report goes, and that the data is downloaded.
    assert "estimated time on this machine: about " in printed
    assert f"the report would be written to {ROOT / 'reports' / 'cpu' / 'REPORT.md'}" in printed
    assert "warning: --data_source download downloads the datasets" in " ".join(printed.split())
    with pytest.raises(SystemExit):
        main(["run", "002", "--dry_run", "--only", "002/elmann", "--runs_dir", str(runs)])
    assert "--only '002/elmann' matches no run of these reports: ['002/augmented'" in capsys.readouterr().err


def test_reproduce_works_from_any_directory(tmp_path, monkeypatch, capsys):
    """Outside the repository, the plans and their configs are the repository's; a path given on the
    command line is relative to where the command runs."""
    monkeypatch.chdir(tmp_path)
    main(["run", "002", "--dry_run", "--scale", "smoke", "--data_source", "synthetic", "--runs_dir", "runs",
          "--only", "002/elman"])  # fmt: skip
    printed = capsys.readouterr().out
    assert "litvision fit --config=configs/elman_mnist.yaml " in printed
    assert f"--trainer.logger.init_args.save_dir={tmp_path / 'runs' / 'smoke'} " in printed
    assert f"the report would be written to {ROOT / 'reports' / 'smoke' / 'REPORT.md'}" in printed
    assert Path.cwd() == tmp_path and not any(tmp_path.iterdir())


def test_the_loss_landscape_job_reads_the_data_of_the_source(tmp_path, in_root):
    """The loss landscape trains networks of its own from its config: its job gives it the config with the
    reproduction's data in place of the config's, which its parser accepts."""
    scale = load_scale("smoke", PLANS / "scales")
    plan = load_plan(PLANS.relative_to(ROOT) / "004.yaml", set(METRICS))
    runner = Reproduction([plan], scale, DataSource("synthetic", scale), tmp_path)
    (job,) = runner.analysis_jobs(plan, next(a for a in plan.analyses if a.tool == "loss-landscape"))
    printed = run_litvision([*job.args, "--print_config"], ROOT)
    assert printed.returncode == 0, printed.stderr[-2000:]
    config = yaml.safe_load(printed.stdout)
    assert config["data"]["class_path"] == "litvision.data.SyntheticDataModule" and config["steps"] == 3


def test_a_sweep_runs_alone_with_arguments_for_every_point(tmp_path, in_root, capsys):
    main(["sweep", "configs/sweeps/resnet18_width.yaml", "--dry_run", "--save_dir", str(tmp_path),
          "--", "--trainer.max_epochs=2"])  # fmt: skip
    commands = [line for line in capsys.readouterr().out.splitlines() if line.startswith("litvision fit")]
    assert len(commands) == 3 and all("--trainer.max_epochs=2" in c for c in commands)
    assert sum("--model.backbone.init_args.width=" in c for c in commands) == 2  # 64 is the base config
    assert all(f"--trainer.logger.init_args.save_dir={tmp_path}" in c for c in commands)
    assert not any(tmp_path.iterdir())


def test_a_second_reproduction_into_the_same_runs_stops_at_once(tmp_path, in_root):
    plans = load_all_plans()
    scale = load_scale("smoke", PLANS / "scales")
    first = Reproduction([plans["003"]], scale, DataSource("synthetic", scale), tmp_path)
    second = Reproduction([plans["003"]], scale, DataSource("synthetic", scale), tmp_path)
    with first.lock(), pytest.raises(LitvisionError, match="another reproduction is running in"):
        second.run()


def write_plan(folder: Path) -> None:
    """A plan of two digits runs: one trains (with a plain-loop reference), one cannot (its validation
    split is larger than the dataset)."""
    folder.mkdir()
    short = {"trainer.max_epochs": 2, "trainer.limit_train_batches": 6, "data.init_args.batch_size": 32}
    plan = {
        "title": "Digits",
        "runs": {
            "lstm": {"config": "configs/digits_lstm.yaml", "plain_reference": True, "overrides": short},
            "broken": {
                "config": "configs/digits_lstm.yaml",
                "overrides": {**short, "data.init_args.val_size": 5000},
            },
        },
        "notes": ["A note on the protocol."],
        "tables": [{"title": "Digits table", "metrics": ["test_acc"], "rows": [
            {"label": "LSTM", "run": "lstm", "published": [97.0]},
            {"label": "broken", "run": "broken", "published": [50.0]},
        ]}],
    }  # fmt: skip
    (folder / "900.yaml").write_text(yaml.safe_dump(plan, sort_keys=False))
    (folder / "scales").mkdir()
    (folder / "scales" / "tiny.yaml").write_text(yaml.safe_dump({"description": "two short epochs"}))


def test_runner_trains_once_retries_failures_and_puts_published_next_to_ours(tmp_path, in_root, capsys):
    plans, runs, reports = tmp_path / "plans", tmp_path / "runs", tmp_path / "reports"
    write_plan(plans)
    args = ["run", "--plans", str(plans), "--scale", "tiny", "--runs_dir", str(runs),
            "--reports_dir", str(reports), "--data_source", "synthetic", "--no_analyses"]  # fmt: skip
    with pytest.raises(SystemExit) as exit_:
        main(args)
    assert exit_.value.code == 1  # the broken run failed; the other finished, and the report was written
    printed = capsys.readouterr()
    assert "broken" in printed.err
    # The progress line counts the plain-loop reference among the jobs, from the start.
    assert "progress: 1 finished, 0 running, 2 left;" in printed.out
    after_plain = printed.out.split("plain loop 900/lstm finished")[1]
    assert "progress: 2 finished, 0 running, 0 left, 1 failed;" in after_plain

    lstm, broken = runs / "tiny" / "900" / "lstm", runs / "tiny" / "900" / "broken"
    marker = json.loads((lstm / MARKER).read_text())
    assert is_finished(lstm) and marker["command"].startswith(
        "litvision fit --config=configs/digits_lstm.yaml"
    )
    assert {"config.yaml", "test_results.json", "run_info.json", "checkpoints"} <= {
        p.name for p in lstm.iterdir()
    }
    results = json.loads((lstm / "test_results.json").read_text())
    plain = json.loads((lstm / "plain_loop" / "results.json").read_text())
    assert plain["acc"] == results["acc"]  # same seed, weights, batches: the same test accuracy on a CPU
    failure = json.loads((broken / MARKER).read_text())
    assert not is_finished(broken) and failure["status"] == "failed" and "5000" in failure["reason"]

    report = (reports / "tiny" / "REPORT.md").read_text()
    ours = 100 * results["acc"]
    assert "Scaled down" in report and "A note on the protocol." in report
    assert f"| LSTM | 97.00 | {ours:.2f} | {ours - 97:+.2f} | {ours:.2f} | +0.00 | `lstm` |" in report
    assert "| broken | 50.00 | failed |" in report
    rows = {r["row"]: r for r in csv.DictReader((reports / "tiny" / "results.csv").open())}
    assert float(rows["LSTM"]["ours"]) == round(ours, 2) and rows["broken"]["status"] == "failed"

    # Again: the finished run is kept as it is, the failed one is tried again.
    with pytest.raises(SystemExit):
        main(args)
    assert "1 finished already, 1 to run" in capsys.readouterr().out
    assert json.loads((lstm / MARKER).read_text()) == marker
    assert json.loads((broken / MARKER).read_text())["attempts"] == 2


@pytest.mark.slow
def test_the_whole_pipeline_fills_every_table_at_smoke_scale(tmp_path, in_root):
    """Every run of the five reports, the plain-loop references, the analyses and the report, on
    synthetic data of each dataset's shape (what `make reproduce-quick` does, smaller)."""
    runs, reports = tmp_path / "runs", tmp_path / "reports"
    main(["run", "all", "--scale", "smoke", "--data_source", "synthetic", "--jobs", "2", "--runs_dir",
          str(runs), "--reports_dir", str(reports), "--data_root", str(tmp_path / "data")])  # fmt: skip
    rows = list(csv.DictReader((reports / "smoke" / "results.csv").open()))
    assert {r["report"] for r in rows} == {"000", "001", "002", "003", "004"}
    assert all(r["status"] == "finished" and r["ours"] != "" for r in rows), [
        r for r in rows if not r["ours"]
    ]
    # Every finding of the reports judged (its two cells filled), with a verdict.
    findings = list(csv.DictReader((reports / "smoke" / "findings.csv").open()))
    assert len(findings) == 29 and all(r["ours_gap"] != "" for r in findings), findings
    assert all(
        r["verdict"].startswith(("confirmed", "not confirmed", "same direction", "reversed"))
        for r in findings
    )
    report = (reports / "smoke" / "REPORT.md").read_text()
    assert "| not run |" not in report and "failed:" not in report and "no figure" not in report
    figures = list((reports / "smoke" / "figures").glob("*.png"))
    assert report.count("](figures/") == len(figures) > 0


def test_plain_loop_killed_between_epochs_ends_where_an_unbroken_one_ends(tmp_path, capsys):
    """The plain loop saves its state after each epoch; killed and started again (the same command), it
    goes on from there to the same result as a run never stopped: weights, optimizer, best epoch and the
    random stream of the network's dropout carried over. Another run's state is refused, not used."""
    run, other = tmp_path / "run", tmp_path / "other"
    fit = [f"--config={ROOT / 'configs/digits_lstm.yaml'}", "--data.batch_size=128",
           "--model.backbone=litvision.models.MultiKernelCNN", "--model.backbone.init_args.channels=[8, 8]",
           "--model.backbone.init_args.pool_after=[1]", "--model.backbone.init_args.hidden=16"]  # fmt: skip
    for folder, epochs in ((run, 10), (other, 3)):
        folder.mkdir()
        config = print_config([*fit, f"--trainer.max_epochs={epochs}"], capsys)
        (folder / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    plain_loop(run, tmp_path / "whole", "cpu")  # in this process: the loop seeds itself

    out = tmp_path / "stopped"
    plain = [sys.executable, "-m", "litvision", "reproduce", "plain", "--device=cpu"]
    command = [*plain, str(run), f"--output={out}"]
    stopped = subprocess.Popen(command, stdout=subprocess.DEVNULL)
    while not (out / "state.pt").exists() and stopped.poll() is None:
        time.sleep(0.01)
    stopped.kill()
    assert stopped.wait() != 0 and not (out / "results.json").exists()  # killed part-way
    assert 1 <= load_checkpoint(out / "state.pt")["done"]["epochs"] < 10
    with pytest.raises(LitvisionError, match="holds the plain loop of another run"):
        plain_loop(other, out, "cpu")
    plain_loop(run, out, "cpu")  # the same command, started again

    whole, resumed = (json.loads((d / "results.json").read_text()) for d in (tmp_path / "whole", out))
    for key in ("acc", "confusion_matrix", "val_acc_best", "best_epoch", "train_images"):
        assert resumed[key] == whole[key], key
    assert not (out / "state.pt").exists()


@pytest.mark.slow
@pytest.mark.skipif(not SHARED_DATA.is_dir(), reason="needs the offline data copies in ../shared/data")
def test_offline_lstm_rows_land_where_the_plain_loop_lands(tmp_path, in_root):
    """Report 002 on the MNIST copy kept offline: every row with a plain-loop reference matches it."""
    runs, reports = tmp_path / "runs", tmp_path / "reports"
    main(["run", "002", "--scale", "smoke", "--data_source", "offline", "--runs_dir", str(runs),
          "--reports_dir", str(reports), "--data_root", str(tmp_path / "data"), "--no_analyses"])  # fmt: skip
    rows = [r for r in csv.DictReader((reports / "smoke" / "results.csv").open()) if r["plain_loop"]]
    assert len(rows) == 4  # Elman, LSTM, unbalanced, augmented
    assert all(r["ours"] == r["plain_loop"] for r in rows)
    shutil.rmtree(tmp_path / "data")


def write_mnist_files(folder: Path, counts: dict[str, int]) -> dict[str, np.ndarray]:
    """The four MNIST files in their official format (gzipped idx), with ``counts`` images per split,
    each image filled with its index (plus 200 in the test file), recognisable after the round trip."""
    folder.mkdir(parents=True)
    labels = {}
    for prefix, n in counts.items():
        fill = np.arange(n) + (200 if prefix == "t10k" else 0)
        images = fill.astype(np.uint8)[:, None, None] * np.ones((1, 28, 28), np.uint8)
        labels[prefix] = np.arange(n, dtype=np.uint8) % 10
        header = np.array([2051, n, 28, 28], ">i4").tobytes()
        (folder / f"{prefix}-images-idx3-ubyte.gz").write_bytes(gzip.compress(header + images.tobytes()))
        header = np.array([2049, n], ">i4").tobytes()
        (folder / f"{prefix}-labels-idx1-ubyte.gz").write_bytes(
            gzip.compress(header + labels[prefix].tobytes())
        )
    return labels


def test_offline_source_reads_the_full_mnist_and_subsets_of_its_training_set(tmp_path):
    """Offline, a scale without subset sizes trains on the official MNIST files through MNISTDataModule;
    a scale with sizes draws its images per class from the training file (not the test file)."""
    from litvision.data import MNISTDataModule

    shared = tmp_path / "shared"
    write_mnist_files(shared / "mnist", {"train": 60, "t10k": 30})
    cpu = Scale("cpu")
    source = DataSource("offline", cpu, tmp_path / "data", shared)
    config = {"data": {"class_path": "litvision.data.MNISTDataModule"}}
    args, dataset = source.arguments(config)
    assert dataset == "mnist" and args["data.download"] is False
    datamodule = MNISTDataModule(data_dir=args["data.data_dir"], download=False, val_size=0, batch_size=8)
    datamodule.prepare_data()
    datamodule.setup("fit")
    datamodule.setup("test")
    assert len(datamodule.train_set) == 60 and len(datamodule.test_set) == 30

    quick = Scale("quick", scaled_down=True, data={"mnist": {"train": 2, "test": 1}})
    args, _ = DataSource("offline", quick, tmp_path / "data", shared).arguments(config)
    assert (args["data.train_per_class"], args["data.test_per_class"]) == (2, 1)
    datamodule = MNISTDataModule(
        data_dir=args["data.data_dir"], download=False, train_per_class=2, test_per_class=1
    )
    train, train_labels = datamodule.read_split(train=True)
    test, test_labels = datamodule.read_split(train=False)
    assert len(train) == 20 and len(test) == 10
    fills = [np.asarray(train[i][0]).max() for i, label in enumerate(train_labels) if label == 0]
    assert fills == [0, 10]  # class 0's first two images of the training file
    assert [np.asarray(test[i][0]).max() for i, label in enumerate(test_labels) if label == 3] == [203]
    images = datamodule.decode(train, "train")  # as held in memory: the subset's own images
    assert images.shape == (20, 1, 28, 28) and [
        int(images[i].max()) for i in range(20) if train_labels[i] == 0
    ] == [0, 10]


def test_offline_source_reads_the_real_eurosat_archive_whole_or_per_class(tmp_path):
    from PIL import Image

    from litvision.data.eurosat import CLASSES, EuroSATDataModule
    from litvision.data.memory import image_files

    shared, tree = tmp_path / "shared", tmp_path / "tree"
    for name in CLASSES:
        (tree / "eurosat" / "2750" / name).mkdir(parents=True)
        for n in (1, 2, 10):  # numbered as in the real archive, where 10 sorts before 2 as text
            Image.new("RGB", (64, 64), (n, 0, 0)).save(tree / "eurosat" / "2750" / name / f"{name}_{n}.jpg")
    shared.mkdir()
    with tarfile.open(shared / "eurosat-rgb.tar.xz", "w:xz") as tar:
        tar.add(tree / "eurosat", arcname="eurosat")
    config = {"data": {"class_path": "litvision.data.EuroSATDataModule"}}
    for scale, per_class in ((Scale("cpu"), 3), (Scale("cpu", data={"eurosat": {"images": 2}}), 2)):
        args, _ = DataSource("offline", scale, tmp_path / "data", shared).arguments(config)
        datamodule = EuroSATDataModule(
            data_dir=args["data.data_dir"], download=False, test_size=0, val_size=0,
            images_per_class=args.get("data.images_per_class"),
        )  # fmt: skip
        datamodule.setup("fit")
        assert len(datamodule.train_set) == 10 * per_class
    kept = sorted(Path(f).name for f in image_files(datamodule.read_split(train=True)[0]) if "Forest_" in f)
    assert kept == ["Forest_1.jpg", "Forest_2.jpg"]  # the first images by number, not by name


def write_seeded_plan(folder: Path) -> None:
    """One digits run with two seeds and one run this scale leaves to a GPU."""
    folder.mkdir()
    short = {"trainer.max_epochs": 1, "trainer.limit_train_batches": 4, "data.init_args.batch_size": 32}
    plan = {
        "title": "Digits",
        "runs": {
            "lstm": {"config": "configs/digits_lstm.yaml", "overrides": short},
            "big": {"config": "configs/digits_lstm.yaml", "overrides": short},
        },
        "tables": [{"title": "Digits table", "metrics": ["test_acc"], "rows": [
            {"label": "LSTM", "run": "lstm", "published": [97.0]},
            {"label": "big", "run": "big", "published": [99.0]},
            {"label": "SVM head", "run": "lstm", "published": [96.0], "metrics": ["svm_head_acc"]},
        ]}, {"title": "Per class", "kind": "per_class", "columns": {"LSTM": "lstm"},
             "published": {0: [90.0], "0-4": [95.0], "total": [97.0]}}],
        "analyses": [{"tool": "svm-head", "runs": ["lstm"]}, {"tool": "curves", "runs": ["lstm", "big"]},
                     {"tool": "confusion", "runs": ["big"]},
                     {"tool": "loss-landscape", "config": "configs/analysis/loss_landscape.yaml"}],
    }  # fmt: skip
    (folder / "900.yaml").write_text(yaml.safe_dump(plan, sort_keys=False))
    (folder / "scales").mkdir()
    scale = {
        "description": "one short epoch.",
        "scaled_down": False,
        "seeds": {"900/lstm": 2},
        "reduced": {"900/lstm": "one short epoch"},
        "needs_gpu": {"900/big": "too big for a CPU.", "900/loss-*": "hours of VGG-A."},
    }
    (folder / "scales" / "cpu.yaml").write_text(yaml.safe_dump(scale))


def test_seeds_are_separate_runs_and_the_report_shows_their_mean_and_spread(tmp_path, in_root, capsys):
    plans, runs, reports = tmp_path / "plans", tmp_path / "runs", tmp_path / "reports"
    write_seeded_plan(plans)
    main(["run", "--plans", str(plans), "--scale", "cpu", "--runs_dir", str(runs), "--reports_dir",
          str(reports)])  # fmt: skip
    out = capsys.readouterr().out
    assert "2 runs at scale cpu" in out and "1 left to a GPU" in out and "progress: 2 finished" in out
    first, second = runs / "cpu" / "900" / "lstm", runs / "cpu" / "900" / "lstm-seed1"
    assert not (runs / "cpu" / "900" / "big").exists()
    configs = [yaml.safe_load((d / "config.yaml").read_text()) for d in (first, second)]
    assert [c["seed_everything"] for c in configs] == [42, 43]
    assert [c["data"]["init_args"]["split_seed"] for c in configs] == [0, 1]
    infos = [json.loads((d / "run_info.json").read_text()) for d in (first, second)]
    assert infos[0]["split_checksum"] != infos[1]["split_checksum"]  # another validation split
    accs = [100 * json.loads((d / "test_results.json").read_text())["acc"] for d in (first, second)]

    mean, std = statistics.mean(accs), statistics.stdev(accs)
    report = (reports / "cpu" / "REPORT.md").read_text()
    assert (
        f"| LSTM | 97.00 | {mean:.2f} ± {std:.2f} (2 seeds) | {mean - 97:+.2f} | one short epoch |" in report
    )
    assert "| big | 99.00 | needs a GPU |" in report
    assert "too big for a CPU. `litvision fit --config=configs/digits_lstm.yaml" in report
    # A figure of several runs shows those trained here and says which one is left to a GPU; a figure of
    # that run alone says why it has none.
    curves = f"**curves** (without big: needs a GPU at this scale; `litvision analyze curves {first} --output"
    assert curves in report and "![curves](figures/900-curves-lstm+big-curves.png)" in report
    assert "- *confusion*: no figure, its run(s) big need a GPU at this scale." in report
    assert "- *loss-landscape*: no figure, it needs a GPU at this scale: hours of VGG-A.\n" in report
    assert not (runs / "cpu" / "900" / "analysis" / "loss-landscape").exists()  # not trained here
    # An analysis that scores runs on every seed of its run, and the report averages its number over
    # them; a figure is made of the first seed only.
    runner = Reproduction(
        [load_plan(plans / "900.yaml", set(METRICS))], load_scale("cpu", plans / "scales"),
        DataSource("download", load_scale("cpu", plans / "scales")), runs / "cpu",
    )  # fmt: skip
    jobs = {
        a: runner.analysis_jobs(runner.plans[0], Analysis(a, ["lstm"], name="again"))
        for a in ("svm-head", "tsne")
    }
    assert [list(job.args[2:]) for job in jobs["svm-head"]] == [[str(first)], [str(second)]]
    assert [list(job.args[2:]) for job in jobs["tsne"]] == [[str(first)]]
    assert runner.analysis_jobs(runner.plans[0], Analysis("svm-head", ["lstm"])) == []  # done, runs unchanged
    svm = [100 * json.loads((d / "analysis/svm_head.json").read_text())["heads"]["svm"]["acc"]
           for d in (first, second)]  # fmt: skip
    # A range of classes in a per-class table: each seed's mean over those classes, then mean ± std.
    tests = [json.loads((d / "test_results.json").read_text()) for d in (first, second)]
    minority = [statistics.mean(100 * c["acc"] for c in list(t["per_class"].values())[:5]) for t in tests]
    low_mean, low_std = statistics.mean(minority), statistics.stdev(minority)
    assert (
        f"| classes 0-4 (mean) | {low_mean:.2f} ± {low_std:.2f} (2 seeds) / 95.00 ({low_mean - 95:+.2f}) |"
        in report
    )
    svm_mean, svm_std = statistics.mean(svm), statistics.stdev(svm)
    assert f"| SVM head | 96.00 | {svm_mean:.2f} ± {svm_std:.2f} (2 seeds) |" in report
    # results.csv: the records, one per table cell and seed.
    rows = [
        r for r in csv.DictReader((reports / "cpu" / "results.csv").open()) if r["table"] == "Digits table"
    ]
    lstm = [r for r in rows if r["row"] == "LSTM"]
    assert [(r["seed"], float(r["ours"]), r["run_dir"]) for r in lstm] == [
        ("0", round(accs[0], 2), str(first)), ("1", round(accs[1], 2), str(second))
    ]  # fmt: skip
    assert [(r["status"], r["ours"]) for r in rows if r["row"] == "big"] == [("needs a GPU", "")]


def test_a_report_with_runs_missing_says_at_its_top_that_it_is_partial(tmp_path, in_root):
    """Written while a run this scale trains here is missing (the run left to a GPU does not count), the
    report says it is partial and how it fills in; once every run has finished, it no longer does."""
    plans, runs, reports = tmp_path / "plans", tmp_path / "runs", tmp_path / "reports"
    write_seeded_plan(plans)

    def finish(run: str) -> None:
        (runs / "cpu" / "900" / run).mkdir(parents=True)
        (runs / "cpu" / "900" / run / "test_results.json").write_text(json.dumps({"acc": 0.9}))
        (runs / "cpu" / "900" / run / MARKER).write_text(json.dumps({"status": "finished"}))

    args = ["report", "--plans", str(plans), "--scale", "cpu", "--runs_dir", str(runs), "--reports_dir",
            str(reports)]  # fmt: skip
    finish("lstm")
    main(args)
    top = (reports / "cpu" / "REPORT.md").read_text().split("## Summary")[0]
    assert "> **Partial report**: 1 of 2 runs finished" in top and "`litvision reproduce run`" in top
    assert "| LSTM | 97.00 | 90.00 (1 of 2 seeds) | -7.00 |" in (reports / "cpu" / "REPORT.md").read_text()
    finish("lstm-seed1")
    main(args)
    assert "Partial report" not in (reports / "cpu" / "REPORT.md").read_text()
    # A plain-loop reference the plan asks for, which the runner trains after the runs, counts too.
    plan = yaml.safe_load((plans / "900.yaml").read_text())
    plan["runs"]["lstm"]["plain_reference"] = True
    (plans / "900.yaml").write_text(yaml.safe_dump(plan, sort_keys=False))
    main(args)
    top = (reports / "cpu" / "REPORT.md").read_text().split("## Summary")[0]
    assert "> **Partial report**: 2 of 2 runs finished, 0 of 1 plain-loop references;" in top
    (runs / "cpu" / "900" / "lstm" / PLAIN_DIR).mkdir()
    (runs / "cpu" / "900" / "lstm" / PLAIN_DIR / "results.json").write_text(json.dumps({"acc": 0.9}))
    main(args)
    assert "Partial report" not in (reports / "cpu" / "REPORT.md").read_text()
    # A study's plan (not numbered) is left out of a report unless named, run, or the scale covers it:
    # the report of a scale made for the study covers the study alone.
    (plans / "study.yaml").write_text((plans / "900.yaml").read_text().replace("Digits", "Study"))
    main(args)
    assert "Study" not in (reports / "cpu" / "REPORT.md").read_text()
    scale = yaml.safe_load((plans / "scales" / "cpu.yaml").read_text())
    (plans / "scales" / "study.yaml").write_text(yaml.safe_dump({**scale, "reports": ["study"]}))
    main([*args[:4], "study", *args[5:]])
    text = (reports / "study" / "REPORT.md").read_text()
    assert "## study: Study" in text and "Digits" not in text and "1 of 2 runs" not in text
    assert text.startswith("# Reproduction of Study (study scale)")


def test_a_report_reads_the_analyses_of_runs_made_before_their_markers(tmp_path, in_root):
    """Runs of an earlier litvision recorded their analyses in one analyses.json per report: the report
    of those runs still shows their figures (reports/cpu was made so)."""
    plans, runs, reports = tmp_path / "plans", tmp_path / "runs", tmp_path / "reports"
    write_seeded_plan(plans)
    figure = runs / "cpu" / "900" / "lstm" / "analysis" / "svm_head.png"
    figure.parent.mkdir(parents=True)
    figure.write_bytes(b"png")
    entry = {"status": "done", "command": "litvision analyze svm-head RUN", "figures": [str(figure)]}
    (runs / "cpu" / "900" / "analyses.json").write_text(json.dumps({"svm-head-lstm": entry}))
    main(["report", "--plans", str(plans), "--scale", "cpu", "--runs_dir", str(runs), "--reports_dir",
          str(reports)])  # fmt: skip
    text = (reports / "cpu" / "REPORT.md").read_text()
    assert "**svm-head** (`litvision analyze svm-head RUN`)" in text
    assert (reports / "cpu" / "figures" / "900-svm-head-lstm-svm_head.png").read_bytes() == b"png"


def test_findings_say_whether_ours_keep_the_reports_ordering_beyond_the_seeds_noise(tmp_path, in_root):
    """A finding compares two cells, each over its run's finished seeds: confirmed when our gap has the
    report's sign, and beyond the noise when it is over twice the larger standard deviation."""
    plans, runs, reports = tmp_path / "plans", tmp_path / "runs", tmp_path / "reports"
    write_seeded_plan(plans)
    plan = yaml.safe_load((plans / "900.yaml").read_text())
    plan["runs"]["small"] = plan["runs"]["lstm"]
    plan["tables"][0]["rows"].append({"label": "small", "run": "small", "published": [95.0]})
    plan["tables"][1]["columns"]["small"] = "small"
    plan["tables"][1]["published"] = {"0-4": [95.0, 90.0]}
    plan["findings"] = [
        {"claim": "LSTM above small", "higher": {"run": "lstm"}, "lower": {"run": "small"}},
        {"claim": "LSTM above small, 0-4", "higher": {"run": "lstm", "classes": "0-4"},
         "lower": {"run": "small", "classes": "0-4"}},
        {"claim": "big above LSTM", "higher": {"run": "big"}, "lower": {"run": "lstm"}},
    ]  # fmt: skip
    (plans / "900.yaml").write_text(yaml.safe_dump(plan, sort_keys=False))

    def finish(run: str, acc: float, minority: float) -> None:
        (runs / "cpu" / "900" / run).mkdir(parents=True, exist_ok=True)
        per_class = {str(k): {"acc": minority if k < 5 else acc} for k in range(10)}
        (runs / "cpu" / "900" / run / "test_results.json").write_text(
            json.dumps({"acc": acc, "per_class": per_class})
        )
        (runs / "cpu" / "900" / run / MARKER).write_text(json.dumps({"status": "finished"}))

    def findings() -> dict[str, list[str]]:
        main(["report", "--plans", str(plans), "--scale", "cpu", "--runs_dir", str(runs), "--reports_dir",
              str(reports)])  # fmt: skip
        text = (reports / "cpu" / "REPORT.md").read_text().split("### Findings")[1].split("###")[0]
        rows = [[c.strip() for c in line.strip("|").split("|")] for line in text.splitlines() if "|" in line]
        return {row[0]: row[1:] for row in rows[2:]}

    finish("lstm", 0.95, 0.90)
    finish("lstm-seed1", 0.97, 0.92)  # overall: 96 ± 1.41 over two seeds; classes 0-4: 91 ± 1.41
    finish("small", 0.90, 0.80)
    found = findings()
    assert found["LSTM above small"] == [
        "97.00 vs 95.00", "+2.00", "96.00 ± 1.41 (2 seeds) vs 90.00", "+6.00",
        "confirmed, beyond the noise (2 x 1.41: twice the seeds' standard deviation)",
    ]  # fmt: skip
    assert found["LSTM above small, 0-4"][1:] == ["+5.00", "91.00 ± 1.41 (2 seeds) vs 80.00", "+11.00",
                                                    found["LSTM above small"][-1]]  # fmt: skip
    assert found["big above LSTM"][2:] == ["—", "", "needs a GPU: `big`"]
    shutil.rmtree(runs / "cpu" / "900" / "small")
    finish("small", 0.94, 0.80)  # a gap of 2 points: beyond one standard deviation, within two
    assert found_verdict(findings(), "LSTM above small") == "same direction, within the noise"
    shutil.rmtree(runs / "cpu" / "900" / "small")
    finish("small", 0.99, 0.80)  # 3 points the other way
    assert found_verdict(findings(), "LSTM above small") == "reversed, beyond the noise"
    rows = {r["finding"]: r for r in csv.DictReader((reports / "cpu" / "findings.csv").open())}
    assert [rows["LSTM above small"][k] for k in ("published_gap", "ours_gap", "noise", "seeds")] == [
        "2.0", "-3.0", "1.41", "1"
    ]  # fmt: skip
    assert rows["LSTM above small"]["verdict"].startswith("reversed, beyond the noise")
    summary = (reports / "cpu" / "REPORT.md").read_text().split("## Summary")[1].split("<a id")[0]
    assert "| 1 of 2 (1 needing a GPU) |" in summary  # the 0-4 one confirmed, the reversed one not
    # The mean difference: small's two cells (4 and 10 points), not the LSTM's at its reduced budget.
    assert "mean \\|difference\\|, published recipes (points)" in summary and "| 7.00 |" in summary
    per_class = (reports / "cpu" / "REPORT.md").read_text().split("### Per class")[1].split("###")[0]
    assert "Budget: LSTM: one short epoch; small: published recipe." in per_class
    # A finished run whose analysis (the SVM head) has not run: its cell says so, not "finished".
    assert "| SVM head | 96.00 | no value yet |" in (reports / "cpu" / "REPORT.md").read_text()
    shutil.rmtree(runs / "cpu" / "900" / "small")  # not run yet: its two findings wait for it
    findings()
    summary = (reports / "cpu" / "REPORT.md").read_text().split("## Summary")[1].split("<a id")[0]
    assert "| 0 of 0 (2 waiting for runs; 1 needing a GPU) |" in summary


def found_verdict(found: dict[str, list[str]], claim: str) -> str:
    return found[claim][-1].split(" (")[0]


def test_a_reproduction_estimated_over_the_limit_waits_for_yes(tmp_path, in_root, capsys, monkeypatch):
    import litvision.reproduce.cli as entry

    plans, runs = tmp_path / "plans", tmp_path / "runs"
    write_seeded_plan(plans)
    monkeypatch.setattr(entry, "LONG_HOURS", 0)  # any estimate is "too long"
    with pytest.raises(SystemExit) as exit_:
        main(["run", "--plans", str(plans), "--scale", "cpu", "--runs_dir", str(runs),
              "--reports_dir", str(tmp_path / "reports"), "--no_analyses"])  # fmt: skip
    assert exit_.value.code == 1
    err = capsys.readouterr().err.strip()
    assert "add --yes to start it anyway" in err and len(err.splitlines()) == 1
    assert not (runs / "cpu" / "900").exists()
    # Timed while other work holds the cores, the estimate says so (it can be 100 times too long).
    monkeypatch.setattr(entry.os, "getloadavg", lambda: (3.0 * (os.cpu_count() or 1), 0.0, 0.0))
    with pytest.raises(SystemExit):
        main(["run", "--plans", str(plans), "--scale", "cpu", "--runs_dir", str(runs),
              "--reports_dir", str(tmp_path / "reports"), "--no_analyses"])  # fmt: skip
    assert f"the machine is busy, load {3.0 * (os.cpu_count() or 1):.1f}" in capsys.readouterr().out


def test_jobs_per_gpu_puts_several_runs_on_each_gpu_and_refuses_what_cannot_share(in_root, capsys):
    """Each GPU (or group of ``gpus_per_run``) is a slot ``jobs_per_gpu`` times, alternating, so ``--jobs``
    spreads over the GPUs; a DDP run takes its GPUs whole, and a CPU takes ``--jobs`` as it is."""
    assert slots(["0", "1"], 1, None, 2) == [["0"], ["1"], ["0"], ["1"]]
    assert slots(["0", "1"], 1, 3, 2) == [["0"], ["1"], ["0"]]
    assert slots(["0", "1", "2", "3"], 2, None) == [["0", "1"], ["2", "3"]]
    assert slots([], 1, 2, 3) == [None, None]
    for args, message in [
        (["--jobs_per_gpu", "0"], "--jobs_per_gpu 0 is invalid: it must be 1 or more"),
        (["--jobs_per_gpu", "2", "--gpus_per_run", "2"], "--jobs_per_gpu 2 needs --gpus_per_run 1"),
    ]:
        with pytest.raises(SystemExit) as exit_:
            main(["run", "003", "--dry_run", "--scale", "smoke", "--data_source", "synthetic", *args])
        err = capsys.readouterr().err.strip()
        assert exit_.value.code == 1 and message in err and len(err.splitlines()) == 1, err


def test_progress_scales_the_estimate_by_the_finished_runs():
    progress = Progress({"a": 10.0, "b": 10.0, "c": 20.0}, slots=2)
    assert progress.left_seconds() == 20.0  # 40 s of runs on two slots
    progress.start("a")
    progress.end("a", 20.0, ok=True)  # twice as long as estimated
    progress.start("b")
    assert progress.left_seconds() == 2 * (10 + 20) / 2
    assert progress.line().startswith("1 finished, 1 running, 1 left;")


def test_the_runner_resumes_an_interrupted_run_in_place(tmp_path, in_root, capsys, monkeypatch):
    """A run killed mid-way (as a crash or a stopped reproduction leaves it) continues from its
    ``last.ckpt`` in its own directory at the next start, and ends with the steps of a whole run."""
    monkeypatch.setenv("PYTHONPATH", f"{ROOT / 'src'}{os.pathsep}{ROOT / 'tests'}")
    steps = {"trainer.max_epochs": 2, "trainer.limit_train_batches": 6, "data.init_args.batch_size": 32,
             "data.init_args.num_workers": 0, "checkpoint_every_n_steps": 4}  # fmt: skip
    crash = {"trainer.callbacks+": "helpers.crash.KillAtStep", "trainer.callbacks.step": 9}
    for name, overrides in (("crashing", {**steps, **crash}), ("plain", steps)):
        (tmp_path / name / "scales").mkdir(parents=True)
        plan = {
            "title": "Digits",
            "runs": {"lstm": {"config": "configs/digits_lstm.yaml", "overrides": overrides}},
        }
        (tmp_path / name / "900.yaml").write_text(yaml.safe_dump(plan))
        (tmp_path / name / "scales" / "tiny.yaml").write_text(yaml.safe_dump({"description": "short"}))
    args = ["--scale", "tiny", "--runs_dir", str(tmp_path / "runs"), "--reports_dir",
            str(tmp_path / "reports"), "--data_source", "synthetic", "--no_analyses"]  # fmt: skip
    # The time-left estimate of a run in that directory, were it a 2-epoch MNIST run (digits have none).
    mnist = tmp_path / "mnist"
    (mnist / "900.yaml").parent.mkdir()
    (mnist / "900.yaml").write_text(yaml.safe_dump({"title": "MNIST", "runs": {"lstm": {
        "config": "configs/lstm_mnist.yaml", "overrides": {"trainer.max_epochs": 2}}}}))  # fmt: skip
    scale = Scale("tiny", scaled_down=True, data={"mnist": {"train": 10, "test": 10}})
    plan = load_plan(mnist / "900.yaml", set(METRICS))
    runner = Reproduction([plan], scale, DataSource("synthetic", scale), tmp_path / "runs" / "tiny")
    fresh = runner.predicted_seconds(plan.runs["lstm"]) - START_S  # training time, 2 epochs
    assert fresh > 0
    with pytest.raises(SystemExit):
        main(["run", "--plans", str(tmp_path / "crashing"), *args])
    run = tmp_path / "runs" / "tiny" / "900" / "lstm"
    assert not is_finished(run) and (run / "checkpoints" / "last.ckpt").is_file()
    capsys.readouterr()
    # Killed in its second epoch: the estimate (and so the progress line's calibration) counts 1 epoch left.
    assert epochs_trained(run) == 1
    marker = (run / MARKER).read_text()
    (run / MARKER).unlink()  # as a runner killed with its run leaves it: the report says what is left
    loads = []
    monkeypatch.setattr(report_module, "epochs_trained", lambda d: loads.append(d) or epochs_trained(d))
    unfinished = RunDir(plan.runs["lstm"], run)
    status = unfinished.status
    assert status.startswith("unfinished: 1 epoch(s) trained; it resumes from its last checkpoint")
    assert unfinished.status == status and len(loads) == 1  # a report asks for it in every cell: read once
    (run / MARKER).write_text(marker)
    assert runner.predicted_seconds(plan.runs["lstm"]) - START_S == pytest.approx(fresh / 2)

    main(["run", "--plans", str(tmp_path / "plain"), *args])
    marker = json.loads((run / MARKER).read_text())
    assert is_finished(run) and marker["resumed_from_checkpoint"] and marker["attempts"] == 2
    assert f"--ckpt_path={run / 'checkpoints' / 'last.ckpt'}" in (run / "reproduce.log").read_text()
    saved = torch.load(run / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
    assert saved["global_step"] == 12  # 2 epochs of 6 steps: the lost steps were trained again
    assert [p.name for p in run.parent.iterdir()] == ["lstm"]  # no second run directory
    report = (tmp_path / "reports" / "tiny" / "REPORT.md").read_text()
    assert f"| {marker['wall_time_s']:.0f} (last attempt) |" in report  # its command time: not all of it
    info = json.loads((run / "run_info.json").read_text())
    assert [s["status"] for s in info["sessions"]] == ["killed", "finished"]
    result = RunDir(plan.runs["lstm"], run)
    assert result.training_time == f"{info['wall_time_s']:.0f}"  # both sessions timed
    del info["sessions"][0]["wall_time_s"]  # as a session killed before its first checkpoint leaves it
    (run / "run_info.json").write_text(json.dumps(info))
    assert RunDir(plan.runs["lstm"], run).training_time.endswith(" (+ 1 session(s) not timed)")


def test_the_estimate_counts_the_images_an_imbalance_keeps(in_root):
    """A CIFAR-10-LT run trains on a quarter of CIFAR-10's images: the queue's budget must know it."""
    config = read_yaml("configs/longtail/ce.yaml", "config")
    tail = run_seconds(config, {}, "cifar10", (3, 32, 32)) - START_S
    del config["data"]["init_args"]["imbalance"]
    whole = run_seconds(config, {}, "cifar10", (3, 32, 32)) - START_S
    kept = sum(LongTailImbalance(100).counts([4500] * 10))  # 45,000 after the validation split
    assert tail / whole == pytest.approx(kept / 45_000, rel=1e-6)


def test_the_estimate_counts_the_plain_loop_references_left(tmp_path, in_root):
    """A run with a plain-loop reference costs its training twice: the estimate counts the reference too,
    less the epochs its saved state holds, until it has written its results."""
    plans = tmp_path / "plans"
    plans.mkdir()
    lstm = {"config": "configs/lstm_mnist.yaml", "overrides": {"trainer.max_epochs": 2}}
    (plans / "900.yaml").write_text(
        yaml.safe_dump({"title": "MNIST", "runs": {"lstm": {**lstm, "plain_reference": True}}})
    )
    scale = Scale("tiny", scaled_down=True, data={"mnist": {"train": 10, "test": 10}})
    plan = load_plan(plans / "900.yaml", set(METRICS))
    runner = Reproduction([plan], scale, DataSource("synthetic", scale), tmp_path / "runs")
    spec = plan.runs["lstm"]
    run = runner.predicted_seconds(spec)
    assert run > START_S and runner.estimate() == pytest.approx(2 * run)
    out = runner.run_dir(spec) / PLAIN_DIR
    out.mkdir(parents=True)
    torch.save({"state_dict": {}, "done": {"epochs": 1}}, out / STATE)  # stopped after its first epoch
    assert runner.estimate() == pytest.approx(run + START_S + (run - START_S) / 2)
    (out / "results.json").write_text("{}")
    assert runner.estimate() == pytest.approx(run)


def test_a_reproduction_stopped_by_sigterm_stops_its_run_which_is_interrupted_not_failed(tmp_path, in_root):
    """``kill`` (or a scheduler) stops a reproduction as Ctrl-C does, one started with ``nohup ... &`` too,
    which ignores Ctrl-C's SIGINT: its run's process is stopped, the marker, the console and the report
    say interrupted, not failed, and the run keeps its checkpoint for the next start."""
    plans, runs, reports = tmp_path / "plans", tmp_path / "runs", tmp_path / "reports"
    (plans / "scales").mkdir(parents=True)
    long = {"trainer.max_epochs": 100, "data.init_args.batch_size": 32, "data.init_args.num_workers": 0,
            "checkpoint_every_n_steps": 2}  # fmt: skip
    plan = {"title": "Digits", "runs": {"lstm": {"config": "configs/digits_lstm.yaml", "overrides": long}},
            "tables": [{"title": "Digits", "metrics": ["test_acc"],
                        "rows": [{"label": "LSTM", "run": "lstm", "published": [97.0]}]}]}  # fmt: skip
    (plans / "900.yaml").write_text(yaml.safe_dump(plan))
    (plans / "scales" / "cpu.yaml").write_text(yaml.safe_dump({"description": "long", "scaled_down": False}))
    command = [sys.executable, "-m", "litvision", "reproduce", "run", "900", "--plans", str(plans), "--scale",
               "cpu", "--runs_dir", str(runs), "--reports_dir", str(reports), "--no_analyses"]  # fmt: skip
    run = runs / "cpu" / "900" / "lstm"
    runner = subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True,
        env={**os.environ, "PYTHONPATH": str(ROOT / "src")},
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_IGN),  # as `nohup ... &` starts it
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 120
        while not (run / "checkpoints" / "last.ckpt").is_file() and runner.poll() is None:
            assert time.monotonic() < deadline, "the run wrote no checkpoint in 2 minutes"
            time.sleep(0.2)
        runner.send_signal(signal.SIGTERM)
        out, err = runner.communicate(timeout=120)
        assert runner.returncode == 130, err[-2000:]
        with pytest.raises(ProcessLookupError):  # nothing of it left running: its run was stopped
            os.killpg(runner.pid, 0)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(runner.pid, signal.SIGKILL)
    assert "interrupted; run the same command again to resume" in err
    assert (run / "reproduce.log").read_text().count("Received SIGTERM") == 1  # asked once, then waited for
    assert "run 900/lstm interrupted after" in out and "it resumes at the next start" in out
    assert "progress: 0 finished, 0 running, 1 left;" in out  # not counted as failed
    marker = json.loads((run / MARKER).read_text())
    assert marker["status"] == "interrupted" and marker["reason"] == "interrupted"
    text = (reports / "cpu" / "REPORT.md").read_text()
    assert "| LSTM | 97.00 | interrupted |" in text and "0 failed" in text
    assert (
        "| `lstm` | interrupted: it resumes from its last checkpoint at the next `litvision reproduce run`"
        in text
    )
    assert not is_finished(run) and (run / "checkpoints" / "last.ckpt").is_file()  # the next start resumes


def test_the_queue_packs_finished_runs_only_and_a_bare_machine_goes_on_from_them(
    tmp_path, in_root, capsys, monkeypatch
):
    """``reproduce queue`` trains runs in the scale's queue order, each run's analyses right after it (they
    read its checkpoint); stopped (SIGTERM, or its budget's end) while a run trains, it packs what a
    report needs of the finished runs, no checkpoint, and the run it stopped is not among them. Unpacked
    into a bare runs directory, they count as finished: the next queue goes on with the others, and the
    report shows them, partial."""
    plans, runs, out, fresh = tmp_path / "plans", tmp_path / "runs", tmp_path / "out", tmp_path / "fresh"
    (plans / "scales").mkdir(parents=True)
    short = {"trainer.max_epochs": 1, "trainer.limit_train_batches": 2, "data.init_args.batch_size": 32,
             "data.init_args.num_workers": 0}  # fmt: skip
    plan = {"title": "Digits", "runs": {
        "b": {"config": "configs/digits_lstm.yaml", "overrides": short},
        "long": {"config": "configs/digits_lstm.yaml",
                 "overrides": {**short, "trainer.max_epochs": 100, "checkpoint_every_n_steps": 1}},
        "a": {"config": "configs/digits_lstm.yaml", "overrides": short}},
        "tables": [{"title": "Digits", "metrics": ["test_acc"], "rows": [
            {"label": name, "run": name, "published": [97.0]} for name in ("a", "long", "b")]}],
        "analyses": [{"tool": "confusion", "runs": ["a"]}]}  # fmt: skip
    (plans / "900.yaml").write_text(yaml.safe_dump(plan, sort_keys=False))
    (plans / "scales" / "tiny.yaml").write_text(yaml.safe_dump({"queue": ["900/a", "900/long"]}))
    common = ["900", "--plans", str(plans), "--scale", "tiny", "--data_source", "synthetic", "--output",
              str(out), "--reports_dir", str(tmp_path / "reports")]  # fmt: skip
    # The budget counts from the process's start (Python's imports are part of it), here pytest's.
    assert 1 < cli.process_age() < 24 * 3600
    monkeypatch.setattr(cli, "process_age", lambda: 0.0)
    for budget in ("0", "-5"):
        with pytest.raises(SystemExit) as exit_:
            main(["queue", *common, "--runs_dir", str(runs), "--budget", budget])
        err = capsys.readouterr().err.strip()
        assert exit_.value.code == 1 and f"--budget {budget} is invalid: it must be more than 0" in err, err
    assert not runs.exists()

    long, stop = runs / "tiny" / "900" / "long", threading.Event()

    def stop_while_long_trains() -> None:
        while not stop.wait(0.2):
            if (long / "checkpoints" / "last.ckpt").is_file():
                os.kill(os.getpid(), signal.SIGTERM)
                return

    watcher = threading.Thread(target=stop_while_long_trains)
    watcher.start()
    try:
        with pytest.raises(SystemExit) as exit_:
            main(["queue", *common, "--runs_dir", str(runs), "--budget", "600"])
    finally:
        stop.set()
        watcher.join()
    printed = capsys.readouterr()
    assert exit_.value.code == 130, printed.err[-2000:]
    assert "1 finished run(s) packed into" in printed.out
    with tarfile.open(out / "runs.tar.gz") as tar:
        names = tar.getnames()
        tar.extractall(fresh, filter="data")
    assert {"tiny/900/a/config.yaml", "tiny/900/a/run_info.json", "tiny/900/a/test_results.json",
            "tiny/900/a/reproduce.json", "tiny/900/a/analysis/confusion.png",
            "tiny/900/analysis/confusion-a.json"} <= set(names)  # fmt: skip
    assert any("events.out.tfevents" in n for n in names) and not any(n.endswith(".ckpt") for n in names)
    assert not any("/long" in n or "/b/" in n for n in names)  # stopped, or not started
    assert (runs / "tiny" / "900" / "a" / "checkpoints" / "last.ckpt").is_file()  # left here, not packed

    # A bare machine with the archive unpacked: the finished run is not queued again, the stopped one is.
    main(["queue", *common, "--runs_dir", str(fresh), "--budget", "30", "--dry_run"])
    assert [line for line in capsys.readouterr().out.splitlines() if line.startswith("# ")] == [
        "# 900/long (about 0m20s)", "# 900/b (about 0m20s: not in this budget)"
    ]  # fmt: skip
    main(["report", *common[1:7], "--reports_dir", str(tmp_path / "reports"), "--runs_dir", str(fresh)])
    report = (tmp_path / "reports" / "tiny" / "REPORT.md").read_text()
    ours = 100 * json.loads((fresh / "tiny" / "900" / "a" / "test_results.json").read_text())["acc"]
    assert "> **Partial report**: 1 of 3 runs finished" in report and f"| a | 97.00 | {ours:.2f} |" in report


def test_a_report_whose_runs_all_need_a_gpu_lists_their_commands_without_an_empty_table(tmp_path, in_root):
    plan = load_plan(PLANS.relative_to(ROOT) / "003.yaml", set(METRICS))
    scale = load_scale("cpu", PLANS / "scales")
    report = Report([plan], scale, DataSource("offline", scale, shared_dir=tmp_path), tmp_path, tmp_path)
    text = "\n".join(report.runs_section(plan))
    assert "| run | status |" not in text and "Training time" not in text
    assert "- `lr-0.001`: the multi-kernel CNN" in text and "--model.optimizer.init_args.lr=0.001`" in text


def test_the_random_weights_note_names_the_runs_trained_here_with_their_configs_network(
    tmp_path, in_root, monkeypatch
):
    """Offline, ImageNet weights not in the torch hub cache are replaced by random ones, and the report
    says so of each such run, but not of a run left to a GPU or trained with another network in its place
    (the cpu scale's simple CNN standing in for VGG-16)."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))  # an empty hub cache
    plan = load_plan(PLANS.relative_to(ROOT) / "000.yaml", set(METRICS))
    notes = {}
    for name in ("quick", "cpu"):
        scale = load_scale(name, PLANS / "scales")
        report = Report([plan], scale, DataSource("offline", scale, shared_dir=tmp_path), tmp_path, tmp_path)
        notes[name] = " ".join(report.automatic_notes(plan))
    assert "`vgg16`, `unbalanced`, `augmented`, `irm`, `combined` start from random weights" in notes["quick"]
    assert "random weights" not in notes["cpu"]
