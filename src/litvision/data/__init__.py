"""LightningDataModules: one small module per dataset on top of :class:`ImageDataModule`."""

from litvision.data.base import ImageDataModule
from litvision.data.cifar import CIFAR10DataModule
from litvision.data.digits import DigitsDataModule
from litvision.data.eurosat import EuroSATDataModule
from litvision.data.folder import ImageFolderDataModule
from litvision.data.imbalance import LongTailImbalance, StepImbalance
from litvision.data.mnist import MNISTDataModule
from litvision.data.synthetic import SyntheticDataModule

__all__ = [
    "CIFAR10DataModule",
    "DigitsDataModule",
    "EuroSATDataModule",
    "ImageDataModule",
    "ImageFolderDataModule",
    "LongTailImbalance",
    "MNISTDataModule",
    "StepImbalance",
    "SyntheticDataModule",
]
