"""A callback that records what a real run trained on, for tests that check the sampling from outside."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from lightning.pytorch import Callback, LightningModule, Trainer


def image_digest(image: Any) -> str:
    """A short digest of one input tensor's bytes: which image (with its augmentation) was drawn."""
    return hashlib.sha1(image.detach().cpu().contiguous().numpy().tobytes()).hexdigest()[:16]


class RecordTrainingImages(Callback):
    """Writes ``<prefix>-rank<N>.json``: per epoch, the digests of the training images this rank
    received, in order."""

    def __init__(self, prefix: str = "trained") -> None:
        self.prefix = prefix
        self.epochs: dict[int, list[str]] = {}

    def on_train_batch_start(
        self, trainer: Trainer, pl_module: LightningModule, batch: Any, batch_idx: int
    ) -> None:
        self.epochs.setdefault(trainer.current_epoch, []).extend(image_digest(x) for x in batch[0])

    def on_train_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        path = Path(f"{self.prefix}-rank{trainer.global_rank}.json")
        path.write_text(json.dumps([self.epochs[e] for e in sorted(self.epochs)]))
