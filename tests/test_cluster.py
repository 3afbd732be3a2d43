"""Beyond one machine: checkpoints that survive a kill in the middle of their write, one run over two
"nodes" (two torchrun launches on this machine), and sweeps through submitit."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import ROOT
from test_resume import weights_digest

from litvision.checkpoint_io import PARTIAL_SUFFIX
from litvision.runs import load_checkpoint

# A small LSTM on scikit-learn's digits: 11 steps an epoch, last.ckpt every 4 steps and at epoch ends.
TINY = [
    f"--config={ROOT / 'configs/digits_lstm.yaml'}",
    "--model.backbone.init_args.hidden_size=16",
    "--data.batch_size=128",
    "--trainer.max_epochs=2",
    "--trainer.deterministic=true",
    "--trainer.enable_progress_bar=false",
    "--trainer.enable_model_summary=false",
    "--checkpoint_every_n_steps=4",
]
RUN_DIR = Path("lightning_logs/digits_lstm/version_0")


def child_env(**extra: str) -> dict[str, str]:
    """The environment of a litvision subprocess: this source tree first, the tests' helpers importable."""
    return {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), str(ROOT / "tests")]), **extra}


def litvision(cwd: Path, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "litvision", *args],
        cwd=cwd,
        env=env or child_env(),
        capture_output=True,
        text=True,
        timeout=600,
    )


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory: pytest.TempPathFactory) -> Path:
    cwd = tmp_path_factory.mktemp("uninterrupted")
    done = litvision(cwd, "fit", *TINY)
    assert done.returncode == 0, done.stderr[-3000:]
    return cwd / RUN_DIR


@pytest.fixture
def temp_elsewhere(tmp_path: Path) -> Iterator[Path]:
    """A temp folder on another filesystem than ``tmp_path`` where the machine has one (/dev/shm, a
    tmpfs): there a move into the run directory is a copy, the case that truncates Lightning's saves."""
    shm = Path("/dev/shm")
    other = shm.is_dir() and os.access(shm, os.W_OK) and shm.stat().st_dev != tmp_path.stat().st_dev
    folder = Path(tempfile.mkdtemp(dir=shm if other else tmp_path))
    yield folder
    shutil.rmtree(folder, ignore_errors=True)


def test_run_killed_while_writing_last_ckpt_resumes_from_the_previous_one(
    uninterrupted, tmp_path, temp_elsewhere
):
    env = child_env(TMPDIR=str(temp_elsewhere))
    killed = litvision(
        tmp_path, "fit", *TINY, "--trainer.callbacks+=helpers.preempt.KillWhileWritingLast",
        "--trainer.callbacks.step=16", env=env,
    )  # fmt: skip
    assert killed.returncode == -9, killed.stderr[-3000:]
    checkpoints = tmp_path / RUN_DIR / "checkpoints"
    partial = checkpoints / ("last.ckpt" + PARTIAL_SUFFIX)
    assert 0 < partial.stat().st_size < (checkpoints / "last.ckpt").stat().st_size, "killed inside the write"
    assert load_checkpoint(checkpoints / "last.ckpt")["global_step"] == 12, "the previous checkpoint, whole"

    resumed = litvision(tmp_path, "fit", *TINY, "--ckpt_path=last", env=env)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert weights_digest(checkpoints / "last.ckpt") == weights_digest(
        uninterrupted / "checkpoints/last.ckpt"
    )
    assert not partial.exists(), "the next save of last.ckpt replaces the cut one"
