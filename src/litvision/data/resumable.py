"""Training batches that do not depend on how they were produced, so that a run is bitwise reproducible
and a run killed mid-epoch resumes exactly where it stopped.

:class:`SeededSampler` fixes each epoch's order *and* one random seed per draw from (run seed, epoch).
On the file path, datasets draw a sample's augmentation from its own seed (:func:`seeded`), not from a
worker's random stream; on the in-memory path, a batch's crops, flips and noise all come from one
generator seeded with its first item's seed (``memory.batch_generator``). Either way a batch does not
depend on the number of workers, on which worker made it, or on where the epoch was resumed.
:class:`ResumableDataLoader` remembers how many batches of the epoch were consumed and, restored from a
checkpoint, skips exactly those.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import numpy as np
import torch
from torch.utils.data import Sampler

from litvision.private_api import IndexBatchesLoader

# A dataset index, or an index with the seed of its random transforms (what SeededSampler yields).
Item = int | tuple[int, int]


def split_item(item: Item) -> tuple[int, int | None]:
    """``(index, seed)`` of a sampler item; the seed is None for plain indices (evaluation)."""
    if isinstance(item, tuple):
        return int(item[0]), int(item[1])
    return int(item), None


@contextmanager
def seeded(seed: int | None) -> Iterator[None]:
    """Draw from torch's global generator seeded with ``seed`` (if any), leaving its state as it was."""
    if seed is None:
        yield
        return
    # The CPU generator alone (what transforms draw from): torch.manual_seed would also seed every
    # accelerator backend, 40 times slower per sample.
    generator = torch.default_generator
    state = generator.get_state()
    generator.manual_seed(seed)
    try:
        yield
    finally:
        generator.set_state(state)


class SeededSampler(Sampler[tuple[int, int]]):
    """Yields ``(index, seed)``: a random order of ``num_samples`` (or, with ``weights``, as many draws
    with replacement in proportion to them) and a seed per draw, all fixed by ``seed`` and the epoch.
    ``weights`` may be a function of the epoch (a progressive sampling schedule).

    Lightning calls :meth:`set_epoch` at every epoch, and forwards it through its DDP wrapper.
    """

    def __init__(
        self,
        num_samples: int,
        seed: int,
        weights: Sequence[float] | torch.Tensor | Callable[[int], torch.Tensor] | None = None,
    ) -> None:
        self.num_samples = num_samples
        self.seed = seed
        if weights is None or callable(weights):
            self.weights = weights
        else:
            self.weights = torch.as_tensor(weights, dtype=torch.double)
        self.epoch = 0

    def epoch_weights(self) -> torch.Tensor | None:
        """The draw weights of the current epoch (None: a plain shuffle)."""
        return self.weights(self.epoch) if callable(self.weights) else self.weights

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return self.num_samples

    def __iter__(self) -> Iterator[tuple[int, int]]:
        # SeedSequence mixes (seed, epoch) into a well-spread seed: no two epochs or runs share a stream.
        state = int(np.random.SeedSequence([self.seed, self.epoch]).generate_state(1, np.uint64)[0])
        generator = torch.Generator().manual_seed(state)
        weights = self.epoch_weights()
        if weights is None:
            order = torch.randperm(self.num_samples, generator=generator)
        else:
            order = torch.multinomial(weights, self.num_samples, replacement=True, generator=generator)
        seeds = torch.randint(0, 2**62, (self.num_samples,), generator=generator)
        return zip(order.tolist(), seeds.tolist())


class ResumableDataLoader(IndexBatchesLoader):
    """A DataLoader that Lightning saves in checkpoints (``state_dict``) and restores mid-epoch.

    The state is the epoch and the number of batches the training loop consumed; on restore the next
    iteration skips that many batches of the sampler (indices only: no image is read for them).
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._yielded = 0
        self._skip = 0

    def index_batches(self, batches: Any) -> Any:
        return _SkipFirst(batches, self)

    def __iter__(self) -> Iterator[Any]:
        self._yielded = self._skip
        iterator = super().__iter__()  # builds its index iterator(s), skipping what was consumed
        self._skip = 0
        return self._count(iterator)

    def _count(self, iterator: Iterator[Any]) -> Iterator[Any]:
        for batch in iterator:
            self._yielded += 1
            yield batch

    def _epoch(self) -> int:
        sampler = self.batch_sampler.sampler if self.batch_sampler is not None else self.sampler
        return int(getattr(sampler, "epoch", 0))

    def state_dict(self) -> dict[str, int]:
        # Lightning fetches no batch ahead from a loader with a length: what left it was trained on.
        return {"epoch": self._epoch(), "consumed": self._yielded, "done": int(self._yielded >= len(self))}

    def load_state_dict(self, state: dict[str, int]) -> None:
        sampler = self.batch_sampler.sampler if self.batch_sampler is not None else self.sampler
        if state.get("done"):  # the epoch was complete: the next one starts from its beginning
            epoch, self._skip = state["epoch"] + 1, 0
        else:
            epoch, self._skip = state["epoch"], state["consumed"]
        if hasattr(sampler, "set_epoch"):
            sampler.set_epoch(epoch)


class _SkipFirst:
    """The loader's index sampler, minus the batches a restored loader has yet to skip."""

    def __init__(self, sampler: Any, loader: ResumableDataLoader) -> None:
        self.sampler = sampler
        self.loader = loader

    def __len__(self) -> int:
        return len(self.sampler)

    def __iter__(self) -> Iterator[Any]:
        iterator = iter(self.sampler)
        for _ in range(self.loader._skip):
            next(iterator, None)
        return iterator
