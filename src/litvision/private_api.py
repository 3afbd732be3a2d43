"""The private Lightning and PyTorch APIs litvision relies on, each used here and nowhere else.

Nothing public does these jobs (Lightning 2.6, PyTorch 2.x). An upgrade that renames or reshapes one
breaks this module only, and ``tests/test_private_api.py`` names the API that broke.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from torch.utils.data import DataLoader

if TYPE_CHECKING:  # the data package imports this module: it need not load the CLI
    from lightning.pytorch import Callback, Trainer
    from lightning.pytorch.cli import LightningCLI


def cli_callback_keys(cli: LightningCLI) -> list[str]:
    """The config keys of the callbacks added with ``parser.add_lightning_class_args`` (our
    ``--checkpoint``), which LightningCLI instantiates and adds to the trainer itself."""
    return list(cli._parser(cli.subcommand).callback_keys)


def cli_build_trainer(cli: LightningCLI, config: dict[str, Any], callbacks: list[Callback]) -> Trainer:
    """The trainer LightningCLI would build from ``config``, with ``callbacks`` and the CLI's trainer
    defaults and config-saving callback added: what ``instantiate_trainer`` does, with the callbacks chosen
    by us (the public method adds every ``cli_callback_keys`` callback, whether the trainer's flags allow
    it or not)."""
    return cli._instantiate_trainer(config, callbacks)


class IndexBatchesLoader(DataLoader):
    """A DataLoader whose iterators, in this process or in worker processes, take their batches of
    indices through :meth:`index_batches` (DataLoader reads them from its private ``_index_sampler``)."""

    @property
    def _index_sampler(self) -> Any:
        return self.index_batches(super()._index_sampler)

    def index_batches(self, batches: Any) -> Any:
        """The sampler (or batch sampler) of indices the iterators use; override to change it."""
        return batches
