"""litvision search: workers sharing a study, a study killed and resumed, the best trial's config
retrained, pruning; on the digits with a tiny LSTM and one to four epochs."""

from __future__ import annotations

import itertools
import json
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import optuna
import pytest
import yaml
from conftest import ROOT, run_litvision
from optuna.trial import TrialState

from litvision.search.cli import parse, settings
from litvision.search.space import SearchSpace, load_space
from litvision.search.study import Search, make_sampler
from litvision.utils import read_scalars

TINY = [
    "search",
    f"--config={ROOT / 'configs/digits_lstm.yaml'}",
    f"--space={ROOT / 'configs/search/digits.yaml'}",
    "--model.backbone.init_args.hidden_size=16",
    "--data.batch_size=128",
    "--trainer.deterministic=true",
    "--test_trials=none",
]
STUDY = Path("lightning_logs/search/digits_lstm-digits")
KILLED = [*TINY, "--trials=2", "--trainer.max_epochs=3", "--checkpoint_every_n_steps=4"]


def study_of(folder: Path, name: str = "digits_lstm-digits") -> optuna.Study:
    return optuna.load_study(study_name=name, storage=f"sqlite:///{folder / 'study.db'}")


def search(cwd: Path, *args: str) -> subprocess.CompletedProcess:
    done = run_litvision([*TINY, *args], cwd)
    assert done.returncode == 0, done.stderr[-3000:]
    return done


def draw(search_: Search, space: SearchSpace, trials: int) -> dict[int, dict]:
    """The values a worker's sampler draws for trials 0, 1, ... (random and grid draws need no training)."""
    study = optuna.create_study(sampler=make_sampler(search_, space))
    drawn = {}
    for _ in range(trials):
        trial = study.ask()
        drawn[trial.number] = space.suggest(trial)
        study.tell(trial, 0.0)
    return drawn


def test_a_grid_search_tries_each_point_once():
    space = load_space(ROOT / "configs/search/digits.yaml")
    drawn = draw(Search("grid", Path(), "", space.path, 9, sampler="grid", grid_points=3), space, 9)
    points = {tuple(values.values()) for values in drawn.values()}
    assert points == set(itertools.product(*space.grid(3).values()))


def test_a_study_without_a_config_is_named_after_its_data_and_network_as_fit_names_a_run(tmp_path):
    """``litvision search --data.data_dir photos --space S.yaml`` on one's own images: the study (and its
    folder) is photos-CifarResNet-S, not a name shared by every config-less search."""
    folder = tmp_path / "photos"
    args = ["--data=litvision.data.ImageFolderDataModule", f"--data.data_dir={folder}"]
    search_, _, _ = settings(parse([*args, f"--space={ROOT / 'configs/search/digits.yaml'}"]))
    assert search_.name == "photos-CifarResNet-digits"
    assert search_.folder == (Path("lightning_logs/search") / search_.name).resolve()


@pytest.mark.parametrize("space", sorted((ROOT / "configs/search").glob("*.yaml")), ids=lambda p: p.stem)
def test_each_search_space_holds_keys_and_choices_its_config_takes(space):
    """The command in the space's header, checked as the search checks it before a study: every key and
    every choice parsed with the config."""
    (config,) = re.findall(r"--config (\S+)", space.read_text())
    _, loaded, _ = settings(parse([f"--config={ROOT / config}", f"--space={space}"]))
    checked = loaded.examples()
    for param, _ in loaded.every_param():
        for choice in getattr(param.distribution, "choices", ()):
            assert any(values.get(param.key) == choice for values in checked), (param.key, choice)


@pytest.mark.parametrize("launcher", ["local", "submitit-local"])
def test_two_workers_run_each_trial_once_and_the_trials_one_worker_runs(tmp_path, launcher):
    """Per-trial seeding: two workers with the same seeded sampler repeat neither each other's values nor
    trial numbers, and a random trial's values depend on its number only, as one worker draws them.
    The workers are local processes, or array tasks of submitit's launcher (SLURM's, run locally)."""
    search(tmp_path, "--trials=4", "--trainer.max_epochs=1", "--sampler=random", "--pruner=none",
           "--workers=2", f"--launcher={launcher}")  # fmt: skip
    trials = study_of(tmp_path / STUDY).trials
    assert [(t.number, t.state) for t in trials] == [(n, TrialState.COMPLETE) for n in range(4)]
    assert len({tuple(sorted(t.params.items())) for t in trials}) == 4, "no two trials try the same values"
    assert len({t.system_attrs["litvision:worker"]["pid"] for t in trials}) == 2, "both workers ran trials"
    # What one worker draws: its sampler asked in turn (a random draw needs no training to be known).
    space = load_space(ROOT / "configs/search/digits.yaml")
    one = optuna.create_study(
        sampler=make_sampler(Search("one", tmp_path, "", space.path, 4, sampler="random"), space)
    )
    drawn = {}
    for _ in range(4):
        trial = one.ask()
        drawn[trial.number] = space.suggest(trial)
        one.tell(trial, 0.0)
    assert {t.number: t.params for t in trials} == drawn


