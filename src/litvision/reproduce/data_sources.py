"""Where a reproduction's data comes from: one argument, the same runs.

- ``download``: the datasets the configs name, downloaded by torchvision into ``data/``. At full scale
  the runs read them as the configs say; scaled down, a class-balanced subset of them is written once as
  an image folder, which the runs read instead.
- ``offline``: the copies kept beside the project in ``../shared/data`` (no internet): the CIFAR-10 JPEG
  copy, the MNIST test split (first 8,000 images to train, last 2,000 to test) and synthetic images laid
  out like EuroSAT, which is not available offline. Subsets as above.
- ``synthetic``: :class:`~litvision.data.SyntheticDataModule` images of each dataset's shape, for tests
  of the machinery on any machine; the numbers mean nothing.

Each run's data is swapped by ordinary command-line arguments (``--data=...ImageFolderDataModule
--data.data_dir=...``), recorded in the run's ``config.yaml``.
"""

from __future__ import annotations

import gzip
import shutil
import tarfile
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from litvision.errors import LitvisionError
from litvision.reproduce.plan import Scale, lookup

SOURCES = ("download", "offline", "synthetic")
FOLDER = "litvision.data.ImageFolderDataModule"
CIFAR10_CLASSES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
CIFAR10_MEAN, CIFAR10_STD = [0.4914, 0.4822, 0.4465], [0.2470, 0.2435, 0.2616]
MNIST_MEAN, MNIST_STD = [0.1307], [0.3081]
# The dataset of each datamodule class the reports' configs use, and its image shape.
DATASETS = {
    "litvision.data.CIFAR10DataModule": ("cifar10", (3, 32, 32)),
    "litvision.data.MNISTDataModule": ("mnist", (1, 28, 28)),
    "litvision.data.EuroSATDataModule": ("eurosat", (3, 64, 64)),
}
DESCRIPTIONS = {
    (
        "offline",
        "cifar10",
    ): "CIFAR-10 (JPEG copy, quality 75: somewhat below the original at the same recipe)",
    ("offline", "mnist"): "MNIST test split (first 8,000 images to train, last 2,000 to test)",
    (
        "offline",
        "eurosat",
    ): "synthetic EuroSAT-shaped images (64x64, 10 classes; EuroSAT is not available offline)",
    ("download", "cifar10"): "CIFAR-10",
    ("download", "mnist"): "MNIST",
    ("download", "eurosat"): "EuroSAT (RGB)",
}


