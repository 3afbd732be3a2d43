"""The private Lightning and PyTorch APIs litvision relies on, each used here and nowhere else.

Nothing public does these jobs (Lightning 2.6, PyTorch 2.x). An upgrade that renames or reshapes one
breaks this module only, and ``tests/test_private_api.py`` names the API that broke.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from lightning.pytorch.callbacks import RichProgressBar
from torch.utils.data import DataLoader

if TYPE_CHECKING:  # the data package imports this module: it need not load the CLI
    from lightning.pytorch import Callback, Trainer
    from lightning.pytorch.cli import LightningCLI
    from lightning.pytorch.plugins.io import CheckpointIO
    from torch.utils.tensorboard import SummaryWriter


def cli_callback_keys(cli: LightningCLI) -> list[str]:
    """The config keys of the callbacks added with ``parser.add_lightning_class_args`` (our
    ``--checkpoint`` and ``--predictions``), which LightningCLI instantiates and adds to the trainer
    itself."""
    return list(cli._parser(cli.subcommand).callback_keys)


def cli_build_trainer(cli: LightningCLI, config: dict[str, Any], callbacks: list[Callback]) -> Trainer:
    """The trainer LightningCLI would build from ``config``, with ``callbacks`` and the CLI's trainer
    defaults and config-saving callback added: what ``instantiate_trainer`` does, with the callbacks chosen
    by us (the public method adds every ``cli_callback_keys`` callback, whether the trainer's flags allow
    it or not)."""
    return cli._instantiate_trainer(config, callbacks)


def strategy_checkpoint_io(strategy: Any) -> CheckpointIO | None:
    """The checkpoint I/O given to a strategy object (``DDPStrategy(checkpoint_io=...)``), or None where it
    was given none (the public ``checkpoint_io`` property makes a default one instead of saying so); None
    for a strategy named by a string."""
    return getattr(strategy, "_checkpoint_io", None)


def logger_params(params: Any) -> dict[str, Any]:
    """Hyperparameters as Lightning's loggers take them (a dict, an ``argparse.Namespace`` or None) turned
    into a dict, as its own ``log_hyperparams`` does first."""
    from lightning.fabric.utilities.logger import _convert_params

    return _convert_params(params)


def tensorboard_file_writer(writer: SummaryWriter) -> Any:
    """The file writer of a ``SummaryWriter``, made if need be: our HPARAMS summaries are written through
    its ``add_summary`` (``SummaryWriter.add_hparams`` would write them into a run folder of their own)."""
    return writer._get_file_writer()


class IndexBatchesLoader(DataLoader):
    """A DataLoader whose iterators, in this process or in worker processes, take their batches of
    indices through :meth:`index_batches` (DataLoader reads them from its private ``_index_sampler``)."""

    @property
    def _index_sampler(self) -> Any:
        return self.index_batches(super()._index_sampler)

    def index_batches(self, batches: Any) -> Any:
        """The sampler (or batch sampler) of indices the iterators use; override to change it."""
        return batches


class EpochDescribedProgressBar(RichProgressBar):
    """A rich progress bar whose training bar is labelled by :meth:`train_description` (Lightning labels
    it in its private ``_get_train_description``, with nothing public to change the label)."""

    def train_description(self, epoch: int) -> str:
        """The label of the training bar in epoch ``epoch`` (Lightning's, counted from 0)."""
        return super()._get_train_description(epoch)

    def _get_train_description(self, current_epoch: int) -> str:
        return self.train_description(current_epoch)