@pytest.fixture(scope="module")
def killed_and_resumed(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    """A 2-trial study killed (SIGKILL) while its second trial trains, then the same command again."""
    cwd = tmp_path_factory.mktemp("killed")
    args = [*KILLED, "--pruner=none"]
    process = subprocess.Popen(
        [sys.executable, "-m", "litvision", *args], cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    last = cwd / STUDY / "trial_001/checkpoints/last.ckpt"
    deadline = time.time() + 300
    while not last.is_file() and process.poll() is None and time.time() < deadline:
        time.sleep(0.05)
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert last.is_file(), process.stderr.read().decode()[-3000:]
    at_kill = {t.number: t.state for t in study_of(cwd / STUDY).trials}
    done = run_litvision(args, cwd)
    assert done.returncode == 0, done.stderr[-3000:]
    return cwd, at_kill


def test_a_study_killed_while_a_trial_trains_resumes_to_n_finished_trials(killed_and_resumed):
    cwd, at_kill = killed_and_resumed
    assert at_kill == {0: TrialState.COMPLETE, 1: TrialState.RUNNING}
    trials = study_of(cwd / STUDY).trials
    assert [(t.number, t.state) for t in trials] == [(0, TrialState.COMPLETE), (1, TrialState.COMPLETE)]
    assert [len(t.intermediate_values) for t in trials] == [3, 3]
    info = json.loads((cwd / STUDY / "trial_001/run_info.json").read_text())
    assert [s["status"] for s in info["sessions"]] == ["killed", "finished"]
    assert info["sessions"][1]["resumed_from"].endswith("trial_001/checkpoints/last.ckpt")


def test_a_trial_killed_before_its_first_checkpoint_is_taken_over_afresh(tmp_path):
    """Killed once its run directory holds config.yaml but no last.ckpt (small batches: a long first
    epoch), the trial is trained again from the start in that directory by the same command."""
    args = [*TINY, "--trials=1", "--trainer.max_epochs=2", "--data.batch_size=4", "--pruner=none"]
    command = [sys.executable, "-m", "litvision", *args]
    process = subprocess.Popen(command, cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    run = tmp_path / STUDY / "trial_000"
    deadline = time.time() + 300
    while not (run / "config.yaml").is_file() and process.poll() is None and time.time() < deadline:
        time.sleep(0.01)
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert (run / "config.yaml").is_file(), process.stderr.read().decode()[-3000:]
    assert not (run / "checkpoints/last.ckpt").is_file(), "killed before the first checkpoint"
    search(tmp_path, *args[len(TINY) :])
    (trial,) = study_of(tmp_path / STUDY).trials
    assert (trial.state, sorted(trial.intermediate_values)) == (TrialState.COMPLETE, [0, 1])
    assert json.loads((run / "trial.json").read_text())["state"] == "complete"


def test_the_best_trials_config_retrains_to_the_same_validation_accuracy(killed_and_resumed):
    cwd, _ = killed_and_resumed
    study = study_of(cwd / STUDY)
    done = run_litvision(
        ["fit", f"--config={cwd / STUDY / 'best.yaml'}", "--trainer.enable_progress_bar=false"], cwd
    )
    assert done.returncode == 0, done.stderr[-3000:]
    (run,) = (cwd / "lightning_logs/digits_lstm-digits_best").iterdir()
    accuracy = [event.value for event in read_scalars(run, ["val/acc"])["val/acc"]]
    # Bit for bit at every epoch, as TensorBoard stores them (float32).
    assert accuracy == [float(np.float32(v)) for v in study.best_trial.intermediate_values.values()]


def test_pruning_marks_the_trial_pruned_in_the_study_and_its_run(tmp_path):
    lr, decay = "model.optimizer.init_args.lr", "model.optimizer.init_args.weight_decay"
    search(
        tmp_path,
        "--trials=2",
        "--trainer.max_epochs=3",
        # a rate that learns, then one that cannot
        f"--enqueue=[{{{lr}: 0.02, {decay}: 1.0e-6}}, {{{lr}: 1.0e-7, {decay}: 1.0e-6}}]",
        "--pruner=median",
        "--pruner_args={n_startup_trials: 1}",
    )
    good, hopeless = study_of(tmp_path / STUDY).trials
    assert (good.state, hopeless.state) == (TrialState.COMPLETE, TrialState.PRUNED)
    assert list(hopeless.intermediate_values) == [0]
    run = tmp_path / STUDY / "trial_001"
    assert json.loads((run / "trial.json").read_text())["state"] == "pruned"
    info = json.loads((run / "run_info.json").read_text())
    assert info["sessions"][-1]["status"] == "pruned after epoch 0" and info["epochs"] == 1
    rows = (tmp_path / STUDY / "trials.csv").read_text().splitlines()
    assert rows[2].startswith("1,pruned,")


def test_bad_input_against_an_existing_study_changes_nothing_of_it(killed_and_resumed, tmp_path):
    cwd, _ = killed_and_resumed
    files = {p: p.read_bytes() for p in (cwd / STUDY).rglob("*") if p.is_file()}
    empty = tmp_path / "empty.yaml"
    empty.write_text(
        yaml.safe_dump({"model.optimizer.init_args.lr": {"type": "float", "low": 1, "high": 0.1}})
    )
    cases = {
        "--metric=val/loss": "searches with metric 'val/acc', not 'val/loss'",
        "--trainer.max_epochs=5": "trains with trainer.max_epochs=3, not 5",
        f"--space={empty}": "the range [1, 0.1] is empty",
    }
    for arg, message in cases.items():
        args = [*KILLED, "--pruner=none", arg]
        done = run_litvision(args, cwd)
        assert done.returncode == 1 and message in done.stderr.splitlines()[-1], done.stderr[-2000:]
    assert {p: p.read_bytes() for p in (cwd / STUDY).rglob("*") if p.is_file()} == files