@dataclass
class DataSource:
    """Prepares the data of each dataset once and gives every run the arguments that point at it."""

    name: str
    scale: Scale
    data_root: Path = Path("data")
    shared_dir: Path = Path("../shared/data")
    make: bool = True  # False: name the folders without making them (a dry run)
    prepared: dict[str, Path] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.name not in SOURCES:
            raise LitvisionError(f"data source '{self.name}' is not one of {list(SOURCES)}")
        if self.name == "synthetic" and not self.scale.scaled_down:
            raise LitvisionError("synthetic data needs a scaled-down --scale (quick or smoke), not full")
        if self.name == "offline" and not self.shared_dir.is_dir():
            raise LitvisionError(
                f"offline data not found: '{self.shared_dir}' does not exist; use --data-source download"
            )

    def describe(self, dataset: str) -> str:
        if self.name == "synthetic":
            return f"synthetic images shaped like {dataset} (SyntheticDataModule)"
        text = DESCRIPTIONS.get((self.name, dataset), dataset)
        sizes = self.scale.data.get(dataset)
        if self.scale.scaled_down and sizes:
            text += f", subset: {', '.join(f'{k} {v}' for k, v in sizes.items())}"
        return text

    def run_args(self, config: dict[str, Any]) -> tuple[list[str], str | None]:
        """Arguments that point a run of ``config`` at this source's data, and the dataset's name (None
        for a datamodule this source leaves alone, e.g. the digits)."""
        found, class_path = lookup(config, "data.class_path")
        if not found or class_path not in DATASETS:
            return [], None
        dataset, shape = DATASETS[class_path]
        args = self._pretrained_args(config)
        if self.name == "download" and not self.scale.scaled_down:
            return args, dataset
        sizes = self._sizes(dataset)
        if self.name == "synthetic":
            if dataset == "eurosat":
                total = 10 * sizes["images"]
                test = int(total * _fraction(config, "data.init_args.test_size", 0.2))
                train, test = total - test, test
            else:
                train, test = 10 * sizes["train"], 10 * sizes["test"]
            return [
                *args, "--data=litvision.data.SyntheticDataModule", f"--data.input_shape={list(shape)}",
                f"--data.train_size={train}", f"--data.test_size={test}",
                *([f"--data.val_size={sizes['val_size']}"] if "val_size" in sizes else []),
            ], dataset  # fmt: skip
        root = self.prepare(dataset)
        if dataset == "eurosat":
            return [*args, f"--data.data_dir={root}", "--data.download=false"], dataset
        val = [f"--data.val_size={sizes['val_size']}"] if "val_size" in sizes else []
        if dataset == "cifar10":
            return [
                *args, f"--data={FOLDER}", f"--data.data_dir={root}",
                f"--data.mean={CIFAR10_MEAN}", f"--data.std={CIFAR10_STD}", *val,
            ], dataset  # fmt: skip
        return [
            *args, f"--data={FOLDER}", f"--data.data_dir={root}", "--data.grayscale=true",
            "--data.augment=false", f"--data.mean={MNIST_MEAN}", f"--data.std={MNIST_STD}", *val,
        ], dataset  # fmt: skip

    def swap_data_section(self, config: dict[str, Any]) -> dict[str, Any]:
        """``config``'s ``data`` section pointed at this source's data, for configs that a tool reads
        rather than the CLI (the loss landscape's). Its own validation split is kept."""
        import inspect

        import yaml

        from litvision.data import ImageDataModule

        args, _ = self.run_args(config)
        class_path = config["data"]["class_path"]
        init_args = dict(config["data"].get("init_args") or {})
        swapped: dict[str, Any] = {}
        for arg in args:
            key, value = arg[2:].split("=", 1)
            if key == "data":
                class_path = value
            elif key.startswith("data.") and key != "data.val_size":
                swapped[key[5:]] = yaml.safe_load(value)
        if class_path != config["data"]["class_path"]:  # keep only what every datamodule takes
            shared = set(inspect.signature(ImageDataModule.__init__).parameters)
            init_args = {k: v for k, v in init_args.items() if k in shared}
        return {"class_path": class_path, "init_args": {**init_args, **swapped}}

    def replaces_pretrained(self, config: dict[str, Any]) -> bool:
        """Offline, ImageNet weights that are not in the torch hub cache cannot be had: random ones."""
        found, pretrained = lookup(config, "model.backbone.init_args.pretrained")
        return bool(found and pretrained and self.name != "download" and not weights_cached(config))

    def _pretrained_args(self, config: dict[str, Any]) -> list[str]:
        return ["--model.backbone.init_args.pretrained=false"] if self.replaces_pretrained(config) else []

    def _sizes(self, dataset: str) -> dict[str, Any]:
        sizes = self.scale.data.get(dataset)
        if self.scale.scaled_down and not sizes:
            raise LitvisionError(
                f"scale '{self.scale.name}' gives no subset sizes for {dataset} (data.{dataset})"
            )
        return sizes or {}

    def prepare(self, dataset: str) -> Path:
        """The folder this source's runs of ``dataset`` read, made once (atomically: a folder that exists
        is complete)."""
        if dataset in self.prepared:
            return self.prepared[dataset]
        sizes = self._sizes(dataset)
        tag = "-".join(f"{k}{v}" for k, v in sorted(sizes.items()) if k != "val_size") or "all"
        target = self.data_root / "reproduce" / f"{self.name}-{dataset}-{tag}"
        if not target.is_dir() and self.make:
            makers: dict[str, Callable[[Path, dict[str, Any]], None]] = {
                "cifar10": self._cifar10,
                "mnist": self._mnist,
                "eurosat": self._eurosat,
            }
            partial = target.with_name(target.name + ".partial")
            shutil.rmtree(partial, ignore_errors=True)
            try:
                makers[dataset](partial, sizes)
            except BaseException:
                shutil.rmtree(partial, ignore_errors=True)
                raise
            partial.rename(target)
        self.prepared[dataset] = target
        return target

    # --- CIFAR-10: an image folder train/<class>/*, test/<class>/* ---
    def _cifar10(self, out: Path, sizes: dict[str, Any]) -> None:
        if self.name == "offline":
            copy = self.data_root / "reproduce" / "offline-cifar10-jpeg"
            if not (copy / "test").is_dir():
                archive = self.shared_dir / "cifar10-jpeg.tar.xz"
                if not archive.is_file():
                    raise LitvisionError(f"offline CIFAR-10 copy '{archive}' not found")
                partial = copy.with_name(copy.name + ".partial")
                shutil.rmtree(partial, ignore_errors=True)
                partial.mkdir(parents=True)
                with tarfile.open(archive) as tar:
                    tar.extractall(partial, filter="data")
                (partial / "cifar10-jpeg").rename(copy)
                partial.rmdir()
            for split in ("train", "test"):
                for name in CIFAR10_CLASSES:
                    files = sorted((copy / split / name).glob("*.jpg"))
                    (out / split / name).mkdir(parents=True)
                    for f in files[: sizes.get(split)]:
                        shutil.copyfile(f, out / split / name / f.name)
            return
        from torchvision.datasets import CIFAR10

        for split in ("train", "test"):
            data = _download(CIFAR10, self.data_root, "CIFAR-10", train=split == "train")
            _write_folder(out / split, data.data, data.targets, CIFAR10_CLASSES, sizes.get(split))

    # --- MNIST: the same layout, grey PNGs ---
    def _mnist(self, out: Path, sizes: dict[str, Any]) -> None:
        classes = [str(d) for d in range(10)]
        if self.name == "offline":
            images_file = self.shared_dir / "mnist" / "t10k-images-idx3-ubyte.gz"
            labels_file = self.shared_dir / "mnist" / "t10k-labels-idx1-ubyte.gz"
            for f in (images_file, labels_file):
                if not f.is_file():
                    raise LitvisionError(f"offline MNIST file '{f}' not found")
            with gzip.open(images_file) as f:
                images = np.frombuffer(f.read(), np.uint8, offset=16).reshape(-1, 28, 28)
            with gzip.open(labels_file) as f:
                labels = np.frombuffer(f.read(), np.uint8, offset=8).astype(int)
            _write_folder(out / "train", images[:8000], labels[:8000], classes, sizes.get("train"))
            _write_folder(out / "test", images[8000:], labels[8000:], classes, sizes.get("test"))
            return
        from torchvision.datasets import MNIST

        for split in ("train", "test"):
            data = _download(MNIST, self.data_root, "MNIST", train=split == "train")
            _write_folder(out / split, data.data.numpy(), data.targets.tolist(), classes, sizes.get(split))

    # --- EuroSAT: <Class>/<Class>_<n>.jpg, as the real archive ---
    def _eurosat(self, out: Path, sizes: dict[str, Any]) -> None:

        per_class = sizes.get("images")
        if self.name == "offline":
            synthetic_eurosat(out, per_class or 300)
            return
        from torchvision.datasets import EuroSAT

        data = _download(EuroSAT, self.data_root, "EuroSAT")
        for c, name in enumerate(data.classes):  # the same class folders as the real archive
            files = sorted((Path(path) for path, label in data.samples if label == c), key=_number)
            (out / name).mkdir(parents=True)
            for f in files[:per_class]:
                shutil.copyfile(f, out / name / f.name)


