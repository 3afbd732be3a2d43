"""Where a reproduction's data comes from: one argument, the same runs.

- ``download``: the datasets the configs name, downloaded by torchvision into ``data/``. At full scale
  the runs read them as the configs say; scaled down, a class-balanced subset of them is written once as
  an image folder, which the runs read instead.
- ``offline``: the real data sets kept beside the project in ``../shared/data`` (no internet): the
  CIFAR-10 JPEG copy (read as an image folder), the full MNIST (its official files, read by
  :class:`~litvision.data.MNISTDataModule`) and EuroSAT RGB (all 27,000 images, read by
  :class:`~litvision.data.EuroSATDataModule`). A scale that gives subset sizes for a dataset reads the
  first images of each class of the real training and test sets instead, written once as an image folder.
- ``synthetic``: :class:`~litvision.data.SyntheticDataModule` images of each dataset's shape, for tests
  of the machinery on any machine; the numbers mean nothing.

Each run's data is swapped by ordinary command-line arguments (``--data=...ImageFolderDataModule
--data.data_dir=...``), recorded in the run's ``config.yaml``.
"""

from __future__ import annotations

import gzip
import os
import shutil
import tarfile
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from litvision.data import CIFAR10DataModule, MNISTDataModule
from litvision.errors import LitvisionError
from litvision.reproduce.plan import Scale, lookup
from litvision.utils import import_object

