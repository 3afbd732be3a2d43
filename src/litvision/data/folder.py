"""The user's own images, in any of the usual folder layouts."""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from pathlib import Path

from lightning.pytorch.utilities import rank_zero_warn
from PIL import Image
from torch.utils.data import Dataset, Subset
from torchvision.datasets import ImageFolder
from torchvision.transforms import v2

from litvision.data.base import ImageDataModule, check_split_size, stratified_split
from litvision.data.files import is_hidden, is_image_file, open_image
from litvision.errors import DataNotFoundError, LitvisionError

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
# Images larger than this (a side, in pixels) are resized to PHOTO_SIZE unless image_size says otherwise.
LARGEST_KEPT_SIZE = 256
PHOTO_SIZE = 224


class _VisibleImageFolder(ImageFolder):
    """torchvision's ``ImageFolder`` minus hidden class folders, hidden files and non-image files."""

    def __init__(self, root: Path, loader: Callable[[str], Image.Image]) -> None:
        super().__init__(
            str(root), loader=loader, is_valid_file=lambda p: is_image_file(p) and not is_hidden(p, root),
            allow_empty=True,
        )  # fmt: skip

    def find_classes(self, directory: str) -> tuple[list[str], dict[str, int]]:
        classes = class_folders(Path(directory))
        return classes, {name: i for i, name in enumerate(classes)}


def class_folders(root: Path) -> list[str]:
    """The names of the visible sub-folders of ``root``, sorted: its classes."""
    return sorted(e.name for e in root.iterdir() if e.is_dir() and not is_hidden(e))


