"""Crash and resume: a run killed mid-epoch and resumed with ``--ckpt_path last`` ends exactly as an
uninterrupted one, in the same run directory and TensorBoard run, losing nothing.

Both data paths, with randomness in every part of the pipeline: an image folder on disk read by two
persistent loader processes (``in_memory: false``: per-sample seeds, the loader's skip of the consumed
batches in the workers) and the same images held in memory (per-batch draws on the device); random crop
and flip, class-balanced draws with replacement, noisy copies drawn afresh per read, and a network with
dropout (whose noise comes from torch's global generator, restored by ``RandomState``).
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from conftest import ROOT
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from test_data import write_images

from litvision.callbacks import RandomState

BATCH_SIZE = 8
STEPS_PER_EPOCH = 7  # (3 * 18 images - 12 held out + 14 noisy copies of class "b") / 8
CHECKPOINT_EVERY = 5
KILL_AT = 12  # in the second epoch (steps 8-14), 2 steps after the mid-epoch checkpoint at step 10


def write_run(cwd: Path, in_memory: bool) -> Path:
    """Tiny 16x16 images of 3 classes, and the config of a tiny CNN with dropout trained on them."""
    write_images(cwd / "images/train", {"a": 18, "b": 18, "c": 18}, (16, 16))
    write_images(cwd / "images/test", {"a": 3, "b": 3, "c": 3}, (16, 16))
    config = {
        "seed_everything": 42,
        "trainer": {
            "max_epochs": 2,
            "log_every_n_steps": 2,
            "deterministic": True,
            "enable_progress_bar": False,
            "enable_model_summary": False,
        },
        "checkpoint_every_n_steps": CHECKPOINT_EVERY,
        "model": {
            "backbone": {
                "class_path": "litvision.models.MultiKernelCNN",
                "init_args": {"channels": [4, 4, 4, 4, 4, 4], "hidden": 8, "dropout": 0.5},
            },
            "optimizer": {"class_path": "torch.optim.Adam", "init_args": {"lr": 0.01}},
        },
        "data": {
            "class_path": "litvision.data.ImageFolderDataModule",
            "init_args": {
                "data_dir": "images",
                "batch_size": BATCH_SIZE,
                "val_size": 12,
                "num_workers": 2,
                "augment": True,  # random crop with padding 2, horizontal flip
                "in_memory": in_memory,
                "oversample": True,
                "noise_variances": [0.5],
                "noise_classes": [1],
            },
        },
    }
    path = cwd / "tiny.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def fit(cwd: Path, *args: str, sigint: signal.Handlers = signal.SIG_DFL) -> subprocess.CompletedProcess:
    """``litvision fit`` in a fresh process whose SIGINT starts as ``sigint``: by default as a terminal's
    foreground job has it (Ctrl-C stops the run), whatever the suite inherited; ``SIG_IGN`` as a shell
    without job control starts a background job (``cmd &`` in a script), where Python ignores it."""
    # This checkout's litvision and the tests' helpers (the crash callback) before the rest of the path.
    paths = [str(ROOT / "src"), str(ROOT / "tests"), os.environ.get("PYTHONPATH", "")]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in paths if p)}
    return subprocess.run(
        [sys.executable, "-m", "litvision", "fit", "--config=tiny.yaml", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        preexec_fn=lambda: signal.signal(signal.SIGINT, sigint),
    )


def weights(checkpoint: Path) -> dict[str, torch.Tensor]:
    return torch.load(checkpoint, map_location="cpu", weights_only=True)["state_dict"]


def weights_digest(checkpoint: Path) -> str:
    state = weights(checkpoint)
    digest = hashlib.sha256()
    for name in sorted(state):
        digest.update(name.encode() + state[name].numpy().tobytes())
    return digest.hexdigest()


def scalars(run_dir: Path) -> dict[str, list[tuple[int, float]]]:
    events = EventAccumulator(str(run_dir), size_guidance={"scalars": 0})
    events.Reload()
    return {tag: [(e.step, e.value) for e in events.Scalars(tag)] for tag in events.Tags()["scalars"]}


@pytest.fixture(scope="module", params=[False, True], ids=["files_2_workers", "in_memory"])
def uninterrupted(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Path:
    cwd = tmp_path_factory.mktemp("uninterrupted")
    write_run(cwd, request.param)
    done = fit(cwd)
    assert done.returncode == 0, done.stderr[-3000:]
    return cwd / "lightning_logs/tiny/version_0"


def in_memory_of(run: Path) -> bool:
    return yaml.safe_load((run / "config.yaml").read_text())["data"]["init_args"]["in_memory"]


def test_killed_run_resumes_to_the_same_weights_metrics_and_curves(uninterrupted, tmp_path):
    write_run(tmp_path, in_memory_of(uninterrupted))
    kill_and_resume(tmp_path, uninterrupted)


# Report 001's kind of albumentations policy (flips, rotations, shift-scale-rotate), drawn in the loader
# processes from each sample's seed.
POLICY = [
    "--data.policy=[{class_path: albumentations.HorizontalFlip}, "
    "{class_path: albumentations.RandomRotate90}, {class_path: albumentations.Affine, "
    "init_args: {translate_percent: 0.1, rotate: [-15, 15], p: 1.0}}]",
]


@pytest.mark.slow
def test_killed_run_with_an_albumentations_policy_resumes_bitwise(tmp_path):
    uninterrupted = tmp_path / "uninterrupted"
    uninterrupted.mkdir()
    write_run(uninterrupted, in_memory=False)
    done = fit(uninterrupted, *POLICY)
    assert done.returncode == 0, done.stderr[-3000:]
    run = uninterrupted / "lightning_logs/tiny/version_0"
    assert yaml.safe_load((run / "config.yaml").read_text())["data"]["init_args"]["policy"], "policy in use"
    killed = tmp_path / "killed"
    killed.mkdir()
    write_run(killed, in_memory=False)
    kill_and_resume(killed, run, *POLICY)


def kill_and_resume(tmp_path: Path, uninterrupted: Path, *args: str) -> None:
    """Kill a run of ``tmp_path``'s config mid-epoch, resume it, and check it ends as ``uninterrupted``."""
    killed = fit(
        tmp_path,
        *args,
        "--trainer.callbacks+=helpers.crash.KillAtStep",
        f"--trainer.callbacks.step={KILL_AT}",
    )
    assert killed.returncode == -9, killed.stderr[-3000:]
    run = tmp_path / "lightning_logs/tiny/version_0"
    saved = torch.load(run / "checkpoints/last.ckpt", map_location="cpu", weights_only=True)
    # Resumed from a checkpoint mid-way through the second epoch: the loader must skip 2 batches.
    assert saved["global_step"] == 2 * CHECKPOINT_EVERY and STEPS_PER_EPOCH < saved["global_step"] < KILL_AT
    before = {p.name: p.read_bytes() for p in run.iterdir() if p.is_file()}

    resumed = fit(tmp_path, *args, "--ckpt_path=last")
    assert resumed.returncode == 0, resumed.stderr[-3000:]

    assert [p.name for p in (tmp_path / "lightning_logs/tiny").iterdir()] == ["version_0"]
    for name, content in before.items():  # nothing of the interrupted run is lost or overwritten
        if name.startswith(("config", "events")):
            assert (run / name).read_bytes() == content, name
    assert (run / "config.resume-1.yaml").is_file()
    ours, theirs = weights(run / "checkpoints/last.ckpt"), weights(uninterrupted / "checkpoints/last.ckpt")
    different = [name for name in ours if not torch.equal(ours[name], theirs[name])]
    assert not different, f"{len(different)} of {len(ours)} tensors differ from the uninterrupted run's"
    results = [json.loads((r / "test_results.json").read_text()) for r in (run, uninterrupted)]
    assert results[0]["confusion_matrix"] == results[1]["confusion_matrix"]
    # One TensorBoard run whose curves are the uninterrupted run's: no step twice, none missing.
    assert scalars(run) == scalars(uninterrupted)
    info = json.loads((run / "run_info.json").read_text())
    sessions = info["sessions"]
    assert [s["status"] for s in sessions] == ["killed", "finished"]  # the killed session never ended
    assert sessions[1]["resumed_from"].endswith("last.ckpt")
    # Its time up to the checkpoint the resume started from counts in the run's.
    assert sessions[0]["wall_time_s"] > 0 and sessions[0]["finished_at"] is None
    assert info["wall_time_s"] == pytest.approx(sessions[0]["wall_time_s"] + sessions[1]["wall_time_s"])


