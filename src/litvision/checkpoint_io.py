"""Checkpoints that a kill at any instant leaves whole: the previous file or the new one, never half of one.

On a cluster a job is killed whenever the scheduler says so (time limit, preemption), also while it
writes ``last.ckpt``; the requeued job then resumes from whatever file is there.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch
from fsspec.core import url_to_fs
from fsspec.implementations.local import LocalFileSystem
from lightning.pytorch.plugins.io import CheckpointIO, TorchCheckpointIO

from litvision.private_api import strategy_checkpoint_io

PARTIAL_SUFFIX = ".partial"


class AtomicCheckpointIO(TorchCheckpointIO):
    """Lightning's :class:`TorchCheckpointIO`, except that a checkpoint on a local or mounted filesystem
    is written to ``<path>.partial`` beside its final path, flushed to disk, then renamed into place.

    Lightning 2.6 writes a local checkpoint through an fsspec transaction: the bytes go to a file that
    ``tempfile.mkstemp()`` makes in the system's temp folder, and ``shutil.move`` puts it in place. Where
    that folder is on another filesystem than the run directory (a tmpfs ``/tmp``, a node's local disk
    under a shared scratch), the move is a copy into the final path, and a kill during the copy leaves a
    truncated checkpoint that the run cannot resume from. A rename within one directory is atomic on
    POSIX filesystems (NFS and Lustre included). Object stores (``s3://``, ...) keep Lightning's upload,
    which is atomic there.
    """

    def save_checkpoint(
        self, checkpoint: dict[str, Any], path: str | Path, storage_options: Any | None = None
    ) -> None:
        fs, local_path = url_to_fs(str(path))
        if storage_options is not None or not isinstance(fs, LocalFileSystem):
            super().save_checkpoint(checkpoint, path, storage_options=storage_options)
            return
        final = Path(local_path)
        final.parent.mkdir(parents=True, exist_ok=True)
        # One fixed name per checkpoint: a write cut short is overwritten by the next, not left to pile up.
        partial = final.with_name(final.name + PARTIAL_SUFFIX)
        with open(partial, "wb") as f:
            torch.save(checkpoint, f)
            f.flush()
            os.fsync(f.fileno())  # the bytes on disk before the name points at them (a node may lose power)
        os.replace(partial, final)
        _fsync_directory(final.parent)


def _fsync_directory(directory: Path) -> None:
    """Make a rename in ``directory`` durable; some filesystems cannot sync a directory, which is fine."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def with_atomic_checkpoints(plugins: Any, strategy: Any = None) -> list[Any]:
    """The trainer's ``plugins`` plus :class:`AtomicCheckpointIO`, unless a checkpoint I/O is chosen
    already (in ``plugins`` or by a strategy object), which is then left as it is."""
    given = [] if plugins is None else list(plugins) if isinstance(plugins, (list, tuple)) else [plugins]
    if any(isinstance(p, CheckpointIO) for p in given) or strategy_checkpoint_io(strategy) is not None:
        return given
    return [*given, AtomicCheckpointIO()]
