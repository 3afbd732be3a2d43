"""Where a reproduction's or a benchmark's data comes from (``--data_source``): the same runs, pointed at
other data by ordinary command-line arguments, recorded in each run's ``config.yaml``.

``download``: the datasets the configs name, as torchvision downloads them; ``offline``: the copies in
``../shared/data`` (no internet), extracted once under ``data/reproduce/``; ``synthetic``: images of each
dataset's shape, for tests of the machinery (the numbers mean nothing). A scale's subset (images per
class) is a datamodule option: ``train_per_class`` and ``test_per_class`` (EuroSAT: ``images_per_class``).
"""

from __future__ import annotations

import gzip
import inspect
import shutil
import tarfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from litvision.data import CIFAR10DataModule, ImageDataModule
from litvision.errors import LitvisionError
from litvision.utils import import_object, lookup

SOURCES = ("download", "offline", "synthetic")
FOLDER = "litvision.data.ImageFolderDataModule"
# The dataset of each datamodule the reports' configs use, and its image shape.
DATASETS = {
    "litvision.data.CIFAR10DataModule": ("cifar10", (3, 32, 32)),
    "litvision.data.MNISTDataModule": ("mnist", (1, 28, 28)),
    "litvision.data.EuroSATDataModule": ("eurosat", (3, 64, 64)),
}
# A scale's sizes (images per class) and the datamodule options that take them.
PER_CLASS = {"train": "train_per_class", "test": "test_per_class", "images": "images_per_class"}
NAMES = {"cifar10": "CIFAR-10", "mnist": "MNIST", "eurosat": "EuroSAT (RGB)"}
OFFLINE = {  # what the offline copies hold
    "cifar10": "CIFAR-10 (JPEG copy, quality 75: somewhat below the original)",
    "mnist": "MNIST (the official files: 60,000 training and 10,000 test images)",
    "eurosat": "EuroSAT RGB (all 27,000 images; seeded stratified test split)",
}
ARCHIVES = {"cifar10": ("cifar10-jpeg.tar.xz", "cifar10-jpeg"), "eurosat": ("eurosat-rgb.tar.xz", "eurosat")}
MNIST_FILES = [f"{p}-{k}" for p in ("train", "t10k") for k in ("images-idx3-ubyte", "labels-idx1-ubyte")]


class Scale(Protocol):
    """What a source reads of a reproduction's scale (litvision.reproduce.plan.Scale)."""

    name: str
    scaled_down: bool  # every run shrunk
    data: dict[str, dict[str, int]]  # dataset -> images per class of its subset (and its val_size)


