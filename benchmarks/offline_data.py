"""Real data kept beside the project in ../shared/data (this machine has no internet), laid out for
litvision's datamodules under .offline/. Benchmarks use it; the test suite never does."""

from __future__ import annotations

import gzip
import sys
import tarfile
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data"
OFFLINE = ROOT / ".offline"

CIFAR10_MEAN = (0.4914, 0.4822, 0.4465)
CIFAR10_STD = (0.2470, 0.2435, 0.2616)
MNIST_MEAN = (0.1307,)
MNIST_STD = (0.3081,)


def _require(path: Path) -> Path:
    if not path.exists():
        sys.exit(f"skipped: {path} not found (the offline copies of real data live in ../shared/data)")
    return path


def cifar10_jpeg() -> Path:
    """The CIFAR-10 JPEG copy as ``train/<class>/*.jpg`` and ``test/<class>/*.jpg``."""
    root = OFFLINE / "cifar10-jpeg"
    if not (root / "test").is_dir():
        root.parent.mkdir(parents=True, exist_ok=True)
        with tarfile.open(_require(SHARED / "cifar10-jpeg.tar.xz")) as tar:
            tar.extractall(root.parent, filter="data")
    return root


def mnist_test_split_folder(train: int = 8000) -> Path:
    """The MNIST test split (the only MNIST split kept offline) as an image folder: its first ``train``
    images for training, the rest for testing."""
    root = OFFLINE / f"mnist-{train}"
    if (root / "test").is_dir():
        return root
    with gzip.open(_require(SHARED / "mnist" / "t10k-images-idx3-ubyte.gz")) as f:
        images = np.frombuffer(f.read(), np.uint8, offset=16).reshape(-1, 28, 28)
    with gzip.open(SHARED / "mnist" / "t10k-labels-idx1-ubyte.gz") as f:
        labels = np.frombuffer(f.read(), np.uint8, offset=8)
    for i, (image, label) in enumerate(zip(images, labels)):
        folder = root / ("train" if i < train else "test") / str(label)
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(image).save(folder / f"{i:05d}.png")
    return root


def synthetic_eurosat(per_class: int = 60) -> Path:
    """EuroSAT-shaped data (not available offline): 64x64 JPEGs in ``<Class>/<Class>_<n>.jpg``, each class
    a colour and a stripe orientation plus noise, so that a model can learn something."""
    from litvision.data.eurosat import CLASSES

    root = OFFLINE / f"eurosat-synthetic-{per_class}"
    if root.is_dir():
        return root
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:64, 0:64]
    for c, name in enumerate(CLASSES):
        (root / name).mkdir(parents=True, exist_ok=True)
        colour = rng.integers(40, 216, 3)
        stripes = np.sin((xx * np.cos(c) + yy * np.sin(c)) / 3.0)[..., None] * 30
        for n in range(per_class):
            pixels = colour + stripes + rng.normal(0, 25, (64, 64, 3))
            Image.fromarray(pixels.clip(0, 255).astype(np.uint8)).save(root / name / f"{name}_{n}.jpg")
    return root


def eurosat_rgb(every: int = 1) -> Path:
    """The real EuroSAT RGB images as they come, one flat folder per class (``<Class>/<Class>_<n>.jpg``);
    with ``every`` > 1, every ``every``-th image of each class (by file number): a subset in which the
    classes keep their proportions (2,000 to 3,000 images each in the whole set)."""
    root = OFFLINE / f"eurosat-rgb-every-{every}"
    if root.is_dir():
        return root
    with tarfile.open(_require(SHARED / "eurosat-rgb.tar.xz")) as tar:
        for member in tar:
            parts = Path(member.name).parts
            if not member.isfile() or len(parts) < 2 or not parts[-1].lower().endswith(".jpg"):
                continue
            if int(Path(parts[-1]).stem.rsplit("_", 1)[-1]) % every:
                continue
            target = root / parts[-2] / parts[-1]
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(tar.extractfile(member).read())
    return root
