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
import inspect
import os
import shutil
import tarfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from litvision.data import CIFAR10DataModule, ImageDataModule, MNISTDataModule
from litvision.data.eurosat import CLASSES as EUROSAT_CLASSES
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
NAMES = {"cifar10": "CIFAR-10", "mnist": "MNIST", "eurosat": "EuroSAT (RGB)"}
OFFLINE = {  # what the offline copies hold
    "cifar10": "CIFAR-10 (JPEG copy, quality 75: somewhat below the original)",
    "mnist": "MNIST (the official files: 60,000 training and 10,000 test images)",
    "eurosat": "EuroSAT RGB (all 27,000 images; seeded stratified test split)",
}


@dataclass
class DataSource:
    """Prepares the data of each dataset once and gives every run the arguments that point at it."""

    name: str
    scale: Scale
    data_root: Path = Path("data")
    shared_dir: Path = Path("../shared/data")
    make: bool = True  # False: name the folders without making them (a dry run)

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
        text = (OFFLINE if self.name == "offline" else NAMES).get(dataset, dataset)
        subset = ", ".join(f"{k} {v}" for k, v in self._sizes(dataset).items())
        return f"{text}, subset per class: {subset}" if subset else text

    def run_args(self, config: dict[str, Any]) -> tuple[list[str], str | None]:
        """Arguments that point a run of ``config`` at this source's data, and the dataset's name (None
        for a datamodule this source leaves alone, e.g. the digits)."""
        found, class_path = lookup(config, "data.class_path")
        if not found or class_path not in DATASETS:
            return [], None
        dataset, shape = DATASETS[class_path]
        args = ["--model.backbone.init_args.pretrained=false"] if self.replaces_pretrained(config) else []
        sizes, val_size = self._sizes(dataset), (self.scale.data.get(dataset) or {}).get("val_size")
        val = [] if val_size is None else [f"--data.val_size={val_size}"]
        if self.name == "synthetic":
            if not sizes:
                raise LitvisionError(
                    f"scale '{self.scale.name}' gives no subset sizes for {dataset} (data.{dataset}), "
                    "which synthetic data needs"
                )
            if dataset == "eurosat":  # split by the config's test fraction
                found, fraction = lookup(config, "data.init_args.test_size")
                fraction = fraction if found and isinstance(fraction, float) and 0 < fraction < 1 else 0.2
                test = int(10 * sizes["images"] * fraction)
                train = 10 * sizes["images"] - test
            else:
                train, test = 10 * sizes["train"], 10 * sizes["test"]
            args += ["--data=litvision.data.SyntheticDataModule", f"--data.input_shape={list(shape)}",
                     f"--data.train_size={train}", f"--data.test_size={test}"]  # fmt: skip
        elif self.name == "offline" or sizes:  # (a download at full size: the configs as they are)
            root = self.prepare(dataset)
            if dataset == "eurosat" or (dataset == "mnist" and not sizes):  # the dataset's own datamodule
                args += [f"--data.data_dir={root}", "--data.download=false"]
            else:  # an image folder, read with the dataset's normalization (MNIST's: grey, not augmented)
                mean, std = (CIFAR10_MEAN, CIFAR10_STD) if dataset == "cifar10" else (MNIST_MEAN, MNIST_STD)
                grey = [] if dataset == "cifar10" else ["--data.grayscale=true", "--data.augment=false"]
                args += [f"--data={FOLDER}", f"--data.data_dir={root}", *grey, f"--data.mean={mean}",
                         f"--data.std={std}"]  # fmt: skip
        return [*args, *val], dataset

    def swap_data_section(self, config: dict[str, Any]) -> dict[str, Any]:
        """``config``'s ``data`` section pointed at this source's data, for configs that a tool reads
        rather than the CLI (the loss landscape's). Its own validation split is kept."""
        given = dict(arg[2:].split("=", 1) for arg in self.run_args(config)[0])
        class_path = given.pop("data", config["data"]["class_path"])
        init_args = dict(config["data"].get("init_args") or {})
        if class_path != config["data"]["class_path"]:  # keep only what every datamodule takes
            shared = set(inspect.signature(ImageDataModule.__init__).parameters)
            init_args = {k: v for k, v in init_args.items() if k in shared}
        for key, value in given.items():
            if key.startswith("data.") and key != "data.val_size":
                init_args[key[5:]] = yaml.safe_load(value)
        return {"class_path": class_path, "init_args": init_args}

    def replaces_pretrained(self, config: dict[str, Any]) -> bool:
        """Offline, ImageNet weights that are not in the torch hub cache cannot be had: random ones."""
        found, pretrained = lookup(config, "model.backbone.init_args.pretrained")
        return bool(found and pretrained and self.name != "download" and not weights_cached(config))

    def _sizes(self, dataset: str) -> dict[str, Any]:
        """Images per class of the subset this scale reads (empty: the whole dataset)."""
        return {k: v for k, v in (self.scale.data.get(dataset) or {}).items() if k != "val_size"}

    def prepare(self, dataset: str) -> Path:
        """The folder this source's runs of ``dataset`` read, made once (atomically: a folder that exists
        is complete)."""
        sizes = self._sizes(dataset)
        if self.name == "offline" and not sizes and dataset in ARCHIVES:  # the archive as it is, extracted
            return self._extract(dataset)
        tag = "-".join(f"{k}{v}" for k, v in sorted(sizes.items())) or "all"
        target = self.data_root / "reproduce" / f"{self.name}-{dataset}-{tag}"
        if not target.is_dir() and self.make:
            partial = target.with_name(target.name + ".partial")
            shutil.rmtree(partial, ignore_errors=True)
            try:
                self._write(dataset, partial, sizes)
            except BaseException:
                shutil.rmtree(partial, ignore_errors=True)
                raise
            partial.rename(target)
        return target

    def _write(self, dataset: str, out: Path, sizes: dict[str, Any]) -> None:
        """The subset ``sizes`` of ``dataset`` (empty: all of it) as this source's runs read it: CIFAR-10
        and MNIST as an image folder ``train|test/<class>/*``, EuroSAT as its archive (``<Class>/*.jpg``)."""
        if dataset == "eurosat":
            if self.name == "offline":
                images = self._extract("eurosat") / "2750"
            else:
                from torchvision.datasets import EuroSAT

                images = Path(_download(EuroSAT, self.data_root, "EuroSAT").root)
            _link_first(images, out, EUROSAT_CLASSES, sizes.get("images"), key=_number)
        elif dataset == "cifar10" and self.name == "offline":
            for split in ("train", "test"):
                _link_first(self._extract("cifar10") / split, out / split, CIFAR10_CLASSES, sizes.get(split))
        elif dataset == "mnist" and self.name == "offline" and not sizes:
            raw = out / "MNIST" / "raw"  # where torchvision's MNIST reads the official files
            raw.mkdir(parents=True)
            for name in MNIST_FILES:
                (raw / name).write_bytes(self._mnist(name))
        else:
            classes = CIFAR10_CLASSES if dataset == "cifar10" else [str(d) for d in range(10)]
            for split in ("train", "test"):
                _write_folder(out / split, *self._arrays(dataset, split), classes, sizes.get(split))

    def _arrays(self, dataset: str, split: str) -> tuple[np.ndarray, np.ndarray]:
        """The images and labels of a split of CIFAR-10 or MNIST (offline: MNIST's official files)."""
        if self.name == "offline":
            prefix = "train" if split == "train" else "t10k"
            images = np.frombuffer(self._mnist(f"{prefix}-images-idx3-ubyte"), np.uint8, offset=16)
            labels = np.frombuffer(self._mnist(f"{prefix}-labels-idx1-ubyte"), np.uint8, offset=8)
            return images.reshape(-1, 28, 28), labels
        from torchvision.datasets import CIFAR10, MNIST

        dataset_class, name = (CIFAR10, "CIFAR-10") if dataset == "cifar10" else (MNIST, "MNIST")
        data = _download(dataset_class, self.data_root, name, train=split == "train")
        return np.asarray(data.data), np.asarray(data.targets)

    def _mnist(self, name: str) -> bytes:
        """An official MNIST file of the offline copy, unpacked."""
        path = self.shared_dir / "mnist" / f"{name}.gz"
        if not path.is_file():
            raise LitvisionError(f"offline MNIST file '{path}' not found")
        return gzip.decompress(path.read_bytes())

    def _extract(self, dataset: str) -> Path:
        """The folder of a dataset's offline archive, extracted once into the data root (unless a dry run)."""
        archive_name, folder = ARCHIVES[dataset]
        copy = self.data_root / "reproduce" / f"offline-{folder}"
        if copy.is_dir() or not self.make:
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


def _link_first(images: Path, out: Path, classes: list[str], per_class: int | None, key: Any = None) -> None:
    """The first ``per_class`` images (by ``key``) of each class folder of ``images``, linked into ``out``."""
    for name in classes:
        (out / name).mkdir(parents=True)
        for f in sorted((images / name).glob("*.jpg"), key=key)[:per_class]:
            os.link(f, out / name / f.name)


def _write_folder(out: Path, images: Any, labels: Any, classes: list[str], per_class: int | None) -> None:
    """The first ``per_class`` images of each class as PNGs in ``out/<class>/``."""
    from PIL import Image

    counts = dict.fromkeys(range(len(classes)), 0)
    for name in classes:
        (out / name).mkdir(parents=True, exist_ok=True)
    for i, (image, label) in enumerate(zip(images, labels.tolist())):
        if per_class is None or counts[label] < per_class:
            counts[label] += 1
            Image.fromarray(image).save(out / classes[label] / f"{i:05d}.png")


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
