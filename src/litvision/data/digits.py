"""scikit-learn's bundled handwritten digits: 1,797 real 8x8 images, no download (the offline demo)."""

from __future__ import annotations

from collections.abc import Sequence
from functools import cached_property

import torch
from sklearn.datasets import load_digits
from torch.utils.data import Dataset

from litvision.data.base import ImageDataModule, TensorImageDataset, stratified_split


class DigitsDataModule(ImageDataModule):
    """The UCI optical-recognition digits shipped with scikit-learn (16 grey levels, rescaled to 0..255).

    They have no official split: ``test_size`` of them is a seeded stratified test split.
    """

    name = "digits"
    class_names = [str(d) for d in range(10)]
    input_shape = (1, 8, 8)
    mean = (0.3059,)
    std = (0.3745,)

    def __init__(
        self, test_size: int | float = 0.2, num_workers: int = 0, augment: bool = False, **kwargs
    ) -> None:
        super().__init__(num_workers=num_workers, augment=augment, **kwargs)
        self.test_size = test_size

    @cached_property
    def _data(self) -> tuple[torch.Tensor, list[int]]:
        digits = load_digits()
        images = torch.from_numpy(digits.images * (255 / 16)).round().to(torch.uint8).unsqueeze(1)
        return images, digits.target.tolist()

    def load_split(self, train: bool) -> tuple[Dataset, Sequence[int]]:
        images, targets = self._data
        train_idx, test_idx = stratified_split(targets, self.test_size, self.split_seed)
        indices = train_idx if train else test_idx
        labels = [targets[i] for i in indices]
        return TensorImageDataset(images[indices], labels), labels
