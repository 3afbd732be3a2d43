"""MNIST (LeCun et al. 1998): 60,000 training and 10,000 test handwritten digits, 28x28 grey."""

from __future__ import annotations

from torchvision.datasets import MNIST

from litvision.data.base import TorchvisionDataModule


class MNISTDataModule(TorchvisionDataModule):
    """MNIST from torchvision; no augmentation (report 002 used none)."""

    name = "MNIST"
    dataset_class = MNIST
    class_names = [str(d) for d in range(10)]
    input_shape = (1, 28, 28)
    mean = (0.1307,)
    std = (0.3081,)

    def how_to_supply(self) -> str:
        raw = self.data_dir / "MNIST" / "raw"
        return f"place the four MNIST *-ubyte.gz files from {MNIST.mirrors[0]} in '{raw}'"
