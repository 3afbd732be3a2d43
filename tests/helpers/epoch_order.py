"""A callback that records which training samples each process saw, epoch by epoch: for the DDP tests."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from lightning.pytorch import Callback, LightningModule, Trainer


class RecordOrder(Callback):
    """Writes ``<folder>/rank<N>.json``: per epoch, a fingerprint (a position-weighted pixel sum) of each
    training sample in the order this process trained on them."""

    def __init__(self, folder: str) -> None:
        self.folder = Path(folder)
        self.seen: dict[int, list[float]] = {}

    def on_train_batch_start(
        self, trainer: Trainer, pl_module: LightningModule, batch: Any, batch_idx: int
    ) -> None:
        pixels = batch[0].flatten(1).double()
        weights = torch.linspace(1, 2, pixels.shape[1], dtype=torch.double)
        sums = (pixels * weights).sum(1).round(decimals=4).tolist()
        self.seen.setdefault(trainer.current_epoch, []).extend(sums)

    def on_train_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        (self.folder / f"rank{trainer.global_rank}.json").write_text(json.dumps(self.seen))
