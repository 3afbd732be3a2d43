"""Imbalanced training sets and the ways back: class-count profiles, sampling schedules, and
Gaussian-noise minority copies."""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import Any, Literal

import numpy as np
import torch
from torch.utils.data import Dataset

from litvision.data.memory import batch_generator, split_items, to_device
from litvision.data.resumable import Item, seeded, split_item
from litvision.errors import LitvisionError


class ImbalanceProfile(ABC):
    """How many of its training images each class keeps."""

    @abstractmethod
    def counts(self, available: Sequence[int]) -> list[int]:
        """The number of images kept per class, given the number available per class."""

    def validate(self, num_classes: int) -> None:
        """Reject settings that cannot apply to ``num_classes`` classes, before any data is read. (Not
        in ``__init__``: an error there would reach the user wrapped in the CLI parser's traceback.)"""
        return None  # a hook: a profile with nothing to check keeps it


class StepImbalance(ImbalanceProfile):
    """The chosen ``classes`` keep ``fraction`` of their images (rounded down); the others keep all.

    Reports 000 and 002: classes 0-4 keep 10% (CIFAR-10's training set goes from 50,000 to 27,500).
    """

    def __init__(self, classes: Sequence[int] = (0, 1, 2, 3, 4), fraction: float = 0.1) -> None:
        self.classes = list(classes)
        self.fraction = fraction

    def validate(self, num_classes: int) -> None:
        if not 0 < self.fraction <= 1:
            raise LitvisionError(f"imbalance fraction={self.fraction} is invalid: it must be in (0, 1]")
        if len(set(self.classes)) != len(self.classes) or not self.classes:
            raise LitvisionError(f"imbalance classes={self.classes} must be distinct class ids, at least one")
        unknown = [c for c in self.classes if not 0 <= c < num_classes]
        if unknown:
            raise LitvisionError(
                f"imbalance classes {unknown} do not exist: class ids run from 0 to {num_classes - 1}"
            )

    def counts(self, available: Sequence[int]) -> list[int]:
        self.validate(len(available))
        return [math.floor(n * self.fraction) if c in self.classes else n for c, n in enumerate(available)]


class LongTailImbalance(ImbalanceProfile):
    """Exponential long tail (Cui et al. 2019; Cao et al. 2019's CIFAR-10-LT): class ``i`` of ``C`` keeps
    ``ratio ** (-i / (C - 1))`` of its images (rounded down), so the first class keeps all and the last
    ``1 / ratio`` (ratio: largest / smallest). On CIFAR-10's 5,000 images per class and ratio 100 this is
    Cao et al.'s ``n_i = 5000 * 0.01 ** (i / 9)``: 5000, 2997, 1796, 1077, 645, 387, 232, 139, 83, 50."""

    def __init__(self, ratio: float = 100.0) -> None:
        self.ratio = ratio

    def validate(self, num_classes: int) -> None:
        if not self.ratio >= 1:
            raise LitvisionError(f"imbalance ratio={self.ratio} is invalid: it must be at least 1")

    def counts(self, available: Sequence[int]) -> list[int]:
        self.validate(len(available))
        last = max(len(available) - 1, 1)
        return [math.floor(n * self.ratio ** (-i / last)) for i, n in enumerate(available)]


# A sampling schedule (Kang et al., ICLR 2020): a name, or the exponent q of p_j ~ n_j ** q.
Sampling = Literal["instance", "square_root", "class_balanced", "progressive"] | float
SAMPLING_POWERS = {"instance": 1.0, "square_root": 0.5, "class_balanced": 0.0}


def sampling_power(sampling: Sampling) -> float | Literal["progressive"]:
    """The exponent q of a sampling schedule, or ``"progressive"``; a one-line error for anything else."""
    if sampling == "progressive":
        return "progressive"
    if isinstance(sampling, str):
        if sampling not in SAMPLING_POWERS:
            raise LitvisionError(
                f"sampling={sampling!r} is invalid: use instance, square_root, class_balanced, progressive "
                "or a number q >= 0 (class j drawn with probability ~ n_j ** q)"
            )
        return SAMPLING_POWERS[sampling]
    if isinstance(sampling, bool) or not isinstance(sampling, int | float) or not sampling >= 0:
        raise LitvisionError(f"sampling={sampling!r} is invalid: a number q must be >= 0")
    return float(sampling)


def class_probabilities(
    counts: Sequence[int], q: float | Literal["progressive"], epochs: int = 1, epoch: int = 0
) -> np.ndarray:
    """The probability of drawing each class (Kang et al. 2020): ``n_j ** q / sum_i n_i ** q``; for
    ``progressive``, ``(1 - a) * instance + a * class-balanced`` with ``a = epoch / (epochs - 1)``, so
    that the first epoch draws instance-balanced and the last class-balanced."""
    n = np.asarray(counts, dtype=np.float64)
    present = n > 0
    if q == "progressive":
        a = min(epoch / max(epochs - 1, 1), 1.0)
        return (1 - a) * class_probabilities(counts, 1.0) + a * class_probabilities(counts, 0.0)
    p = np.where(present, np.power(n, q, where=present, out=np.zeros_like(n)), 0.0)
    return p / p.sum()


