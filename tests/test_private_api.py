"""The private Lightning and PyTorch APIs of litvision/private_api.py still do what it relies on, on the
installed versions: an upgrade that breaks one fails here, naming it."""

from __future__ import annotations

import lightning
import pytest
import torch
from lightning.pytorch.callbacks import ModelCheckpoint

from litvision.cli import LitvisionCLI
from litvision.private_api import IndexBatchesLoader, cli_build_trainer, cli_callback_keys

VERSIONS = f"Lightning {lightning.__version__}, torch {torch.__version__}"
ARGS = ["--model.backbone=litvision.models.SimpleCNN", "--data=litvision.data.SyntheticDataModule",
        "--trainer.logger=false", "--trainer.enable_progress_bar=false"]  # fmt: skip


def test_lightning_cli_private_methods_build_the_trainer_we_ask_for():
    cli = LitvisionCLI(args=ARGS, run=False)
    try:
        keys = cli_callback_keys(cli)
    except AttributeError as err:
        pytest.fail(f"LightningCLI._parser(...).callback_keys is gone in {VERSIONS}: {err}")
    assert keys == ["checkpoint"], f"LightningCLI._parser(...).callback_keys changed in {VERSIONS}"
    marker = ModelCheckpoint(filename="marker")
    try:
        trainer = cli_build_trainer(cli, {"logger": False, "max_epochs": 3, "callbacks": None}, [marker])
    except (AttributeError, TypeError) as err:
        pytest.fail(f"LightningCLI._instantiate_trainer(config, callbacks) changed in {VERSIONS}: {err}")
    assert trainer.max_epochs == 3 and marker in trainer.callbacks, (
        f"LightningCLI._instantiate_trainer no longer adds the given callbacks in {VERSIONS}"
    )


@pytest.mark.parametrize("num_workers", [0, 1])
def test_dataloader_iterators_read_their_indices_from_index_sampler(num_workers):
    class FirstBatchOnly(IndexBatchesLoader):
        def index_batches(self, batches):
            return [next(iter(batches))]

    data = torch.arange(12)
    loader = FirstBatchOnly(data, batch_size=4, num_workers=num_workers)
    batches = list(loader)
    assert len(batches) == 1 and batches[0].tolist() == [0, 1, 2, 3], (
        f"DataLoader no longer takes its index batches from _index_sampler in {VERSIONS} "
        f"({num_workers} workers): ResumableDataLoader cannot skip consumed batches"
    )
