"""What every litvision dataset shares: splits, transforms, loaders and errors."""

from __future__ import annotations

import shutil
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from lightning.pytorch import LightningDataModule
from lightning.pytorch.overrides.distributed import UnrepeatedDistributedSampler
from rich.console import Console
from rich.table import Table
from sklearn.model_selection import train_test_split
from torch.utils.data import DataLoader, Dataset, Sampler, WeightedRandomSampler
from torchvision.transforms import v2

from litvision.data.imbalance import (
    ImbalanceProfile,
    NoisyCopies,
    StepImbalance,
    class_counts,
    imbalanced_subset,
)
from litvision.errors import DataNotFoundError, LitvisionError


class TensorImageDataset(Dataset):
    """Images held as one uint8 tensor (N, C, H, W) with integer labels."""

    def __init__(self, images: torch.Tensor, targets: Sequence[int]) -> None:
        self.images = images
        self.targets = list(targets)

    def __len__(self) -> int:
        return len(self.targets)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        return self.images[index], self.targets[index]


class TransformedSubset(Dataset):
    """The samples ``indices`` of ``dataset``, passed through ``transform``."""

    def __init__(self, dataset: Dataset, indices: Sequence[int], transform: Callable) -> None:
        self.dataset = dataset
        self.indices = list(indices)
        self.transform = transform

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, index: int) -> tuple[Any, int]:
        image, target = self.dataset[self.indices[index]]
        return self.transform(image), int(target)


def check_split_size(size: int | float, name: str = "split size") -> None:
    if isinstance(size, bool) or size < 0 or (isinstance(size, float) and size >= 1):
        raise LitvisionError(f"{name} {size!r} is invalid: use a fraction in [0, 1) or a count >= 0")


