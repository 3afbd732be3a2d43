"""Datasets held whole in memory, as one uint8 tensor on the device that trains (the airbench recipe).

Images are decoded once (and, when they come from image files, cached on disk next to the data), then a
batch is one tensor index into the stored images, augmented and normalised where they live by a
:class:`~litvision.data.device_augment.BatchTransform`. The datasets implement ``__getitems__``, so a
plain ``DataLoader`` with a ``batch_size`` and any sampler (the seeded training sampler, Lightning's
distributed ones) hands over each batch's indices at once: no image is touched one at a time in Python,
no worker process is needed, and ``limit_*_batches``, DDP and Lightning's loops work unchanged.
"""

from __future__ import annotations

import hashlib
import os
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import DataLoader, Dataset, Subset
from torchvision.datasets import DatasetFolder

from litvision.data.resumable import Item
from litvision.errors import LitvisionError
from litvision.utils import write_atomically

# Bump when the cached tensor's layout or the decoding changes, so that old caches are rebuilt.
CACHE_VERSION = 1
# "auto" keeps a split in memory up to this size, and on a GPU up to this share of its free memory.
AUTO_MAX_BYTES = 4 * 2**30
AUTO_MAX_GPU_FRACTION = 0.25


def to_device(values: Sequence[Any] | np.ndarray, device: torch.device, dtype: torch.dtype) -> Tensor:
    """Host values as a tensor on ``device``, copied from pinned memory so that the host does not wait
    for the device (a plain copy to a GPU synchronises with it)."""
    tensor = torch.as_tensor(np.asarray(values), dtype=dtype)
    if device.type == "cuda":
        return tensor.pin_memory().to(device, non_blocking=True)
    return tensor.to(device)


def split_items(items: Sequence[Item] | np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
    """The indices of a batch's sampler items and, for training items ``(index, seed)``, their seeds."""
    array = np.asarray(items, dtype=np.int64)  # (n,) indices or (n, 2) pairs
    if array.ndim == 2:
        return array[:, 0], array[:, 1]
    return array, None


def batch_generator(
    seeds: np.ndarray | None, device: torch.device, stream: int = 0
) -> torch.Generator | None:
    """A generator on ``device`` for a batch's random draws, seeded from its first item's seed (plus
    ``stream``): the draws then depend on the sampler's seeds only, so that a run is reproducible and
    resumes exactly (see data/resumable.py). None, torch's default generator, for items without seeds."""
    if seeds is None or len(seeds) == 0:
        return None
    return torch.Generator(device=device).manual_seed(int(seeds[0]) + stream)


class InMemorySubset(Dataset):
    """The samples ``indices`` of uint8 ``images`` (N, C, H, W) with their ``targets``, stored on
    ``device``; :meth:`__getitems__` gathers a batch with one index and finishes it with ``transform``
    (augmentation and normalisation) on that device.
    """

    def __init__(
        self,
        images: Tensor,
        targets: Sequence[int] | Tensor,
        indices: Sequence[int],
        transform: Callable[[Tensor, torch.Generator | None], Tensor],
        device: torch.device | str = "cpu",
    ) -> None:
        self.indices = [int(i) for i in indices]
        index = torch.as_tensor(self.indices, dtype=torch.long)
        self.images = images[index].to(device)
        self.targets = torch.as_tensor(targets, dtype=torch.long)[index].to(device)
        self.transform = transform

    def __len__(self) -> int:
        return len(self.indices)

    def __getitems__(self, items: Sequence[Item] | np.ndarray) -> tuple[Tensor, Tensor]:
        positions, seeds = split_items(items)
        device = self.images.device
        index = to_device(positions, device, torch.long)
        return self.transform(self.images[index], batch_generator(seeds, device)), self.targets[index]

    def __getitem__(self, item: Item) -> tuple[Tensor, int]:
        images, targets = self.__getitems__([item])
        return images[0], int(targets[0])


def yields_batches(dataset: Dataset | None) -> bool:
    """Whether ``dataset`` (or the dataset it wraps, for noisy copies) makes whole batches in memory."""
    while dataset is not None:
        if isinstance(dataset, InMemorySubset):
            return True
        dataset = getattr(dataset, "dataset", None)
    return False


def as_batch(batch: Any) -> Any:
    """The collate function of in-memory loaders (``__getitems__`` already returns the batch), and of
    the decoding loader (a list of images, checked one by one)."""
    return batch


def image_files(dataset: Dataset) -> list[str] | None:
    """The files a dataset reads its images from, in its order (a torchvision ``ImageFolder``, possibly
    in a ``Subset``); None for datasets that do not read files."""
    if isinstance(dataset, Subset):
        files = image_files(dataset.dataset)
        return None if files is None else [files[i] for i in dataset.indices]
    if isinstance(dataset, DatasetFolder):
        return [path for path, _ in dataset.samples]
    return None


class _Decoding(Dataset):
    """The images of ``dataset`` through ``transform``, labels dropped (for decoding in loader workers)."""

    def __init__(self, dataset: Dataset, transform: Callable) -> None:
        self.dataset = dataset
        self.transform = transform

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int) -> Tensor:
        return self.transform(self.dataset[index][0])