SOURCES = ("download", "offline", "synthetic")
FOLDER = "litvision.data.ImageFolderDataModule"
# Dataset facts come from the datamodules: the image folders made here stand in for their datasets.
CIFAR10_CLASSES = CIFAR10DataModule.class_names
CIFAR10_MEAN, CIFAR10_STD = list(CIFAR10DataModule.mean), list(CIFAR10DataModule.std)
MNIST_MEAN, MNIST_STD = list(MNISTDataModule.mean), list(MNISTDataModule.std)
# The offline archives in ../shared/data, and the folder each holds.
ARCHIVES = {"cifar10": ("cifar10-jpeg.tar.xz", "cifar10-jpeg"), "eurosat": ("eurosat-rgb.tar.xz", "eurosat")}
MNIST_FILES = [f"{p}-{k}" for p in ("train", "t10k") for k in ("images-idx3-ubyte", "labels-idx1-ubyte")]
# The dataset of each datamodule class the reports' configs use, and its image shape.
DATASETS = {
    "litvision.data.CIFAR10DataModule": ("cifar10", (3, 32, 32)),
    "litvision.data.MNISTDataModule": ("mnist", (1, 28, 28)),
    "litvision.data.EuroSATDataModule": ("eurosat", (3, 64, 64)),
}
DESCRIPTIONS = {
    ("offline", "cifar10"): "CIFAR-10 (JPEG copy, quality 75: somewhat below the original)",
    ("offline", "mnist"): "MNIST (the official files: 60,000 training and 10,000 test images)",
    ("offline", "eurosat"): "EuroSAT RGB (all 27,000 images; seeded stratified test split)",
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
        sizes = {k: v for k, v in self.scale.data.get(dataset, {}).items() if k != "val_size"}
        if sizes:
            text += f", subset per class: {', '.join(f'{k} {v}' for k, v in sizes.items())}"
        return text

    def run_args(self, config: dict[str, Any]) -> tuple[list[str], str | None]:
        """Arguments that point a run of ``config`` at this source's data, and the dataset's name (None
        for a datamodule this source leaves alone, e.g. the digits)."""
        found, class_path = lookup(config, "data.class_path")
        if not found or class_path not in DATASETS:
            return [], None
        dataset, shape = DATASETS[class_path]
        args = self._pretrained_args(config)
        sizes = self.scale.data.get(dataset) or {}
        val = [f"--data.val_size={sizes['val_size']}"] if "val_size" in sizes else []
        subset = any(k != "val_size" for k in sizes)
        if self.name == "synthetic":
            if not subset:
                raise LitvisionError(
                    f"scale '{self.scale.name}' gives no subset sizes for {dataset} (data.{dataset}), "
                    "which synthetic data needs"
                )
            if dataset == "eurosat":
                total = 10 * sizes["images"]
                test = int(total * _fraction(config, "data.init_args.test_size", 0.2))
                train, test = total - test, test
            else:
                train, test = 10 * sizes["train"], 10 * sizes["test"]
            return [
                *args, "--data=litvision.data.SyntheticDataModule", f"--data.input_shape={list(shape)}",
                f"--data.train_size={train}", f"--data.test_size={test}", *val,
            ], dataset  # fmt: skip
        if self.name == "download" and not subset:
            return [*args, *val], dataset
        root = self.prepare(dataset)
        if dataset == "eurosat" or (dataset == "mnist" and not subset):  # the dataset's own datamodule
            return [*args, f"--data.data_dir={root}", "--data.download=false", *val], dataset
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
        """Images per class of the subset this scale reads (empty: the whole dataset)."""
        return {k: v for k, v in (self.scale.data.get(dataset) or {}).items() if k != "val_size"}

    def prepare(self, dataset: str) -> Path:
        """The folder this source's runs of ``dataset`` read, made once (atomically: a folder that exists
        is complete)."""
        if dataset in self.prepared:
            return self.prepared[dataset]
        sizes = self._sizes(dataset)
        if self.name == "offline" and not sizes and dataset in ARCHIVES:  # the archive as it is, extracted
            archive, folder = ARCHIVES[dataset]
            root = self.data_root / "reproduce" / f"offline-{folder}"
            self.prepared[dataset] = self._extract(archive, folder) if self.make else root
            return self.prepared[dataset]
        tag = "-".join(f"{k}{v}" for k, v in sorted(sizes.items())) or "all"
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
            copy = self._extract(*ARCHIVES["cifar10"])
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
            files = {name: self.shared_dir / "mnist" / f"{name}.gz" for name in MNIST_FILES}
            for f in files.values():
                if not f.is_file():
                    raise LitvisionError(f"offline MNIST file '{f}' not found")
            if not sizes:  # the official files, unpacked where torchvision's MNIST reads them
                (out / "MNIST" / "raw").mkdir(parents=True)
                for name, f in files.items():
                    with gzip.open(f) as packed:
                        (out / "MNIST" / "raw" / name).write_bytes(packed.read())
                return
            for split, prefix in (("train", "train"), ("test", "t10k")):
                with gzip.open(files[f"{prefix}-images-idx3-ubyte"]) as f:
                    images = np.frombuffer(f.read(), np.uint8, offset=16).reshape(-1, 28, 28)
                with gzip.open(files[f"{prefix}-labels-idx1-ubyte"]) as f:
                    labels = np.frombuffer(f.read(), np.uint8, offset=8).astype(int)
                _write_folder(out / split, images, labels, classes, sizes.get(split))
            return
        from torchvision.datasets import MNIST

        for split in ("train", "test"):
            data = _download(MNIST, self.data_root, "MNIST", train=split == "train")
            _write_folder(out / split, data.data.numpy(), data.targets.tolist(), classes, sizes.get(split))

    # --- EuroSAT: <Class>/<Class>_<n>.jpg, as the real archive ---
    def _eurosat(self, out: Path, sizes: dict[str, Any]) -> None:

        from litvision.data.eurosat import CLASSES

        per_class = sizes.get("images")
        if self.name == "offline":
            images = self._extract(*ARCHIVES["eurosat"]) / "2750"
        else:
            from torchvision.datasets import EuroSAT

            images = Path(_download(EuroSAT, self.data_root, "EuroSAT").root)
        for name in CLASSES:  # the first images of each class, by number, on every machine
            files = sorted((images / name).glob("*.jpg"), key=_number)
            (out / name).mkdir(parents=True)
            for f in files[:per_class]:
                os.link(f, out / name / f.name)

    def _extract(self, archive_name: str, folder: str) -> Path:
        """The folder ``folder`` of an offline archive, extracted once into the data root."""
        copy = self.data_root / "reproduce" / f"offline-{folder}"
        if copy.is_dir():
            return copy
        archive = self.shared_dir / archive_name
        if not archive.is_file():
            raise LitvisionError(f"offline archive '{archive}' not found")
        partial = copy.with_name(copy.name + ".partial")
        shutil.rmtree(partial, ignore_errors=True)
        partial.mkdir(parents=True)
        with tarfile.open(archive) as tar:
            tar.extractall(partial, filter="data")
        (partial / folder).rename(copy)
        shutil.rmtree(partial)
        return copy


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


def weights_cached(config: dict[str, Any]) -> bool:
    """Whether the ImageNet weights a config's backbone asks for are in the torch hub cache: the backbone
    is built without weights, on the meta device (no memory), and says which weights it would load."""
    import torch
    import torchvision

    found, backbone = lookup(config, "model.backbone")
    _, data = lookup(config, "data.class_path")
    if not found or not isinstance(backbone, dict) or data not in DATASETS:
        return False
    init_args = {**(backbone.get("init_args") or {}), "pretrained": False}
    try:
        with torch.device("meta"):
            net = import_object(backbone["class_path"])(10, DATASETS[data][1], **init_args)
        url = torchvision.models.get_model_weights(net.pretrained_name).DEFAULT.url
    except Exception:  # no such weights, or a backbone that cannot say
        return False
    return (Path(torch.hub.get_dir()) / "checkpoints" / Path(url).name).is_file()