def stratified_split(targets: Sequence[int], size: int | float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Indices (kept, held out) of a seeded split that keeps the class proportions.

    ``size`` is a fraction in [0, 1) or a count of samples to hold out; 0 holds out nothing.
    """
    indices = np.arange(len(targets))
    check_split_size(size)
    if size == 0:
        return indices, indices[:0]
    if isinstance(size, int) and size >= len(targets):
        raise LitvisionError(f"split size {size} is not smaller than the {len(targets)} samples it splits")
    try:
        kept, held = train_test_split(
            indices, test_size=size, stratify=np.asarray(targets), random_state=seed
        )
    except ValueError as err:  # e.g. fewer held-out samples than classes
        raise LitvisionError(f"cannot hold out {size!r} of {len(targets)} samples by class: {err}") from None
    return np.sort(kept), np.sort(held)


class ImageDataModule(LightningDataModule):
    """Base of every dataset: a seeded stratified validation split carved from the training set,
    class names, train and eval transforms, and the loaders.

    A subclass sets ``class_names``, ``input_shape``, ``mean`` and ``std`` and implements
    :meth:`load_split`; it may override :meth:`augmentations` and :meth:`prepare_data` (downloads).

    Args:
        data_dir: where the dataset lives or is downloaded to.
        batch_size: samples per batch, for every split.
        val_size: fraction (in [0, 1)) or number of training samples held out for validation, chosen
            per class in proportion (stratified) and fixed by ``split_seed``; 0 trains on everything
            and skips validation.
        num_workers: loader processes (kept alive between epochs).
        augment: apply the dataset's training augmentation.
        split_seed: seed of the validation split (and of the imbalance subset), independent of the
            training seed so that changing one does not change the other.
        imbalance: make the training split imbalanced: ``StepImbalance`` (chosen classes keep a
            fraction) or ``LongTailImbalance`` (exponential profile). The validation split is carved
            first, so it stays balanced like the test split.
        oversample: draw training batches class-balanced (``WeightedRandomSampler``, with replacement,
            one epoch = as many draws as training samples); under DDP each rank takes its own share.
        noise_variances: Gaussian-noise minority rebalancing (reports 000 and 002): each training image
            of ``noise_classes`` is added once per variance with noise N(0, variance) on the normalised
            image, drawn afresh at every read; batches then carry an environment id (0 original,
            1 noisy copy) as a third element. ``[0.1, 0.2, ..., 0.9]`` restores classes kept at 10%.
        noise_classes: the classes to copy; by default those of a ``StepImbalance``.
    """

    name: str = "dataset"
    class_names: list[str]
    input_shape: tuple[int, int, int]
    mean: tuple[float, ...] = (0.5,)
    std: tuple[float, ...] = (0.5,)

    def __init__(
        self,
        data_dir: str | Path = "data",
        batch_size: int = 128,
        val_size: int | float = 0.1,
        num_workers: int = 2,
        augment: bool = True,
        split_seed: int = 0,
        imbalance: ImbalanceProfile | None = None,
        oversample: bool = False,
        noise_variances: Sequence[float] | None = None,
        noise_classes: Sequence[int] | None = None,
    ) -> None:
        super().__init__()
        # Logged with the model's hyperparameters (HPARAMS tab); the shape is the model's to log.
        self.save_hyperparameters(ignore=["num_classes", "input_shape"])
        if batch_size < 1:
            raise LitvisionError(f"batch_size={batch_size} is invalid: it must be at least 1")
        if num_workers < 0:
            raise LitvisionError(f"num_workers={num_workers} is invalid: it must be 0 or more")
        self.data_dir = Path(data_dir)
        self.batch_size = batch_size
        self.val_size = val_size
        self.num_workers = num_workers
        self.augment = augment
        self.split_seed = split_seed
        self.imbalance = imbalance
        self.oversample = oversample
        self.noise_variances = list(noise_variances) if noise_variances else None
        if noise_classes is None and isinstance(imbalance, StepImbalance):
            noise_classes = imbalance.classes
        self.noise_classes = list(noise_classes) if noise_classes else []
        # Images per class in the training split: real ones kept (after any imbalance), and as trained
        # on (noisy copies included).
        self.kept_class_counts: list[int] | None = None
        self.train_class_counts: list[int] | None = None
        self.train_targets: list[int] | None = None
        # Indices into the dataset's training split of the samples trained on (after any imbalance) and
        # held out for validation: what a run's split checksum is computed from.
        self.split_indices: dict[str, np.ndarray] = {}
        self.train_set: Dataset | None = None
        self.val_set: Dataset | None = None
        self.test_set: Dataset | None = None

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def load_split(self, train: bool) -> tuple[Dataset, Sequence[int]]:
        """The untransformed training or test split (items ``(image, label)``) and its labels."""
        raise NotImplementedError

    def augmentations(self) -> list[Callable]:
        """Random transforms applied to training images (uint8 tensors) when ``augment`` is on."""
        return []

    def preprocessing(self) -> list[Callable]:
        """Deterministic transforms applied to every split before augmentation (e.g. a resize)."""
        return []

    def train_transform(self) -> Callable:
        return self._transform(self.augmentations() if self.augment else [])

    def eval_transform(self) -> Callable:
        return self._transform([])

    def _transform(self, augmentations: list[Callable]) -> Callable:
        return v2.Compose(
            [
                v2.ToImage(),
                *self.preprocessing(),
                *augmentations,
                v2.ToDtype(torch.float32, scale=True),
                v2.Normalize(self.mean, self.std),
                v2.ToPureTensor(),
            ]
        )

    def setup(self, stage: str | None = None) -> None:
        self.check_options()
        if stage in ("fit", "validate", None) and self.train_set is None:
            dataset, targets = self.load_split(train=True)
            self._check_labels(targets, "training")
            train_idx, val_idx = stratified_split(targets, self.val_size, self.split_seed)
            if self.imbalance is not None:
                train_idx = imbalanced_subset(
                    train_idx, targets, self.imbalance, self.num_classes, self.split_seed
                )
            self.split_indices = {"train": np.asarray(train_idx), "val": np.asarray(val_idx)}
            self.train_set = TransformedSubset(dataset, train_idx, self.train_transform())
            train_targets = [int(targets[i]) for i in train_idx]
            self.kept_class_counts = class_counts(train_targets, self.num_classes)
            if self.noise_variances:
                copies = [j for j, y in enumerate(train_targets) if y in self.noise_classes]
                self.train_set = NoisyCopies(self.train_set, copies, self.noise_variances)
                train_targets += [train_targets[j] for j in copies for _ in self.noise_variances]
            self.train_targets = train_targets
            self.train_class_counts = class_counts(train_targets, self.num_classes)
            if self.imbalance is not None or self.noise_variances or self.oversample:
                self._report_class_counts()
            self.val_set = (
                TransformedSubset(dataset, val_idx, self.eval_transform()) if len(val_idx) else None
            )
        if stage in ("test", "predict", None) and self.test_set is None:
            dataset, targets = self.load_split(train=False)
            self._check_labels(targets, "test")
            self.test_set = TransformedSubset(dataset, range(len(targets)), self.eval_transform())

    def check_options(self) -> None:
        """Reject impossible settings with one line, before any data is read (the CLI calls this right
        after building the datamodule, so that nothing is written first)."""
        check_split_size(self.val_size, "val_size")
        if self.imbalance is not None:
            self.imbalance.validate(self.num_classes)
        if self.noise_variances and not self.noise_classes:
            raise LitvisionError(
                "noise_variances needs the classes to copy: set noise_classes, or use a StepImbalance"
            )
        negative = [v for v in self.noise_variances or [] if v < 0]
        if negative:
            raise LitvisionError(f"noise variances {negative} are negative: a variance must be >= 0")
        unknown = [c for c in self.noise_classes if not 0 <= c < self.num_classes]
        if unknown:
            raise LitvisionError(
                f"noise_classes {unknown} do not exist: class ids run from 0 to {self.num_classes - 1}"
            )

    def _report_class_counts(self) -> None:
        """Print the training class counts as a table and log them (``data/train_count/<class>``)."""
        kept, counts = self.kept_class_counts, self.train_class_counts
        if self.trainer is not None and self.trainer.is_global_zero:
            table = Table(title=f"{self.name} training images per class")
            table.add_column("class")
            table.add_column("kept", justify="right")
            table.add_column("trained on", justify="right")
            for name, k, n in zip(self.class_names, kept, counts):
                table.add_row(name, str(k), str(n))
            table.add_row("total", str(sum(kept)), str(sum(counts)))
            Console().print(table)
        if self.trainer is not None:
            for logger in self.trainer.loggers:
                logger.log_metrics(
                    {f"data/train_count/{n}": c for n, c in zip(self.class_names, counts)}, step=0
                )

    def _check_labels(self, targets: Sequence[int], split: str) -> None:
        if len(targets) == 0:
            raise LitvisionError(f"the {self.name} {split} split in '{self.data_dir}' holds no images")
        top = int(max(targets))
        if top >= self.num_classes:
            raise LitvisionError(
                f"the {self.name} {split} split has label {top}, but the dataset declares "
                f"{self.num_classes} classes ({', '.join(self.class_names)})"
            )

    def _loader(
        self, dataset: Dataset | None, shuffle: bool = False, sampler: Sampler | None = None
    ) -> DataLoader | list:
        if dataset is None:  # no validation split: Lightning skips the loop
            return []
        trainer = self.trainer
        if sampler is None and not shuffle and trainer is not None and trainer.world_size > 1:
            # Evaluated under DDP, every sample counts exactly once: no padding to even out the ranks.
            sampler = UnrepeatedDistributedSampler(
                dataset, num_replicas=trainer.world_size, rank=trainer.global_rank, shuffle=False
            )
        return DataLoader(
            dataset,
            batch_size=self.batch_size,
            shuffle=shuffle,
            sampler=sampler,
            num_workers=self.num_workers,
            persistent_workers=self.num_workers > 0,
            pin_memory=torch.cuda.is_available(),
        )

    def train_dataloader(self) -> DataLoader:
        if not self.oversample:
            return self._loader(self.train_set, shuffle=True)
        # Class-balanced draws; Lightning wraps the sampler so that each DDP rank takes its own share.
        weights = 1.0 / torch.tensor(self.train_class_counts, dtype=torch.double)[self.train_targets]
        sampler = WeightedRandomSampler(weights, num_samples=len(self.train_targets), replacement=True)
        return self._loader(self.train_set, sampler=sampler)

    def val_dataloader(self) -> DataLoader | list:
        return self._loader(self.val_set)

    def test_dataloader(self) -> DataLoader:
        return self._loader(self.test_set)

    def predict_dataloader(self) -> DataLoader:
        return self._loader(self.test_set)

    def _download(self, make: Callable[..., Any], download: bool, how_to_supply: str) -> None:
        """Check that ``make(download=False)`` finds the data; else download it or explain how to get it."""
        try:
            make(download=False)
            return
        except (RuntimeError, FileNotFoundError):
            pass
        reason = "download=False"
        if download:
            created = not self.data_dir.exists()
            try:
                make(download=True)
                return
            except Exception as err:  # network errors come in many types (URLError, HTTPError, timeouts)
                reason = f"download failed: {str(err).splitlines()[0] if str(err) else type(err).__name__}"
                if created:  # leave no empty or half-downloaded folder behind
                    shutil.rmtree(self.data_dir, ignore_errors=True)
        raise DataNotFoundError(
            f"{self.name} not found in '{self.data_dir}' ({reason}); {how_to_supply}, "
            f"or point --data.data_dir at a copy"
        )


class TorchvisionDataModule(ImageDataModule):
    """A torchvision dataset with a ``train`` flag and a ``download`` option (CIFAR-10, MNIST, ...).

    A subclass names ``dataset_class`` and says in :meth:`how_to_supply` how to get the files by hand.
    """

    dataset_class: type[Dataset]

    def __init__(self, data_dir: str | Path = "data", download: bool = True, **kwargs: Any) -> None:
        super().__init__(data_dir=data_dir, **kwargs)
        self.download = download

    def how_to_supply(self) -> str:
        raise NotImplementedError

    def prepare_data(self) -> None:
        for train in (True, False):
            self._download(
                lambda download, train=train: self.dataset_class(
                    self.data_dir, train=train, download=download
                ),
                self.download,
                self.how_to_supply(),
            )

    def load_split(self, train: bool) -> tuple[Dataset, Sequence[int]]:
        dataset = self.dataset_class(self.data_dir, train=train)
        return dataset, torch.as_tensor(dataset.targets).tolist()
