"""Crash and resume: a run killed mid-epoch and resumed with ``--ckpt_path last`` ends exactly as an
uninterrupted one, in the same run directory and TensorBoard run, losing nothing."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from conftest import ROOT
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

# Real data with randomness in every part of the input pipeline: shuffled class-balanced draws, noisy
# copies drawn afresh per read, and two loader processes.
RUN = [
    "fit",
    f"--config={ROOT / 'configs/digits_lstm.yaml'}",
    "--trainer.max_epochs=3",
    "--trainer.deterministic=true",
    "--trainer.enable_progress_bar=false",
    "--trainer.enable_model_summary=false",
    "--checkpoint_every_n_steps=4",
    "--data.num_workers=2",
    "--data.oversample=true",
    "--data.noise_variances=[0.5]",
    "--data.noise_classes=[1,2]",
]
STEPS_PER_EPOCH = 25  # (1293 training digits + 1 noisy copy of each 1 and 2) / 64, rounded up
KILL_AT = 31  # mid-way through the second epoch, 3 steps after the last mid-epoch checkpoint


def fit(cwd: Path, *args: str) -> subprocess.CompletedProcess:
    # The tests' helpers (the crash callback) importable, beside whatever litvision is on the path.
    paths = [str(ROOT / "tests"), os.environ.get("PYTHONPATH", "")]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in paths if p)}
    return subprocess.run(
        [sys.executable, "-m", "litvision", *RUN, *args], cwd=cwd, env=env, capture_output=True, text=True
    )


def weights_digest(checkpoint: Path) -> str:
    state = torch.load(checkpoint, map_location="cpu", weights_only=True)["state_dict"]
    digest = hashlib.sha256()
    for name in sorted(state):
        digest.update(name.encode() + state[name].numpy().tobytes())
    return digest.hexdigest()


def scalars(run_dir: Path) -> dict[str, list[tuple[int, float]]]:
    events = EventAccumulator(str(run_dir), size_guidance={"scalars": 0})
    events.Reload()
    return {tag: [(e.step, e.value) for e in events.Scalars(tag)] for tag in events.Tags()["scalars"]}


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory: pytest.TempPathFactory) -> Path:
    cwd = tmp_path_factory.mktemp("uninterrupted")
    done = fit(cwd)
    assert done.returncode == 0, done.stderr[-2000:]
    return cwd / "lightning_logs/digits_lstm/version_0"


def test_killed_run_resumes_to_the_same_weights_metrics_and_curves(uninterrupted, tmp_path):
    kill_and_resume(tmp_path, uninterrupted)


# Report 001's kind of policy (flips, rotations, shift-scale-rotate), drawn in the loader processes.
POLICY = [
    "--data.augment=true",
    "--data.policy=[{class_path: albumentations.HorizontalFlip}, "
    "{class_path: albumentations.RandomRotate90}, {class_path: albumentations.Affine, "
    "init_args: {translate_percent: 0.1, rotate: [-15, 15], p: 1.0}}]",
]


@pytest.mark.slow
def test_killed_run_with_an_albumentations_policy_resumes_bitwise(tmp_path):
    uninterrupted = tmp_path / "uninterrupted"
    uninterrupted.mkdir()
    done = fit(uninterrupted, *POLICY)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "because AlbumentationsPolicy" in done.stdout + done.stderr, "the policy is in use"
    killed = tmp_path / "killed"
    killed.mkdir()
    kill_and_resume(killed, uninterrupted / "lightning_logs/digits_lstm/version_0", *POLICY)


def kill_and_resume(tmp_path: Path, uninterrupted: Path, *args: str) -> None:
    """Kill a run mid-epoch, resume it, and check that it ends as ``uninterrupted`` did."""
    killed = fit(
        tmp_path,
        *args,
        "--trainer.callbacks+=helpers.crash.KillAtStep",
        f"--trainer.callbacks.step={KILL_AT}",
    )
    assert killed.returncode == -9, killed.stderr[-2000:]
    run = tmp_path / "lightning_logs/digits_lstm/version_0"
    saved = torch.load(run / "checkpoints/last.ckpt", map_location="cpu", weights_only=True)
    assert STEPS_PER_EPOCH < saved["global_step"] < KILL_AT <= 2 * STEPS_PER_EPOCH, "a mid-epoch checkpoint"
    before = {p.name: p.read_bytes() for p in run.iterdir() if p.is_file()}

    resumed = fit(tmp_path, *args, "--ckpt_path=last")
    assert resumed.returncode == 0, resumed.stderr[-2000:]

    assert [p.name for p in (tmp_path / "lightning_logs/digits_lstm").iterdir()] == ["version_0"]
    for name, content in before.items():  # nothing of the interrupted run is lost or overwritten
        if name.startswith(("config", "events")):
            assert (run / name).read_bytes() == content, name
    assert (run / "config.resume-1.yaml").is_file()
    assert weights_digest(run / "checkpoints/last.ckpt") == weights_digest(
        uninterrupted / "checkpoints/last.ckpt"
    )
    ours, theirs = (json.loads((r / "test_results.json").read_text()) for r in (run, uninterrupted))
    assert ours["confusion_matrix"] == theirs["confusion_matrix"] and ours["acc"] == theirs["acc"]
    # One TensorBoard run whose curves are the uninterrupted run's: no step twice, none missing.
    assert scalars(run) == scalars(uninterrupted)
    sessions = json.loads((run / "run_info.json").read_text())["sessions"]
    assert [s["status"] for s in sessions] == ["running", "finished"]  # the killed session never ended
    assert sessions[1]["resumed_from"].endswith("last.ckpt")


def test_same_config_and_seed_are_bitwise_identical(uninterrupted, tmp_path):
    again = fit(tmp_path, "--trainer.max_epochs=1")
    assert again.returncode == 0, again.stderr[-2000:]
    run = tmp_path / "lightning_logs/digits_lstm/version_0"
    first = fit(tmp_path, "--trainer.max_epochs=1", "--data.num_workers=0")  # workers do not matter
    assert first.returncode == 0, first.stderr[-2000:]
    other = tmp_path / "lightning_logs/digits_lstm/version_1"
    assert weights_digest(run / "checkpoints/last.ckpt") == weights_digest(other / "checkpoints/last.ckpt")
    info = json.loads((run / "run_info.json").read_text())
    assert (
        info["split_checksum"] == json.loads((uninterrupted / "run_info.json").read_text())["split_checksum"]
    )
    assert info["seed"] == 42 and info["litvision_version"] and info["num_parameters"] > 0


def test_resume_without_a_previous_run_is_one_line(tmp_path):
    done = fit(tmp_path, "--ckpt_path=last")
    assert done.returncode == 1
    assert (
        done.stderr.strip()
        .splitlines()[-1]
        .endswith(
            "error: --ckpt_path last: no run to resume, 'lightning_logs/digits_lstm' holds no "
            "*/checkpoints/last.ckpt; give a checkpoint file, or start without --ckpt_path"
        )
    )
    assert not (tmp_path / "lightning_logs").exists()
