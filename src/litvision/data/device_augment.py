"""Whole-batch augmentation of uint8 images on their own device, with torchvision v2's semantics.

torchvision's v2 transforms draw one set of random parameters per call, so a batch passed through them
gets the same crop and flip for every image. The functions here draw them per image, for a whole batch
in a few tensor operations and without reading anything back to the host (no GPU synchronisation). They
cover the random crop with padding and the flips that litvision's datasets use; :class:`BatchTransform`
translates a list of v2 transforms into them and refuses the transforms it cannot translate.

Mixup and CutMix (:func:`mix_batch`) mix whole training batches on their device, on either data path
(the datamodule calls it once a batch has reached the device).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import NamedTuple

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor
from torchvision.transforms import v2

from litvision.errors import LitvisionError

# A whole-batch augmentation: (uint8 images, generator or None for torch's default one) -> images.
BatchOp = Callable[[Tensor, torch.Generator | None], Tensor]


def random_crop(
    images: Tensor,
    size: tuple[int, int],
    padding: Sequence[int] = (0, 0, 0, 0),
    fill: int | float = 0,
    generator: torch.Generator | None = None,
) -> Tensor:
    """A ``size`` crop of each image at a uniform random offset, after constant ``padding`` (left, right,
    top, bottom) of value ``fill``: ``v2.RandomCrop(size, padding, fill)`` drawn per image."""
    if any(padding):
        left, right, top, bottom = padding
        images = F.pad(images, (left, right, top, bottom), value=fill)
    n, _, height, width = images.shape
    crop_h, crop_w = size
    if crop_h > height or crop_w > width:
        raise LitvisionError(f"crop size {tuple(size)} is larger than the padded images ({height}, {width})")
    tops = torch.randint(0, height - crop_h + 1, (n,), device=images.device, generator=generator)
    lefts = torch.randint(0, width - crop_w + 1, (n,), device=images.device, generator=generator)
    # A view of every (crop_h, crop_w) window at every offset; one gather picks each image's own window.
    windows = images.unfold(2, crop_h, 1).unfold(3, crop_w, 1)  # (n, C, offsets_y, offsets_x, h, w)
    return windows[torch.arange(n, device=images.device), :, tops, lefts]


def random_flip(
    images: Tensor, p: float = 0.5, dim: int = -1, generator: torch.Generator | None = None
) -> Tensor:
    """Each image flipped along ``dim`` (-1: horizontally, -2: vertically) with probability ``p``."""
    flip = torch.rand(images.shape[0], device=images.device, generator=generator) < p
    return torch.where(flip.view(-1, *[1] * (images.ndim - 1)), images.flip(dim), images)


def to_normalized_float(images: Tensor, mean: Tensor, std: Tensor) -> Tensor:
    """uint8 images scaled to [0, 1] and normalised by per-channel float32 ``mean`` and ``std`` tensors
    (on the images' device): ``v2.ToDtype(float32, scale=True)`` then ``v2.Normalize``, in the same
    arithmetic, so that the results are identical."""
    x = images.to(torch.float32).mul_(1.0 / 255)
    return x.sub_(mean.view(-1, 1, 1)).div_(std.view(-1, 1, 1))


def batch_op(transform: Callable) -> BatchOp:
    """The whole-batch version of one v2 transform; a :class:`LitvisionError` if there is none."""
    if type(transform) is v2.RandomCrop:
        fill = transform.fill
        plain = transform.padding_mode == "constant" and not transform.pad_if_needed
        if not plain or not isinstance(fill, int | float):
            raise LitvisionError(
                f"{transform} cannot run per batch on the device: only constant padding with one fill "
                f"value is supported; use in_memory: false"
            )
        padding = tuple(transform.padding or (0, 0, 0, 0))
        return lambda x, g: random_crop(x, transform.size, padding, fill, g)
    if type(transform) is v2.RandomHorizontalFlip:
        return lambda x, g: random_flip(x, transform.p, -1, g)
    if type(transform) is v2.RandomVerticalFlip:
        return lambda x, g: random_flip(x, transform.p, -2, g)
    raise LitvisionError(
        f"{type(transform).__name__} cannot run per batch on the device (supported: RandomCrop, "
        f"RandomHorizontalFlip, RandomVerticalFlip); use in_memory: false"
    )


class BatchTransform:
    """uint8 batches (N, C, H, W) to normalised float32 batches, after the per-image random
    ``augmentations`` (torchvision v2 transforms, translated by :func:`batch_op`)."""

    def __init__(
        self, augmentations: Sequence[Callable], mean: Sequence[float], std: Sequence[float]
    ) -> None:
        self.augmentations = list(augmentations)
        self.ops = [batch_op(t) for t in self.augmentations]
        self.mean = tuple(mean)
        self.std = tuple(std)
        # Per device, made once: a tensor made from Python numbers is copied to a GPU, and waits for it.
        self._statistics: dict[torch.device, tuple[Tensor, Tensor]] = {}

    def __call__(self, images: Tensor, generator: torch.Generator | None = None) -> Tensor:
        for op in self.ops:
            images = op(images, generator)
        statistics = self._statistics.get(images.device)
        if statistics is None:
            mean, std = (
                torch.tensor(v, dtype=torch.float32, device=images.device) for v in (self.mean, self.std)
            )
            statistics = self._statistics[images.device] = (mean, std)
        return to_normalized_float(images, *statistics)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.augmentations}, mean={self.mean}, std={self.std})"


class MixedBatch(NamedTuple):
    """A training batch after mixup or cutmix: ``x`` mixes each image with the image of ``partner``'s
    label, the first label weighing ``lam`` (one value per batch, as in Zhang et al. and Yun et al.)."""

    x: Tensor
    target: Tensor
    env: Tensor | None
    partner: Tensor
    lam: float


def mixup(x: Tensor, order: Tensor, lam: float) -> Tensor:
    """Mixup (Zhang et al., ICLR 2018): ``lam * x + (1 - lam) * x[order]``."""
    return x.mul(lam).add_(x[order], alpha=1 - lam)


def cutmix(x: Tensor, order: Tensor, box: tuple[int, int, int, int]) -> Tensor:
    """CutMix (Yun et al., ICCV 2019): the ``box`` (top, bottom, left, right) of each image replaced by
    that of image ``order``."""
    top, bottom, left, right = box
    mixed = x.clone()
    mixed[..., top:bottom, left:right] = x[order][..., top:bottom, left:right]
    return mixed


def cutmix_box(height: int, width: int, lam: float, rng: np.random.Generator) -> tuple[int, int, int, int]:
    """A box of area ``(1 - lam)`` of the image at a uniform random centre, clipped to the image (Yun et
    al.'s sampling); the caller recomputes ``lam`` from the clipped area."""
    cut_h, cut_w = int(height * math.sqrt(1 - lam)), int(width * math.sqrt(1 - lam))
    cy, cx = int(rng.integers(height)), int(rng.integers(width))
    top, bottom = max(cy - cut_h // 2, 0), min(cy + cut_h // 2, height)
    left, right = max(cx - cut_w // 2, 0), min(cx + cut_w // 2, width)
    return top, bottom, left, right


def mix_batch(
    batch: Sequence[Tensor],
    mixup_alpha: float,
    cutmix_alpha: float,
    rng: np.random.Generator,
    cutmix_prob: float = 1.0,
) -> MixedBatch | Sequence[Tensor]:
    """Mixup or cutmix (each with probability 1/2 when both are on) of a batch ``(x, y[, env])`` on its
    device; a batch drawn for CutMix is cut with probability ``cutmix_prob`` and otherwise returned as it
    came (Yun et al.'s ``cutmix_prob``). The random draws (lam, the pairing, the box) are made on the
    host from ``rng``, so that the device is never waited for and a run seeded the same way mixes the
    same way."""
    x, target = batch[0], batch[1]
    env = batch[2] if len(batch) > 2 else None
    use_cutmix = cutmix_alpha > 0 and (mixup_alpha == 0 or rng.random() < 0.5)
    if use_cutmix and cutmix_prob < 1 and rng.random() >= cutmix_prob:
        return batch
    lam = float(rng.beta(cutmix_alpha, cutmix_alpha) if use_cutmix else rng.beta(mixup_alpha, mixup_alpha))
    order = torch.as_tensor(rng.permutation(x.shape[0])).to(x.device, non_blocking=True)
    if use_cutmix:
        height, width = x.shape[-2:]
        box = cutmix_box(height, width, lam, rng)
        x = cutmix(x, order, box)
        lam = 1 - (box[1] - box[0]) * (box[3] - box[2]) / (height * width)  # the area actually pasted
    else:
        x = mixup(x, order, lam)
    return MixedBatch(x, target, env, target[order], lam)
