"""A long-tailed run killed mid-epoch resumes exactly: the loss's class counts and deferred
re-weighting, a progressive sampling schedule and mixup/cutmix draws all continue as uninterrupted."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from conftest import ROOT
from test_resume import weights_digest

RUN = [
    "fit", f"--config={ROOT / 'configs/digits_lstm.yaml'}", "--trainer.max_epochs=3",
    "--trainer.deterministic=true", "--trainer.enable_progress_bar=false",
    "--trainer.enable_model_summary=false", "--checkpoint_every_n_steps=4",
    "--data.imbalance=LongTailImbalance", "--data.imbalance.ratio=10", "--data.sampling=progressive",
    "--data.mixup_alpha=0.4", "--data.cutmix_alpha=1.0", "--model.loss=litvision.objectives.LDAMLoss",
    "--model.loss.s=5", "--model.loss.class_balanced_beta=0.999", "--model.loss.reweight_from_epoch=1",
]  # fmt: skip
STEPS_PER_EPOCH = 10  # 630 long-tailed training digits / 64, rounded up
KILL_AT = (
    15  # mid-way through the second epoch (re-weighted, progressive draws), after the step-12 checkpoint
)


def fit(cwd: Path, *args: str) -> subprocess.CompletedProcess:
    # This checkout's litvision (src) first, then the crash helper (tests).
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), str(ROOT / "tests")])}
    return subprocess.run(
        [sys.executable, "-m", "litvision", *RUN, *args], cwd=cwd, env=env, capture_output=True, text=True
    )


@pytest.mark.slow
def test_long_tailed_run_killed_mid_epoch_resumes_to_the_same_weights(tmp_path):
    whole, broken = tmp_path / "whole", tmp_path / "broken"
    whole.mkdir(), broken.mkdir()
    done = fit(whole)
    assert done.returncode == 0, done.stderr[-2000:]
    killed = fit(
        broken, "--trainer.callbacks+=helpers.crash.KillAtStep", f"--trainer.callbacks.step={KILL_AT}"
    )
    assert killed.returncode == -9, killed.stderr[-2000:]
    run = broken / "lightning_logs/digits_lstm/version_0"
    saved = torch.load(run / "checkpoints/last.ckpt", map_location="cpu", weights_only=True)
    assert STEPS_PER_EPOCH < saved["global_step"] < KILL_AT <= 2 * STEPS_PER_EPOCH, "a mid-epoch checkpoint"
    resumed = fit(broken, "--ckpt_path=last")
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    reference = whole / "lightning_logs/digits_lstm/version_0/checkpoints/last.ckpt"
    assert weights_digest(run / "checkpoints/last.ckpt") == weights_digest(reference)