@dataclass
class DataSource:
    """Gives every run the arguments that point it at this source's data (prepared once)."""

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
                f"offline data not found: '{self.shared_dir}' does not exist; use --data_source download"
            )

    def sizes(self, dataset: str) -> dict[str, int]:
        """Images per class of the subset this scale reads (empty: the whole dataset)."""
        return {k: v for k, v in (self.scale.data.get(dataset) or {}).items() if k != "val_size"}

    def describe(self, dataset: str) -> str:
        if self.name == "synthetic":
            return f"synthetic images shaped like {dataset} (SyntheticDataModule)"
        text = (OFFLINE if self.name == "offline" else NAMES).get(dataset, dataset)
        subset = ", ".join(f"{k} {v}" for k, v in self.sizes(dataset).items())
        return f"{text}, subset per class: {subset}" if subset else text

    def arguments(self, config: dict[str, Any]) -> tuple[dict[str, Any], str | None]:
        """The arguments (dotted keys) that point a run of ``config`` at this source's data, and the
        dataset's name (None for a datamodule this source leaves alone, e.g. the digits)."""
        class_path = lookup(config, "data.class_path")[1]
        if class_path not in DATASETS:
            return {}, None
        dataset, shape = DATASETS[class_path]
        sizes, args = self.sizes(dataset), {}
        if self.replaces_pretrained(config):
            args["model.backbone.init_args.pretrained"] = False
        if self.name == "synthetic":
            if not sizes:
                raise LitvisionError(
                    f"scale '{self.scale.name}' gives no subset sizes for {dataset} (data.{dataset}), "
                    "which synthetic data needs"
                )
            train, test = 10 * sizes.get("train", 0), 10 * sizes.get("test", 0)
            if dataset == "eurosat":  # one pool, split by the config's test fraction
                fraction = lookup(config, "data.test_size")[1]
                fraction = fraction if isinstance(fraction, float) and 0 < fraction < 1 else 0.2
                test = int(10 * sizes["images"] * fraction)
                train = 10 * sizes["images"] - test
            args.update({"data": "litvision.data.SyntheticDataModule", "data.input_shape": list(shape)})
            args.update({"data.train_size": train, "data.test_size": test})
        elif self.name == "offline" and dataset == "cifar10":  # an image folder, normalized as CIFAR-10
            args.update({"data": FOLDER, "data.data_dir": str(self.prepare(dataset))})
            args.update({"data.mean": list(CIFAR10DataModule.mean), "data.std": list(CIFAR10DataModule.std)})
        elif self.name == "offline":  # the dataset's own datamodule
            args.update({"data.data_dir": str(self.prepare(dataset)), "data.download": False})
        if self.name != "synthetic":
            args.update({f"data.{PER_CLASS[k]}": v for k, v in sizes.items()})
        val_size = (self.scale.data.get(dataset) or {}).get("val_size")
        return {**args, **({} if val_size is None else {"data.val_size": val_size})}, dataset

    def data_section(self, config: dict[str, Any]) -> dict[str, Any]:
        """``config``'s ``data`` section pointed at this source's data, for a config that a tool reads
        rather than the CLI (the loss landscape's); its own validation split is kept."""
        given = self.arguments(config)[0]
        class_path = given.pop("data", config["data"]["class_path"])
        init_args = dict(config["data"].get("init_args") or {})
        if class_path != config["data"]["class_path"]:  # keep only what every datamodule takes
            shared = set(inspect.signature(ImageDataModule.__init__).parameters)
            init_args = {k: v for k, v in init_args.items() if k in shared}
        init_args.update(
            {k[5:]: v for k, v in given.items() if k.startswith("data.") and k != "data.val_size"}
        )
        return {"class_path": class_path, "init_args": init_args}

    def replaces_pretrained(self, config: dict[str, Any]) -> bool:
        """Offline, ImageNet weights that are not in the torch hub cache cannot be had: random ones."""
        pretrained = lookup(config, "model.backbone.init_args.pretrained")[1]
        return bool(pretrained and self.name != "download" and not weights_cached(config))

    def prepare(self, dataset: str) -> Path:
        """The folder of an offline copy as its datamodule reads it, made once (atomically: a folder that
        exists is complete); a dry run only names it."""
        target = self.data_root / "reproduce" / f"offline-{ARCHIVES.get(dataset, (None, dataset))[1]}"
        if target.is_dir() or not self.make:
            return target
        partial = target.with_name(target.name + ".partial")
        shutil.rmtree(partial, ignore_errors=True)
        if dataset == "mnist":  # unpacked where torchvision's MNIST reads the official files
            (partial / "MNIST" / "raw").mkdir(parents=True)
            for name in MNIST_FILES:
                path = self.shared_dir / "mnist" / f"{name}.gz"
                if not path.is_file():
                    raise LitvisionError(f"offline MNIST file '{path}' not found")
                (partial / "MNIST" / "raw" / name).write_bytes(gzip.decompress(path.read_bytes()))
            partial.rename(target)
            return target
        archive, folder = ARCHIVES[dataset]
        if not (self.shared_dir / archive).is_file():
            raise LitvisionError(f"offline archive '{self.shared_dir / archive}' not found")
        with tarfile.open(self.shared_dir / archive) as tar:
            tar.extractall(partial, filter="data")
        (partial / folder).rename(target)
        shutil.rmtree(partial)
        return target


def weights_cached(config: dict[str, Any]) -> bool:
    """Whether the ImageNet weights a config's backbone asks for are in the torch hub cache: the backbone
    is built without weights, on the meta device (no memory), and says which weights it would load."""
    import torch
    import torchvision

    found, backbone = lookup(config, "model.backbone")
    data = lookup(config, "data.class_path")[1]
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
