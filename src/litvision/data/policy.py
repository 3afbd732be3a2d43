"""Augmentation policies written in YAML as lists of albumentations transforms.

A policy is a datamodule argument::

    policy:
      - {class_path: albumentations.HorizontalFlip, init_args: {p: 0.5}}
      - {class_path: albumentations.RandomRotate90}
      - {class_path: albumentations.Affine, init_args: {translate_percent: 0.1, rotate: [-15, 15]}}

It is composed once (``albumentations.Compose``) and applied to each training image. Its random draws
come from a seed drawn from torch's generator, which the training sampler seeds per sample (see
data/resumable.py): an image's augmentation depends on its sample seed alone, so runs stay bitwise
reproducible and resume exactly.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import albumentations as A
import numpy as np
import torch
from torch import Tensor

from litvision.errors import LitvisionError
from litvision.utils import import_object

# albumentations keeps its seeds in numpy's and Python's generators, which take any 32-bit value.
_SEED_BOUND = 2**32


def build_transform(spec: Mapping[str, Any] | str) -> A.BasicTransform:
    """One albumentations transform from ``{class_path, init_args}`` (or a bare class path); the class
    path may leave out ``albumentations.``."""
    if isinstance(spec, str):
        spec = {"class_path": spec}
    if not isinstance(spec, Mapping) or "class_path" not in spec or set(spec) - {"class_path", "init_args"}:
        raise LitvisionError(
            f"policy entry {spec!r} is invalid: write each transform as "
            "{class_path: albumentations.<Transform>, init_args: {...}}"
        )
    path = str(spec["class_path"])
    try:
        cls = import_object(path if "." in path else f"albumentations.{path}")
    except LitvisionError:
        cls = None
    if not (isinstance(cls, type) and issubclass(cls, A.BasicTransform)):
        raise LitvisionError(
            f"policy transform '{path}' is not an albumentations transform: use a class of "
            "https://albumentations.ai/docs/api-reference/ such as albumentations.HorizontalFlip"
        )
    try:
        return cls(**dict(spec.get("init_args") or {}))
    except Exception as err:  # albumentations validates its arguments with pydantic, in many error types
        reason = " ".join(str(err).split())[:300]
        raise LitvisionError(f"policy transform '{path}' refuses its init_args: {reason}") from None


class AlbumentationsPolicy:
    """A list of albumentations transforms, composed once, applied to uint8 image tensors (C, H, W)."""

    def __init__(self, transforms: Sequence[Mapping[str, Any] | str]) -> None:
        self.specs = [dict(t) if isinstance(t, Mapping) else t for t in transforms]
        self.compose = A.Compose([build_transform(t) for t in transforms])

    def apply(self, image: Tensor, seed: int) -> Tensor:
        """``image`` through the policy with albumentations' generators seeded with ``seed``: what
        ``albumentations.Compose(transforms, seed=seed)(image=...)`` gives."""
        self.compose.set_random_seed(seed)
        array = np.ascontiguousarray(image.permute(1, 2, 0).numpy())  # albumentations wants (H, W, C)
        out = self.compose(image=array)["image"]
        if out.ndim == 2:  # some transforms drop a grey image's channel axis
            out = out[:, :, None]
        return torch.from_numpy(np.ascontiguousarray(out)).permute(2, 0, 1)

    def __call__(self, image: Tensor) -> Tensor:
        # The seed comes from torch's generator, which the dataset seeds with the sample's own seed.
        return self.apply(image, int(torch.randint(0, _SEED_BOUND, ())))

    def __repr__(self) -> str:
        return f"{type(self).__name__}({[type(t).__name__ for t in self.compose.transforms]})"