@pytest.mark.parametrize("sig", ["SIGTERM", "SIGINT"])
def test_a_run_stopped_by_a_signal_is_marked_interrupted_not_failed(tmp_path, sig):
    """A run stopped on purpose (Ctrl-C; SIGTERM, as a scheduler or ``litvision reproduce`` stops one)
    records its session in ``run_info.json`` as interrupted, not as a failure, and resumes.

    Ctrl-C reaches a foreground job with SIGINT at its default; SIGTERM is the way to stop a run started
    in the background of a script (``nohup litvision fit ... &``), which ignores SIGINT, so it is sent to a
    run started so. Both whatever the suite inherited: run in the background itself, the suite passed
    SIGINT ignored to the run, which then trained to its end (exit 0) as such a job does."""
    write_run(tmp_path, in_memory=True)
    stop = ["--trainer.callbacks+=helpers.crash.SignalAtStep", f"--trainer.callbacks.step={KILL_AT}"]
    sigint = signal.SIG_IGN if sig == "SIGTERM" else signal.SIG_DFL
    stopped = fit(tmp_path, *stop, f"--trainer.callbacks.signal={sig}", sigint=sigint)
    assert stopped.returncode == {"SIGTERM": 143, "SIGINT": 1}[sig]  # a script sees it did not finish
    run = tmp_path / "lightning_logs/tiny/version_0"
    assert not (run / "test_results.json").exists()  # stopped before its end
    info_file = run / "run_info.json"
    assert [s["status"] for s in json.loads(info_file.read_text())["sessions"]] == ["interrupted"]
    assert fit(tmp_path, "--ckpt_path=last").returncode == 0
    assert [s["status"] for s in json.loads(info_file.read_text())["sessions"]] == ["interrupted", "finished"]


