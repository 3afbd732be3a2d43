"""EuroSAT RGB (Helber et al. 2019): 27,000 Sentinel-2 patches of 64x64 in 10 land-use classes."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from PIL import Image
from torch.utils.data import Dataset, Subset
from torchvision.datasets import EuroSAT, ImageFolder
from torchvision.transforms import v2

from litvision.data.base import ImageDataModule, first_per_class, stratified_split
from litvision.errors import DataNotFoundError

CLASSES = [
    "AnnualCrop", "Forest", "HerbaceousVegetation", "Highway", "Industrial",
    "Pasture", "PermanentCrop", "Residential", "River", "SeaLake",
]  # fmt: skip


class EuroSATDataModule(ImageDataModule):
    """EuroSAT from torchvision, or an extracted archive (``<data_dir>/<Class>/<Class>_<n>.jpg``,
    also found under ``2750/`` or ``eurosat/2750/``).

    EuroSAT has no official split: ``test_size`` of it is held out as a seeded stratified test
    split (seed ``split_seed``), and the validation split is carved from the rest. Augmentation is
    geometric only (flips): colour is what separates classes such as SeaLake and Forest (report 001).
    ``images_per_class`` keeps the first N images of each class by their number (``<Class>_<n>.jpg``)
    before the test split: a class-balanced subset, the same on every machine.
    """

    name = "EuroSAT"
    class_names = CLASSES
    input_shape = (3, 64, 64)
    mean = (0.3444, 0.3803, 0.4078)
    std = (0.2037, 0.1366, 0.1148)

    def __init__(
        self,
        data_dir: str | Path = "data",
        download: bool = True,
        test_size: int | float = 0.2,
        images_per_class: int | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(data_dir=data_dir, **kwargs)
        self.download = download
        self.test_size = test_size
        self.images_per_class = images_per_class

    def _image_root(self) -> Path | None:
        for candidate in (self.data_dir, self.data_dir / "2750", self.data_dir / "eurosat" / "2750"):
            if all((candidate / c).is_dir() for c in CLASSES):
                return candidate
        return None

    def prepare_data(self) -> None:
        if self._image_root() is not None:
            return
        self._download(
            lambda download: EuroSAT(self.data_dir, download=download),
            self.download,
            f"download EuroSAT.zip (the RGB version, https://github.com/phelber/EuroSAT) and extract "
            f"it into '{self.data_dir}' (one folder per class)",
        )

    def load_split(self, train: bool) -> tuple[Dataset, Sequence[int]]:
        root = self._image_root()
        if root is None:
            raise DataNotFoundError(
                f"EuroSAT class folders ({', '.join(CLASSES)}) not found in '{self.data_dir}'"
            )
        dataset: Dataset = ImageFolder(root, loader=_rgb, allow_empty=True)
        targets = dataset.targets
        if self.images_per_class is not None:
            numbers = [int(Path(path).stem.rsplit("_", 1)[-1]) for path, _ in dataset.samples]
            kept = first_per_class(targets, self.images_per_class, numbers)
            dataset, targets = Subset(dataset, kept), [targets[i] for i in kept]
        train_idx, test_idx = stratified_split(targets, self.test_size, self.split_seed)
        indices = train_idx if train else test_idx
        return Subset(dataset, indices), [targets[i] for i in indices]

    def augmentations(self) -> list[Callable]:
        return [v2.RandomHorizontalFlip(), v2.RandomVerticalFlip()]


def _rgb(path: str) -> Image.Image:
    with open(path, "rb") as f:
        return Image.open(f).convert("RGB")
