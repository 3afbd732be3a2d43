"""Image files on disk: which files count as images, and a folder of unlabelled ones to predict on."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from PIL import Image
from torch.utils.data import Dataset
from torchvision.datasets.folder import IMG_EXTENSIONS

from litvision.errors import DataNotFoundError, LitvisionError

NO_LABEL = -1  # the target of an image that has none (a folder to predict on)


def is_hidden(path: str | Path, root: str | Path | None = None) -> bool:
    """Whether ``path`` or one of its folders below ``root`` starts with a dot (``.DS_Store``, macOS's
    ``._name.jpg`` copies, ``.ipynb_checkpoints/``, litvision's own decoded-image caches)."""
    parts = Path(path).relative_to(root).parts if root is not None else (Path(path).name,)
    return any(part.startswith(".") for part in parts)


def is_image_file(path: str | Path) -> bool:
    """A file name with one of torchvision's image extensions (any case)."""
    return str(path).lower().endswith(IMG_EXTENSIONS)


def find_images(root: Path) -> list[Path]:
    """Every image file under ``root``, at any depth, in sorted order; hidden files and folders and
    other files are left out."""
    return sorted(p for p in root.rglob("*") if p.is_file() and not is_hidden(p, root) and is_image_file(p))


def open_image(path: str | Path, mode: str) -> Image.Image:
    """The image at ``path`` in PIL ``mode`` ("RGB" or "L"); a one-line error if it cannot be read."""
    try:
        with open(path, "rb") as f:
            return Image.open(f).convert(mode)
    except (OSError, SyntaxError, ValueError) as err:  # PIL's ways of saying "not a readable image"
        reason = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise LitvisionError(
            f"image '{path}' cannot be read ({reason}); "
            "repair or remove it, or set data.skip_corrupt: true to leave unreadable images out"
        ) from None


class UnlabelledImages(Dataset):
    """The image files under ``root`` (any layout, nested or flat), with target :data:`NO_LABEL`."""

    def __init__(self, root: str | Path, mode: str = "RGB", transform: Callable | None = None) -> None:
        self.root = Path(root)
        if not self.root.is_dir():
            raise DataNotFoundError(f"predict_dir '{self.root}' is not a folder")
        self.files = [str(p) for p in find_images(self.root)]
        if not self.files:
            raise DataNotFoundError(
                f"predict_dir '{self.root}' holds no image files ({', '.join(IMG_EXTENSIONS)})"
            )
        self.mode = mode
        self.transform = transform

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, index: int) -> tuple[object, int]:
        image = open_image(self.files[index], self.mode)
        return (self.transform(image) if self.transform is not None else image), NO_LABEL
