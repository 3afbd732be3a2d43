"""CIFAR-10 (Krizhevsky 2009): 50,000 training and 10,000 test images, 32x32 RGB."""

from __future__ import annotations

from collections.abc import Callable

from torchvision.datasets import CIFAR10
from torchvision.transforms import v2

from litvision.data.base import TorchvisionDataModule


class CIFAR10DataModule(TorchvisionDataModule):
    """CIFAR-10 from torchvision, with the reports' augmentation: random crop 32 with padding 4 and a
    horizontal flip, normalized with the training set's own channel statistics."""

    name = "CIFAR-10"
    dataset_class = CIFAR10
    class_names = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
    input_shape = (3, 32, 32)
    mean = (0.4914, 0.4822, 0.4465)
    std = (0.2470, 0.2435, 0.2616)

    def how_to_supply(self) -> str:
        return (
            f"get {CIFAR10.url} and extract it into '{self.data_dir}' "
            f"(giving '{self.data_dir / CIFAR10.base_folder}')"
        )

    def augmentations(self) -> list[Callable]:
        return [v2.RandomCrop(32, padding=4), v2.RandomHorizontalFlip()]
