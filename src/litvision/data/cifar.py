"""CIFAR-10 (Krizhevsky 2009): 50,000 training and 10,000 test images, 32x32 RGB."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

from torch.utils.data import Dataset
from torchvision.datasets import CIFAR10
from torchvision.transforms import v2

from litvision.data.base import ImageDataModule


class CIFAR10DataModule(ImageDataModule):
    """CIFAR-10 from torchvision, with the reports' augmentation: random crop 32 with padding 4 and a
    horizontal flip, normalized with the training set's own channel statistics."""

    name = "CIFAR-10"
    class_names = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
    input_shape = (3, 32, 32)
    mean = (0.4914, 0.4822, 0.4465)
    std = (0.2470, 0.2435, 0.2616)

    def __init__(self, data_dir: str | Path = "data", download: bool = True, **kwargs) -> None:
        super().__init__(data_dir=data_dir, **kwargs)
        self.download = download

    def prepare_data(self) -> None:
        for train in (True, False):
            self._download(
                lambda download, train=train: CIFAR10(self.data_dir, train=train, download=download),
                self.download,
                f"get {CIFAR10.url} and extract it into '{self.data_dir}' (giving "
                f"'{self.data_dir / CIFAR10.base_folder}')",
            )

    def load_split(self, train: bool) -> tuple[Dataset, Sequence[int]]:
        dataset = CIFAR10(self.data_dir, train=train)
        return dataset, dataset.targets

    def augmentations(self) -> list[Callable]:
        return [v2.RandomCrop(32, padding=4), v2.RandomHorizontalFlip()]
