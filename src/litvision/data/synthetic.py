"""Random images of any shape, learnable from their class: for tests and smoke runs."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch.utils.data import Dataset

from litvision.data.base import ImageDataModule, TensorImageDataset


class SyntheticDataModule(ImageDataModule):
    """Each class has a fixed random uint8 pattern; a sample is its pattern plus uniform noise.

    Deterministic in ``split_seed``; nothing is read from disk.
    """

    name = "synthetic"

    def __init__(
        self,
        num_classes: int = 10,
        input_shape: tuple[int, int, int] = (3, 32, 32),
        train_size: int = 512,
        test_size: int = 128,
        noise: int = 64,
        num_workers: int = 0,
        **kwargs,
    ) -> None:
        super().__init__(num_workers=num_workers, **kwargs)
        self.class_names = [f"class_{i}" for i in range(num_classes)]
        self.input_shape = tuple(input_shape)
        self.mean = (0.5,) * self.input_shape[0]
        self.std = (0.25,) * self.input_shape[0]
        self.train_size = train_size
        self.test_size = test_size
        self.noise = noise

    def load_split(self, train: bool) -> tuple[Dataset, Sequence[int]]:
        generator = torch.Generator().manual_seed(self.split_seed)
        patterns = torch.randint(
            0, 256 - self.noise, (self.num_classes, *self.input_shape), generator=generator
        )
        if not train:  # a different stream of samples for the test split
            generator.manual_seed(self.split_seed + 1)
        size = self.train_size if train else self.test_size
        targets = torch.arange(size) % self.num_classes
        noise = torch.randint(0, self.noise + 1, (size, *self.input_shape), generator=generator)
        images = (patterns[targets] + noise).to(torch.uint8)
        return TensorImageDataset(images, targets.tolist()), targets.tolist()
