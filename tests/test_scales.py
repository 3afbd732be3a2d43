"""The scale files (configs/experiments/scales/*.yaml): each loads, names only runs of the reports it covers,
and the gpu scale trains every row of its reports at the reports' own recipes."""

from __future__ import annotations

import fnmatch

import pytest
from conftest import ROOT

from litvision.reproduce.cli import main
from litvision.reproduce.plan import available_plans, load_plan, load_scale
from litvision.reproduce.report import METRICS

PLANS = ROOT / "configs" / "experiments"
SCALES = sorted((PLANS / "scales").glob("*.yaml"))


@pytest.fixture
def in_root(monkeypatch):
    monkeypatch.chdir(ROOT)


@pytest.mark.parametrize("path", SCALES, ids=lambda p: p.stem)
def test_every_scale_names_only_runs_of_the_reports_it_covers(path, in_root):
    """A misspelt pattern (``cifar10_lt/ldam-drw``) would silently change nothing: every pattern of a
    scale matches a run (or, for needs_gpu, an analysis that trains its own networks) of its reports."""
    scale = load_scale(path.stem, path.parent)
    plans = {plan_id: load_plan(p, set(METRICS)) for plan_id, p in available_plans(PLANS).items()}
    covered = scale.reports if scale.reports is not None else list(plans)  # a report named runs it too
    rows = {run.id for plan_id in covered for run in plans[plan_id].unique_runs()}
    rows |= {f"{plan_id}/{a.key}" for plan_id in covered for a in plans[plan_id].analyses if not a.runs}
    for field in ("runs", "reduced", "needs_gpu", "seeds", "queue"):
        for pattern in getattr(scale, field):
            assert fnmatch.filter(rows, pattern), f"{path.name}, {field}: {pattern!r} matches no run"
    assert set(scale.notes) <= set(covered), f"{path.name}: notes on reports it does not cover"


def test_the_gpu_scale_trains_every_row_at_its_recipe_from_random_weights_where_none_are_offline(
    tmp_path, in_root, capsys, monkeypatch
):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))  # an empty hub cache, as on the device
    main(["run", "cifar10_lt", "004", "003", "000", "001", "--scale", "gpu", "--data_source", "offline",
          "--shared_data", str(tmp_path), "--data_root", str(tmp_path / "data"), "--dry_run"])  # fmt: skip
    printed = capsys.readouterr().out.splitlines()
    runs = [line for line in printed if line.startswith("# ")]
    assert runs and all(line.endswith("(to run)") for line in runs), "none is left to another machine"
    commands = [line for line in printed if line.startswith("litvision fit")]
    assert len(commands) == len(runs) and not any("max_epochs" in c or "limit_" in c for c in commands)
    # CIFAR-10-LT: ten methods, three seeds of the four whose ordering the papers state.
    assert sum(line.startswith("# cifar10_lt/") for line in runs) == 10 + 4 * 2
    assert "# cifar10_lt/ldam_drw-seed2 (to run)" in runs
    vgg16 = commands[runs.index("# 000/vgg16 (to run)")]
    assert "--model.backbone.init_args.pretrained=false" in vgg16
    scale = load_scale("gpu", PLANS / "scales")
    plan = load_plan(PLANS / "000.yaml", set(METRICS))
    assert scale.budget(plan.runs["vgg16"]).startswith("substitution: random initialisation")
    assert scale.budget(plan.runs["cnn"]) == "published recipe"
