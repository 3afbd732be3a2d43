"""The user's own images: ``root/train/<class>/*`` and ``root/test/<class>/*``."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

from lightning.pytorch.utilities import rank_zero_warn
from PIL import Image
from torch.utils.data import Dataset
from torchvision.datasets import ImageFolder
from torchvision.datasets.folder import IMG_EXTENSIONS
from torchvision.transforms import v2

from litvision.data.base import ImageDataModule
from litvision.errors import DataNotFoundError, LitvisionError

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def _first_image(folder: Path) -> Path | None:
    for path in sorted(folder.rglob("*")):
        if path.suffix.lower() in IMG_EXTENSIONS:
            return path
    return None


class ImageFolderDataModule(ImageDataModule):
    """Any folder of images laid out as ``root/train/<class>/*`` and ``root/test/<class>/*``.

    Class names are the sub-folder names of ``train/``, in sorted order (torchvision's
    ``ImageFolder``). Images are converted to RGB (or to grey with ``grayscale``) and, if
    ``image_size`` is given, resized to it; otherwise every image must have the size of the first.
    An unreadable image stops the run with its path; ``skip_corrupt`` checks every image at setup
    instead and leaves the unreadable ones out, with a warning that lists them.
    Augmentation is a random crop with 1/8 padding and a horizontal flip, as for CIFAR-10.
    """

    name = "image folder"

    def __init__(
        self,
        data_dir: str | Path = "data/images",
        image_size: int | None = None,
        grayscale: bool = False,
        mean: Sequence[float] = IMAGENET_MEAN,
        std: Sequence[float] = IMAGENET_STD,
        skip_corrupt: bool = False,
        **kwargs,
    ) -> None:
        super().__init__(data_dir=data_dir, **kwargs)
        self.skip_corrupt = skip_corrupt
        self.image_size = image_size
        self.grayscale = grayscale
        channels = 1 if grayscale else 3
        self.mean = tuple(mean)[:channels] if grayscale else tuple(mean)
        self.std = tuple(std)[:channels] if grayscale else tuple(std)
        if len(self.mean) != channels or len(self.std) != channels:
            raise LitvisionError(f"mean={list(mean)} and std={list(std)} need {channels} values each")
        self.class_names = self._scan_classes()
        if image_size is not None:
            size = (image_size, image_size)
        else:
            first = _first_image(self.data_dir / "train")
            if first is None:
                raise DataNotFoundError(f"no images found under '{self.data_dir / 'train'}'")
            width, height = Image.open(first).size
            size = (height, width)
        self.input_shape = (channels, *size)

    def _scan_classes(self) -> list[str]:
        for split in ("train", "test"):
            if not (self.data_dir / split).is_dir():
                raise DataNotFoundError(
                    f"image folder '{self.data_dir / split}' not found: lay out your images as "
                    f"'{self.data_dir}/train/<class>/*.jpg' and '{self.data_dir}/test/<class>/*.jpg'"
                )
        classes = sorted(p.name for p in (self.data_dir / "train").iterdir() if p.is_dir())
        if not classes:
            raise DataNotFoundError(f"'{self.data_dir / 'train'}' has no class sub-folders")
        return classes

    def load_split(self, train: bool) -> tuple[Dataset, Sequence[int]]:
        folder = self.data_dir / ("train" if train else "test")
        try:
            dataset = ImageFolder(folder, loader=self._load_image, allow_empty=True)
        except FileNotFoundError as err:
            raise DataNotFoundError(f"'{folder}': {err}") from None
        unknown = sorted(set(dataset.classes) - set(self.class_names))
        if unknown:
            raise LitvisionError(f"'{folder}' has classes {unknown} that 'train/' does not have")
        if self.skip_corrupt:  # decode every image once now, rather than fail mid-epoch
            bad = [path for path, _ in dataset.samples if not self._readable(path)]
            if bad:
                rank_zero_warn(f"left out {len(bad)} unreadable image(s) of '{folder}': {', '.join(bad[:5])}")
                dataset.samples = [s for s in dataset.samples if s[0] not in set(bad)]
                dataset.targets = [t for _, t in dataset.samples]
                dataset.imgs = dataset.samples
        # Map the split's own class indices onto the training classes, so a test folder that lacks a
        # class still gets the right labels.
        remap = [self.class_names.index(c) for c in dataset.classes]
        dataset.target_transform = remap.__getitem__
        return dataset, [remap[t] for t in dataset.targets]

    def _load_image(self, path: str) -> Image.Image:
        try:
            with open(path, "rb") as f:
                return Image.open(f).convert("L" if self.grayscale else "RGB")
        except (OSError, SyntaxError, ValueError) as err:  # PIL's ways of saying "not a readable image"
            reason = str(err).splitlines()[0] if str(err) else type(err).__name__
            raise LitvisionError(
                f"image '{path}' cannot be read ({reason}); "
                "repair or remove it, or set data.skip_corrupt: true to leave unreadable images out"
            ) from None

    def _readable(self, path: str) -> bool:
        try:
            self._load_image(path)
        except LitvisionError:
            return False
        return True

    def preprocessing(self) -> list[Callable]:
        if self.image_size is None:
            return []
        return [v2.Resize((self.image_size, self.image_size), antialias=True)]

    def augmentations(self) -> list[Callable]:
        size = self.input_shape[1:]
        return [v2.RandomCrop(size, padding=max(1, size[0] // 8)), v2.RandomHorizontalFlip()]
