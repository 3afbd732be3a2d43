"""MNIST (LeCun et al. 1998): 60,000 training and 10,000 test handwritten digits, 28x28 grey."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from torch.utils.data import Dataset
from torchvision.datasets import MNIST

from litvision.data.base import ImageDataModule


class MNISTDataModule(ImageDataModule):
    """MNIST from torchvision; no augmentation (report 002 used none)."""

    name = "MNIST"
    class_names = [str(d) for d in range(10)]
    input_shape = (1, 28, 28)
    mean = (0.1307,)
    std = (0.3081,)

    def __init__(self, data_dir: str | Path = "data", download: bool = True, **kwargs) -> None:
        super().__init__(data_dir=data_dir, **kwargs)
        self.download = download

    def prepare_data(self) -> None:
        for train in (True, False):
            self._download(
                lambda download, train=train: MNIST(self.data_dir, train=train, download=download),
                self.download,
                f"place the four MNIST *-ubyte.gz files from {MNIST.mirrors[0]} in "
                f"'{self.data_dir / 'MNIST' / 'raw'}'",
            )

    def load_split(self, train: bool) -> tuple[Dataset, Sequence[int]]:
        dataset = MNIST(self.data_dir, train=train)
        return dataset, dataset.targets.tolist()