def decode(
    dataset: Dataset,
    transform: Callable,
    shape: Sequence[int],
    num_workers: int = 0,
    files: Sequence[str] | None = None,
) -> Tensor:
    """Every image of ``dataset`` (items ``(image, label)``) through ``transform`` (giving uint8
    ``shape`` tensors), stacked into one (N, *shape) tensor; ``num_workers`` processes decode."""
    images = torch.empty((len(dataset), *shape), dtype=torch.uint8)
    loader = DataLoader(
        _Decoding(dataset, transform), batch_size=256, num_workers=num_workers, collate_fn=as_batch
    )
    position = 0
    for batch in loader:
        for image in batch:
            if tuple(image.shape) != tuple(shape):
                where = f"'{files[position]}'" if files is not None else f"number {position}"
                raise LitvisionError(
                    f"image {where} has shape {tuple(image.shape)}, not {tuple(shape)} like the first: "
                    f"give every image the same size (image_size resizes them)"
                )
            images[position] = image
            position += 1
    return images


def cache_key(files: Sequence[str], root: Path, recipe: str) -> str:
    """A digest of the files (relative path, size, modification time) and of how they are decoded."""
    digest = hashlib.sha256(f"{CACHE_VERSION}\n{recipe}\n".encode())
    for file in files:
        stat = os.stat(file)
        digest.update(f"{os.path.relpath(file, root)}\t{stat.st_size}\t{stat.st_mtime_ns}\n".encode())
    return digest.hexdigest()[:16]


def cached_decode(
    dataset: Dataset,
    transform: Callable,
    shape: Sequence[int],
    cache_dir: Path,
    split: str,
    num_workers: int = 0,
) -> Tensor:
    """:func:`decode`, kept in ``cache_dir/.litvision-<split>-<key>.pt`` for datasets of image files and
    rebuilt when the files (list, sizes, modification times) or the decoding recipe change."""
    files = image_files(dataset)
    if files is None:
        return decode(dataset, transform, shape, num_workers)
    key = cache_key(files, cache_dir, f"{tuple(shape)} {transform}")
    path = cache_dir / f".litvision-{split}-{key}.pt"
    if path.exists():
        try:
            images = torch.load(path, weights_only=True, mmap=True)
            expected = (len(files), *shape)
            if isinstance(images, Tensor) and images.dtype == torch.uint8 and images.shape == expected:
                return images
        except Exception:  # unreadable (another torch version, a damaged disk): decode again
            pass
    images = decode(dataset, transform, shape, num_workers, files)
    _save_cache(images, path)
    return images


def _save_cache(images: Tensor, path: Path) -> None:
    """Save atomically, so that a reader (another DDP rank, a run that was interrupted) never sees half a
    file; drop the caches of older versions of the data."""
    try:
        write_atomically(path, lambda f: torch.save(images, f))
    except OSError as err:  # e.g. a read-only data folder: train anyway, and decode again next time
        warnings.warn(f"could not cache the decoded images in '{path}': {err}", stacklevel=2)
        return
    prefix = path.name.rsplit("-", 1)[0]
    for old in path.parent.glob(f"{prefix}-*.pt"):
        if old != path:
            old.unlink(missing_ok=True)