def test_same_seed_is_bitwise_identical_and_loader_workers_do_not_matter(uninterrupted, tmp_path):
    """Read by the main process alone (no loader workers), the images get the same augmentation and the
    run the same weights. (On the in-memory path there are no loader workers: the rerun checks that the
    run is reproducible.)"""
    write_run(tmp_path, in_memory_of(uninterrupted))
    again = fit(tmp_path, "--data.num_workers=0")
    assert again.returncode == 0, again.stderr[-3000:]
    run = tmp_path / "lightning_logs/tiny/version_0"
    assert weights_digest(run / "checkpoints/last.ckpt") == weights_digest(
        uninterrupted / "checkpoints/last.ckpt"
    )
    info, theirs = (json.loads((r / "run_info.json").read_text()) for r in (run, uninterrupted))
    assert info["split_checksum"] == theirs["split_checksum"] and info["seed"] == 42
    assert info["litvision_version"] and info["num_parameters"] > 0


@pytest.mark.slow
def test_a_compiled_run_resumes_bitwise_and_repeats_with_its_seed(tmp_path):
    """The training step compiled as on a GPU (``reduce-overhead``: there, also captured in CUDA graphs;
    here torch.compile's CPU backend, the last batch of each epoch a graph of its own): a second run with
    the same seed ends with the same weights, and a run killed mid-epoch resumes to them, with the same
    metrics and curves; its checkpoints hold the eager network's keys."""
    compiled = "--model.compile=reduce-overhead"
    first, second, killed = tmp_path / "first", tmp_path / "second", tmp_path / "killed"
    for cwd in (first, second, killed):
        cwd.mkdir()
        write_run(cwd, in_memory=True)
    for cwd in (first, second):
        done = fit(cwd, compiled)
        assert done.returncode == 0, done.stderr[-3000:]
    runs = [cwd / "lightning_logs/tiny/version_0" for cwd in (first, second)]
    last = [run / "checkpoints/last.ckpt" for run in runs]
    assert weights_digest(last[0]) == weights_digest(last[1])
    assert json.loads((runs[0] / "run_info.json").read_text())["compile"] == "reduce-overhead"
    assert not any("_orig_mod" in key for key in weights(last[0]))
    kill_and_resume(killed, runs[0], compiled)


def test_resume_without_a_previous_run_is_one_line(tmp_path):
    write_run(tmp_path, in_memory=True)
    done = fit(tmp_path, "--ckpt_path=last")
    assert done.returncode == 1
    assert (
        done.stderr.strip()
        .splitlines()[-1]
        .endswith(
            "error: --ckpt_path last: no run to resume, 'lightning_logs/tiny' holds no "
            "*/checkpoints/last.ckpt; give a checkpoint file, or start without --ckpt_path"
        )
    )
    assert not (tmp_path / "lightning_logs").exists()


def test_random_state_restores_every_global_generator_exactly():
    """What dropout, Python's and NumPy's random draws give after a resume is what they would have given
    without the interruption, cached Gaussians included (random.gauss and NumPy draw normals in pairs)."""
    callback = RandomState()
    random.gauss(0, 1), np.random.normal(), torch.rand(1)  # leave a cached second normal in each
    saved = callback.state_dict()
    expected = [random.gauss(0, 1), random.random(), np.random.normal(), np.random.rand(), torch.rand(3)]
    random.seed(1), np.random.seed(1), torch.manual_seed(1)  # a new process: seeded afresh
    callback.load_state_dict(saved)
    callback.on_train_batch_start(None, None, None, 0)  # type: ignore[arg-type]
    drawn = [random.gauss(0, 1), random.random(), np.random.normal(), np.random.rand(), torch.rand(3)]
    assert drawn[:4] == expected[:4] and torch.equal(drawn[4], expected[4])