def _number(path: Path) -> int:
    """The n of ``<Class>_<n>.jpg``, so that the first images are the same on every machine."""
    return int(path.stem.rsplit("_", 1)[1])


def _fraction(config: dict[str, Any], key: str, default: float) -> float:
    found, value = lookup(config, key)
    return float(value) if found and isinstance(value, float) and 0 < value < 1 else default


def _download(dataset_class: Callable[..., Any], root: Path, name: str, **kwargs: Any) -> Any:
    """A torchvision dataset, downloaded into ``root`` if it is not there yet."""
    try:
        return dataset_class(root, download=True, **kwargs)
    except Exception as err:  # network errors come in many types
        reason = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise LitvisionError(
            f"{name} could not be downloaded ({reason}); without internet use --data-source offline "
            "(needs ../shared/data) or synthetic"
        ) from None


def _write_folder(
    out: Path, images: Any, labels: Iterable[int], classes: list[str], per_class: int | None
) -> None:
    """The first ``per_class`` images of each class as PNGs in ``out/<class>/``."""
    from PIL import Image

    counts = dict.fromkeys(range(len(classes)), 0)
    for name in classes:
        (out / name).mkdir(parents=True, exist_ok=True)
    for i, (image, label) in enumerate(zip(images, labels)):
        label = int(label)
        if per_class is not None and counts[label] >= per_class:
            continue
        counts[label] += 1
        Image.fromarray(np.asarray(image)).save(out / classes[label] / f"{i:05d}.png")


def synthetic_eurosat(out: Path, per_class: int) -> None:
    """EuroSAT-shaped images: 64x64 JPEGs in ``<Class>/<Class>_<n>.jpg``, each class a colour and a stripe
    orientation plus noise, so that a model can learn something."""
    from PIL import Image

    from litvision.data.eurosat import CLASSES

    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:64, 0:64]
    for c, name in enumerate(CLASSES):
        (out / name).mkdir(parents=True, exist_ok=True)
        colour = rng.integers(40, 216, 3)
        stripes = np.sin((xx * np.cos(c) + yy * np.sin(c)) / 3.0)[..., None] * 30
        for n in range(per_class):
            pixels = colour + stripes + rng.normal(0, 25, (64, 64, 3))
            Image.fromarray(pixels.clip(0, 255).astype(np.uint8)).save(out / name / f"{name}_{n}.jpg")


def weights_cached(config: dict[str, Any]) -> bool:
    """Whether the ImageNet weights a config's backbone asks for are in the torch hub cache."""
    import torch
    import torchvision

    found, init_args = lookup(config, "model.backbone.init_args")
    _, class_path = lookup(config, "model.backbone.class_path")
    name = init_args.get("name") if found else None
    if class_path == "litvision.models.VGG":
        name = f"vgg{init_args.get('depth', 16)}{'_bn' if init_args.get('batch_norm') else ''}"
    elif class_path == "litvision.models.DenseNet":
        name = f"densenet{init_args.get('depth', 121)}"
    if not name:
        return False
    try:
        url = torchvision.models.get_model_weights(name).DEFAULT.url
    except (ValueError, KeyError):
        return False
    return (Path(torch.hub.get_dir()) / "checkpoints" / Path(url).name).is_file()