class ImageFolderDataModule(ImageDataModule):
    """Any folder of images, in one of three layouts:

    - ``root/train/<class>/*`` and ``root/test/<class>/*``: the test split is ``test/``;
    - ``root/train/<class>/*`` alone, or ``root/<class>/*`` alone (EuroSAT's layout, and that of most
      downloaded data sets): ``test_size`` of the images is held out as a seeded stratified test split
      (seed ``split_seed``), and the validation split is carved from the rest.

    Class names are the sub-folder names, in sorted order (torchvision's ``ImageFolder``). Images may
    sit at any depth under their class folder; hidden files and folders (``.DS_Store``,
    ``.ipynb_checkpoints``) and files without an image extension are skipped. A class folder without
    images, and test classes that are not training classes, stop the run with their names.

    Augmentation is a random crop with 1/8 padding and a horizontal flip, as for CIFAR-10, unless
    ``policy`` gives another. The other options are :class:`ImageDataModule`'s.

    Args:
        data_dir: the folder of images, in one of the layouts above.
        image_size: resize every image to this side (a square). By default images keep their size if
            the first is at most 256 pixels a side (then every image must have its size), and photos
            larger than that are resized to 224, the size ImageNet models are trained at.
        grayscale: read the images as grey (one channel) instead of RGB.
        mean: per-channel mean that normalises the images (ImageNet's by default).
        std: per-channel standard deviation that normalises the images (ImageNet's by default).
        skip_corrupt: check every image at setup and leave the unreadable ones out, with a warning that
            lists them; by default an unreadable image stops the run with its path.
        test_size: fraction (in [0, 1)) or number of images held out per class as the test split when
            there is no ``test/`` folder, fixed by ``split_seed``.
    """

    name = "image folder"
    shows_data_dir = True

    def __init__(
        self,
        data_dir: str | Path = "data/images",
        image_size: int | None = None,
        grayscale: bool = False,
        mean: Sequence[float] = IMAGENET_MEAN,
        std: Sequence[float] = IMAGENET_STD,
        skip_corrupt: bool = False,
        test_size: int | float = 0.2,
        **kwargs,
    ) -> None:
        super().__init__(data_dir=data_dir, **kwargs)
        self.skip_corrupt = skip_corrupt
        self.grayscale = grayscale
        check_split_size(test_size, "test_size")
        self.test_size = test_size
        channels = 1 if grayscale else 3
        self.mean = tuple(mean)[:channels] if grayscale else tuple(mean)
        self.std = tuple(std)[:channels] if grayscale else tuple(std)
        if len(self.mean) != channels or len(self.std) != channels:
            raise LitvisionError(f"mean={list(mean)} and std={list(std)} need {channels} values each")
        self.train_root, self.test_root = self._layout()
        # Scanned now, so that a bad layout stops the run before anything is written.
        self._folders = {"train": self._scan(self.train_root)}
        self.class_names = self._folders["train"].classes
        if len(self.class_names) < 2:
            raise LitvisionError(
                f"'{self.train_root}' holds one class folder ('{self.class_names[0]}'): a classifier needs "
                f"at least 2 classes, each in its own sub-folder ('{self.train_root}/<class>/')"
            )
        if self.test_root is not None:
            self._folders["test"] = self._scan(self.test_root)
            unknown = sorted(set(self._folders["test"].classes) - set(self.class_names))
            if unknown:
                raise LitvisionError(
                    f"'{self.test_root}' has classes {unknown} that '{self.train_root}' does not have: "
                    f"test classes must be training classes ({', '.join(self.class_names)})"
                )
        self._checked: set[str] = set()
        if image_size is None:
            width, height = Image.open(self._folders["train"].samples[0][0]).size
            if max(width, height) > LARGEST_KEPT_SIZE:  # photos: resized, as for ImageNet models
                image_size = PHOTO_SIZE
        self.image_size = image_size
        size = (image_size, image_size) if image_size is not None else (height, width)
        self.input_shape = (channels, *size)

    def _layout(self) -> tuple[Path, Path | None]:
        """The training folder and the test folder (None: the test split is held out of training)."""
        root = self.data_dir
        if not root.is_dir():
            raise DataNotFoundError(
                f"image folder '{root}' not found: lay out your images as '{root}/<class>/*.jpg', or as "
                f"'{root}/train/<class>/*.jpg' with an optional '{root}/test/<class>/*.jpg'"
            )
        if (root / "train").is_dir():
            return root / "train", root / "test" if (root / "test").is_dir() else None
        if (root / "test").is_dir():
            raise DataNotFoundError(f"'{root}' has a 'test' folder but no 'train' folder beside it")
        return root, None

    def _scan(self, root: Path) -> ImageFolder:
        if not class_folders(root):
            raise DataNotFoundError(
                f"'{root}' has no class sub-folders: put each class's images in '{root}/<class>/'"
            )
        folder = _VisibleImageFolder(root, self._image_reader)
        counts = dict.fromkeys(folder.classes, 0)
        for _, target in folder.samples:
            counts[folder.classes[target]] += 1
        empty = [name for name, n in counts.items() if n == 0]
        if empty:
            raise DataNotFoundError(
                f"class folder(s) {empty} of '{root}' hold no image files (.jpg, .png, ...): add images "
                "or remove the folder(s)"
            )
        return folder

    def _readable_folder(self, split: str) -> ImageFolder:
        """The split's folder, with unreadable images left out when ``skip_corrupt`` (checked once)."""
        folder = self._folders[split]
        if self.skip_corrupt and split not in self._checked:  # decode every image now, not mid-epoch
            self._checked.add(split)
            bad = {path for path, _ in folder.samples if not self._readable(path)}
            if bad:
                listed = ", ".join(sorted(bad)[:5])
                rank_zero_warn(f"left out {len(bad)} unreadable image(s) of '{folder.root}': {listed}")
                folder.samples = [s for s in folder.samples if s[0] not in bad]
                folder.targets = [t for _, t in folder.samples]
                folder.imgs = folder.samples
        return folder

    def load_split(self, train: bool) -> tuple[Dataset, Sequence[int]]:
        if self.test_root is None:  # one folder: a seeded stratified test split is held out of it
            folder = self._readable_folder("train")
            kept, held = stratified_split(folder.targets, self.test_size, self.split_seed)
            indices = kept if train else held
            return Subset(folder, indices.tolist()), [folder.targets[i] for i in indices]
        folder = self._readable_folder("train" if train else "test")
        # Map the split's own class indices onto the training classes, so that a test folder that
        # lacks a class still gets the right labels.
        remap = [self.class_names.index(c) for c in folder.classes]
        folder.target_transform = remap.__getitem__
        return folder, [remap[t] for t in folder.targets]

    @property
    def _image_reader(self) -> Callable[[str], Image.Image]:
        """Reads an image file: a function of the path alone, not a method, so that the datasets pickle
        without this module and its trainer (loader workers started by spawn or forkserver)."""
        return functools.partial(open_image, mode="L" if self.grayscale else "RGB")

    def _readable(self, path: str) -> bool:
        try:
            self._image_reader(path)
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
