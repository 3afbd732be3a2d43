"""The private Lightning and PyTorch APIs of litvision/private_api.py still do what it relies on, on the
installed versions: an upgrade that breaks one fails here, naming it."""

from __future__ import annotations

import lightning
import pytest
import torch
from lightning.pytorch.callbacks import ModelCheckpoint

from litvision.cli import LitvisionCLI
from litvision.private_api import (
    EpochDescribedProgressBar,
    IndexBatchesLoader,
    cli_build_trainer,
    cli_callback_keys,
    logger_params,
    strategy_checkpoint_io,
    tensorboard_file_writer,
)

VERSIONS = f"Lightning {lightning.__version__}, torch {torch.__version__}"
ARGS = ["--model.backbone=litvision.models.SimpleCNN", "--data=litvision.data.SyntheticDataModule",
        "--trainer.logger=false", "--trainer.enable_progress_bar=false"]  # fmt: skip


def test_lightning_cli_private_methods_build_the_trainer_we_ask_for():
    cli = LitvisionCLI(args=ARGS, run=False)
    try:
        keys = cli_callback_keys(cli)
    except AttributeError as err:
        pytest.fail(f"LightningCLI._parser(...).callback_keys is gone in {VERSIONS}: {err}")
    assert keys == ["checkpoint", "predictions"], (
        f"LightningCLI._parser(...).callback_keys changed in {VERSIONS}"
    )
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


def test_a_strategy_keeps_the_checkpoint_io_it_was_given_in_checkpoint_io():
    from lightning.pytorch.plugins.io import TorchCheckpointIO
    from lightning.pytorch.strategies import DDPStrategy

    given = TorchCheckpointIO()
    try:
        found = (
            strategy_checkpoint_io(DDPStrategy(checkpoint_io=given)),
            strategy_checkpoint_io(DDPStrategy()),
        )
    except AttributeError as err:
        pytest.fail(f"Strategy._checkpoint_io is gone in {VERSIONS}: {err}")
    assert found == (given, None), (
        f"Strategy._checkpoint_io no longer holds the given checkpoint I/O in {VERSIONS}: "
        "with_atomic_checkpoints would replace a user's own"
    )
    assert strategy_checkpoint_io("ddp") is None


def test_logger_params_and_tensorboard_file_writer(tmp_path):
    from argparse import Namespace

    from torch.utils.tensorboard import SummaryWriter

    try:
        params = logger_params(Namespace(lr=0.1))
    except (ImportError, TypeError) as err:
        pytest.fail(f"lightning.fabric.utilities.logger._convert_params changed in {VERSIONS}: {err}")
    assert params == {"lr": 0.1}, f"_convert_params no longer turns a Namespace into a dict in {VERSIONS}"
    writer = SummaryWriter(tmp_path)
    try:
        file_writer = tensorboard_file_writer(writer)
    except AttributeError as err:
        pytest.fail(f"SummaryWriter._get_file_writer is gone in {VERSIONS}: {err}")
    assert callable(getattr(file_writer, "add_summary", None)), (
        f"SummaryWriter._get_file_writer() no longer gives a writer with add_summary in {VERSIONS}"
    )
    writer.close()


def test_the_rich_progress_bar_labels_its_training_bar_through_get_train_description(tmp_path):
    from lightning.pytorch import Trainer
    from lightning.pytorch.demos.boring_classes import BoringModel

    class Labelled(EpochDescribedProgressBar):
        def train_description(self, epoch: int) -> str:
            return f"labelled {epoch}"

    bar = Labelled()
    trainer = Trainer(
        callbacks=[bar], max_epochs=1, limit_train_batches=2, limit_val_batches=0, logger=False,
        enable_checkpointing=False, enable_model_summary=False, default_root_dir=tmp_path,
    )  # fmt: skip
    trainer.fit(BoringModel())
    labels = [task.description for task in bar.progress.tasks] if bar.progress is not None else []
    assert "labelled 0" in labels, (
        f"RichProgressBar no longer labels the training bar with _get_train_description in {VERSIONS}: "
        f"{labels}"
    )
