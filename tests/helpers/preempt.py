"""Kill a run inside the write of its ``last.ckpt``, as a scheduler's SIGKILL may: for the cluster tests."""

from __future__ import annotations

import builtins
import os
import shutil
import signal
import time
from pathlib import Path
from typing import Any

from lightning.pytorch import Callback, LightningModule, Trainer

_open = builtins.open


class KillWhileWritingLast(Callback):
    """SIGKILL this process half-way through the first write into a file named ``last.ckpt*`` (the
    checkpoint itself or a temporary file beside it) once training has reached ``step``: part of the
    checkpoint's bytes are on disk, the rest never will be."""

    def __init__(self, step: int) -> None:
        self.step = step
        # Copies then go through Python's file writes instead of sendfile(2), so a checkpoint copied
        # into place from another filesystem (Lightning's own save) is cut the same way.
        shutil._USE_CP_SENDFILE = False  # type: ignore[attr-defined]

    def on_save_checkpoint(self, trainer: Trainer, pl_module: LightningModule, checkpoint: dict) -> None:
        if trainer.global_step >= self.step:
            builtins.open = _open_cutting_last


def _open_cutting_last(file: Any, mode: str = "r", *args: Any, **kwargs: Any) -> Any:
    handle = _open(file, mode, *args, **kwargs)
    if "w" in mode and Path(str(file)).name.startswith("last.ckpt"):
        return _HalfThenKill(handle)
    return handle


class _HalfThenKill:
    """A file whose first non-empty write reaches the disk half done, then the process dies."""

    def __init__(self, handle: Any) -> None:
        self._handle = handle

    def write(self, data: Any) -> int:
        view = memoryview(data).cast("B")
        if len(view) == 0:
            return 0
        self._handle.write(view[: max(1, len(view) // 2)])
        self._handle.flush()
        os.fsync(self._handle.fileno())
        os.kill(os.getpid(), signal.SIGKILL)
        raise AssertionError("unreachable")

    def __getattr__(self, name: str) -> Any:
        return getattr(self._handle, name)

    def __enter__(self) -> _HalfThenKill:
        return self

    def __exit__(self, *exc: object) -> None:
        self._handle.close()


class StallUntilResumed(Callback):
    """Stall (sleep an hour) at ``step`` of a run that was not resumed from a checkpoint: a first attempt
    that cannot finish before its time limit, then a resumed one that runs through."""

    def __init__(self, step: int) -> None:
        self.step = step

    def on_train_batch_end(self, trainer: Trainer, pl_module: LightningModule, *args: object) -> None:
        if trainer.ckpt_path is None and trainer.global_step >= self.step:
            time.sleep(3600)