def sampling_weights(
    targets: Sequence[int],
    counts: Sequence[int],
    q: float | Literal["progressive"],
    epochs: int = 1,
    epoch: int = 0,
) -> torch.Tensor:
    """Per-sample draw weights that give class ``j`` the probability :func:`class_probabilities`: the
    class's probability shared equally among its ``n_j`` samples."""
    n = np.asarray(counts, dtype=np.float64)
    per_sample = class_probabilities(counts, q, epochs, epoch) / np.maximum(n, 1)
    return torch.as_tensor(per_sample[np.asarray(targets, dtype=np.int64)], dtype=torch.double)


def class_counts(targets: Sequence[int], num_classes: int) -> list[int]:
    return np.bincount(np.asarray(targets, dtype=np.int64), minlength=num_classes).tolist()


def imbalanced_subset(
    indices: np.ndarray, targets: Sequence[int], profile: ImbalanceProfile, num_classes: int, seed: int
) -> np.ndarray:
    """The ``indices`` (into ``targets``) that ``profile`` keeps: a seeded random choice within each class."""
    labels = np.asarray(targets)[indices]
    keep = profile.counts(class_counts(labels, num_classes))
    empty = [c for c, (n, k) in enumerate(zip(class_counts(labels, num_classes), keep)) if n and not k]
    if empty:
        raise LitvisionError(
            f"the imbalance profile leaves classes {empty} with no training image: use a milder profile"
        )
    rng = np.random.default_rng(seed)
    kept = [rng.permutation(indices[labels == c])[:k] for c, k in enumerate(keep)]
    return np.sort(np.concatenate(kept))


class NoisyCopies(Dataset):
    """A dataset followed by noisy copies of some of its samples, made afresh at each read.

    Item ``i < len(dataset)`` is the original ``(x, y, 0)``; then every sample listed in ``copies``
    appears once per variance ``s2`` in ``variances`` as ``(x + N(0, s2), y, 1)``. The noise is added to
    the transformed, normalised image, so a variance is in units of the normalised input. The last
    element is the environment (0: original, 1: noisy copy) that IRM can average over.
    """

    def __init__(self, dataset: Dataset, copies: Sequence[int], variances: Sequence[float]) -> None:
        self.dataset = dataset
        self.copies = list(copies)
        self.stds = [math.sqrt(v) for v in variances]

    def __len__(self) -> int:
        return len(self.dataset) + len(self.copies) * len(self.stds)

    def __getitem__(self, item: Item) -> tuple[torch.Tensor, int, int]:
        index, seed = split_item(item)
        if index < len(self.dataset):
            x, y = self.dataset[item]
            return x, y, 0
        copy, noise = divmod(index - len(self.dataset), len(self.stds))
        x, y = self.dataset[self.copies[copy] if seed is None else (self.copies[copy], seed)]
        with seeded(None if seed is None else seed + 1):  # noise independent of the augmentation's draws
            return x + torch.randn_like(x) * self.stds[noise], y, 1

    def __getitems__(self, items: Sequence[Item]) -> Any:
        """A whole batch ``(x, y, env)`` at once when the dataset makes batches (in memory, on its
        device): one gather of the source images, one draw of noise; otherwise the list of samples."""
        if not callable(getattr(self.dataset, "__getitems__", None)):
            return [self[item] for item in items]
        index, seeds = split_items(items)
        is_copy = index >= len(self.dataset)
        # Only the copies are looked up: there may be none at all (a noise class with no training image).
        copy, noise = np.divmod(index[is_copy] - len(self.dataset), len(self.stds))
        source = index.copy()
        source[is_copy] = np.asarray(self.copies, dtype=np.int64)[copy]
        x, y = self.dataset.__getitems__(source if seeds is None else np.stack([source, seeds], 1))
        if is_copy.any():  # known on the host, from the indices: no wait for the device
            stds = np.zeros(len(index), dtype=np.float32)
            stds[is_copy] = np.asarray(self.stds, dtype=np.float32)[noise]
            stds = to_device(stds, x.device, x.dtype).view(-1, *[1] * (x.ndim - 1))
            # Drawn for originals too (times 0): one draw for the batch beats gathering the copies.
            generator = batch_generator(seeds, x.device, stream=1)  # independent of the augmentation's
            x = x + torch.randn(x.shape, device=x.device, dtype=x.dtype, generator=generator) * stds
        return x, y, to_device(is_copy, x.device, torch.long)
