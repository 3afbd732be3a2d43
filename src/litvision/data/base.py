"""What every litvision dataset shares: splits, transforms, loaders and errors."""

from __future__ import annotations

import math
import os
import shutil
import warnings
from abc import ABCMeta, abstractmethod
from collections.abc import Callable, Sequence
from functools import partial
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from lightning.pytorch import LightningDataModule
from lightning.pytorch.overrides.distributed import UnrepeatedDistributedSampler
from lightning.pytorch.utilities import rank_zero_info
from rich.console import Console
from rich.table import Table
from sklearn.model_selection import train_test_split
from torch.utils.data import DataLoader, Dataset, Sampler, Subset
from torchvision.transforms import v2

from litvision.data.device_augment import BatchTransform, mix_batch
from litvision.data.files import UnlabelledImages
from litvision.data.imbalance import (
    ImbalanceProfile,
    NoisyCopies,
    Sampling,
    StepImbalance,
    class_counts,
    imbalanced_subset,
    sampling_power,
    sampling_weights,
)
from litvision.data.memory import (
    AUTO_MAX_BYTES,
    AUTO_MAX_GPU_FRACTION,
    InMemorySubset,
    as_batch,
    cached_decode,
    image_files,
    yields_batches,
)
from litvision.data.policy import AlbumentationsPolicy
from litvision.data.resumable import Item, ResumableDataLoader, SeededSampler, seeded, split_item
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

    def __getitem__(self, item: Item) -> tuple[Any, int]:
        index, seed = split_item(item)
        image, target = self.dataset[self.indices[index]]
        with seeded(seed):  # a training sample's augmentation comes from its own seed
            return self.transform(image), int(target)


def check_split_size(size: int | float, name: str = "split size") -> None:
    if isinstance(size, bool) or size < 0 or (isinstance(size, float) and size >= 1):
        raise LitvisionError(f"{name} {size!r} is invalid: use a fraction in [0, 1) or a count >= 0")


def first_per_class(targets: Sequence[int], per_class: int, order: Sequence[Any] | None = None) -> list[int]:
    """The indices of the first ``per_class`` samples of each class (the first by ``order``, default the
    dataset's own), in the dataset's order: a class-balanced subset, the same on every machine."""
    if per_class < 1:
        raise LitvisionError(f"a subset of {per_class} image(s) per class is invalid: keep at least 1")
    ranked = sorted(range(len(targets)), key=order.__getitem__) if order is not None else range(len(targets))
    seen: dict[int, int] = {}
    kept = []
    for i in ranked:
        seen[int(targets[i])] = seen.get(int(targets[i]), 0) + 1
        if seen[int(targets[i])] <= per_class:
            kept.append(i)
    return sorted(kept)


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


class ImageDataModule(LightningDataModule, metaclass=ABCMeta):
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
        oversample: draw training batches class-balanced; the same as ``sampling: class_balanced``.
        sampling: how training samples are drawn (Kang et al., ICLR 2020: class ``j`` drawn with
            probability proportional to ``n_j ** q``): ``instance`` (q = 1, a shuffle: the default),
            ``square_root`` (q = 1/2), ``class_balanced`` (q = 0), ``progressive`` (from instance- to
            class-balanced, linearly over ``trainer.max_epochs``), or a number ``q``. Other than a
            shuffle, weighted draws with replacement, one epoch = as many draws as training samples,
            fixed by the run's seed and the epoch; under DDP each rank takes its own share.
        mixup_alpha: mixup (Zhang et al. 2018) of training batches, lam ~ Beta(alpha, alpha); 0: off.
        cutmix_alpha: CutMix (Yun et al. 2019) of training batches; 0: off. With both on, each batch
            takes one of the two at random. Either is done on the training device, once the batch is
            there, on both data paths; the loss is ``lam * loss(y) + (1 - lam) * loss(y')`` and the
            training accuracy counts the label with the larger share.
        cutmix_prob: the probability that a batch drawn for CutMix is cut (the others train as they
            came); Yun et al.'s CIFAR recipe cuts half the batches (0.5), 1 cuts every one.
        noise_variances: Gaussian-noise minority rebalancing (reports 000 and 002): each training image
            of ``noise_classes`` is added once per variance with noise N(0, variance) on the normalised
            image, drawn afresh at every read; batches then carry an environment id (0 original,
            1 noisy copy) as a third element. ``[0.1, 0.2, ..., 0.9]`` restores classes kept at 10%.
        noise_classes: the classes to copy; by default those of a ``StepImbalance``.
        in_memory: hold the decoded images in memory as one uint8 tensor, on the training device (a
            GPU when training on one), and make each batch with one index, augmented (random crop,
            flips, noisy copies) per image on that device: no loader processes, no per-image Python.
            ``"auto"``: when the dataset's augmentation can run so (see ``device_augment.py``) and the
            split fits (4 GiB, and a quarter of the GPU's free memory); ``false``: the
            torchvision/PIL loader path, with ``num_workers`` processes. Images read from files are
            decoded once and cached next to them (``.litvision-<split>-<key>.pt``).
        policy: the training augmentation as a list of albumentations transforms
            (``{class_path, init_args}`` each), in place of the dataset's own; see ``data/policy.py``.
            It runs on the file path: with ``in_memory: auto`` a dataset given one is read from its
            files (said once at setup), and ``in_memory: true`` refuses it.
        predict_dir: a folder of images (any layout, nested or flat, no labels needed) for
            ``litvision predict``; by default it predicts on the test split. The images are converted
            and resized to the model's input shape and normalised as the test images are.
        train_per_class: keep only the first N images of each class of the training split (before the
            validation split), in the dataset's order: a class-balanced subset for short runs.
        test_per_class: the same for the test split.
    """

    name: str = "dataset"
    shows_data_dir: bool = False  # whether the data summary names the folder (the user's own images)
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
        sampling: Sampling | None = None,
        mixup_alpha: float = 0.0,
        cutmix_alpha: float = 0.0,
        cutmix_prob: float = 1.0,
        noise_variances: Sequence[float] | None = None,
        noise_classes: Sequence[int] | None = None,
        in_memory: bool | Literal["auto"] = "auto",
        policy: list[dict[str, Any]] | None = None,
        predict_dir: str | Path | None = None,
        train_per_class: int | None = None,
        test_per_class: int | None = None,
    ) -> None:
        super().__init__()
        # Logged with the model's hyperparameters (HPARAMS tab); the shape is the model's to log.
        self.save_hyperparameters(ignore=["num_classes", "input_shape"])
        if batch_size < 1:
            raise LitvisionError(f"batch_size={batch_size} is invalid: it must be at least 1")
        if num_workers < 0:
            raise LitvisionError(f"num_workers={num_workers} is invalid: it must be 0 or more")
        if in_memory not in (True, False, "auto"):
            raise LitvisionError(f"in_memory={in_memory!r} is invalid: use true, false or auto")
        self.in_memory = in_memory
        if policy and not augment:  # a policy never goes unused without a word
            raise LitvisionError("a policy is given but augment is false: set augment: true to train with it")
        self.policy = AlbumentationsPolicy(policy) if policy else None
        self.predict_dir = Path(predict_dir) if predict_dir is not None else None
        self._said_file_path = False
        self.data_dir = Path(data_dir)
        self.per_class = {True: train_per_class, False: test_per_class}
        self.batch_size = batch_size
        self.val_size = val_size
        self.num_workers = num_workers
        self.augment = augment
        self.split_seed = split_seed
        self.imbalance = imbalance
        self.oversample = oversample
        self.sampling = sampling
        self.mixup_alpha = mixup_alpha
        self.cutmix_alpha = cutmix_alpha
        self.cutmix_prob = cutmix_prob
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
        self.predict_set: Dataset | None = None
        # Where each predicted image comes from: file paths, or None for data sets held as arrays.
        self.predict_files: list[str] | None = None
        self._test_data: tuple[Dataset, Sequence[int]] | None = None

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @abstractmethod
    def load_split(self, train: bool) -> tuple[Dataset, Sequence[int]]:
        """The untransformed training or test split (items ``(image, label)``) and its labels."""

    def read_split(self, train: bool) -> tuple[Dataset, Sequence[int]]:
        """:meth:`load_split`, cut to ``train_per_class`` or ``test_per_class`` images per class."""
        dataset, targets = self.load_split(train)
        if self.per_class[train] is None:
            return dataset, targets
        kept = first_per_class(targets, self.per_class[train])
        return Subset(dataset, kept), [targets[i] for i in kept]

    def augmentations(self) -> list[Callable]:
        """Random transforms applied to training images (uint8 tensors) when ``augment`` is on."""
        return []

    def preprocessing(self) -> list[Callable]:
        """Deterministic transforms applied to every split before augmentation (e.g. a resize)."""
        return []

    def train_augmentations(self) -> list[Callable]:
        """What augments training images: the ``policy`` if given, else :meth:`augmentations`; none
        without ``augment``."""
        if not self.augment:
            return []
        return [self.policy] if self.policy is not None else self.augmentations()

    def train_transform(self) -> Callable:
        return self._transform(self.train_augmentations())

    def eval_transform(self) -> Callable:
        return self._transform([])

    def predict_transform(self) -> Callable:
        """:meth:`eval_transform` for images of any size: each is resized to the input shape first."""
        # The eval transform's own resize (if any) then finds the right size, which v2 leaves untouched.
        return v2.Compose([v2.ToImage(), v2.Resize(self.input_shape[1:]), self.eval_transform()])

    def batch_transform(self, train: bool) -> BatchTransform:
        """What :meth:`train_transform` or :meth:`eval_transform` do after :meth:`preprocessing`, for
        whole uint8 batches on their device (the in-memory path)."""
        return BatchTransform(self.train_augmentations() if train else [], self.mean, self.std)

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
            dataset, targets = self.read_split(train=True)
            self._check_labels(targets, "training")
            train_idx, val_idx = stratified_split(targets, self.val_size, self.split_seed)
            if self.imbalance is not None:
                train_idx = imbalanced_subset(
                    train_idx, targets, self.imbalance, self.num_classes, self.split_seed
                )
            self.split_indices = {"train": np.asarray(train_idx), "val": np.asarray(val_idx)}
            source = self._source(dataset, "train")
            self.train_set = self._subset(source, targets, train_idx, train=True)
            train_targets = [int(targets[i]) for i in train_idx]
            self.kept_class_counts = class_counts(train_targets, self.num_classes)
            if self.noise_variances:
                copies = [j for j, y in enumerate(train_targets) if y in self.noise_classes]
                self.train_set = NoisyCopies(self.train_set, copies, self.noise_variances)
                train_targets += [train_targets[j] for j in copies for _ in self.noise_variances]
            self.train_targets = train_targets
            self.train_class_counts = class_counts(train_targets, self.num_classes)
            if self.imbalance is not None or self.noise_variances or self.oversample or self.sampling:
                self._report_class_counts()
            self.val_set = self._subset(source, targets, val_idx, train=False) if len(val_idx) else None
            self._summarize(len(train_idx), len(val_idx), len(self.train_targets) - len(train_idx))
        if stage == "predict" and self.predict_dir is not None:
            images = UnlabelledImages(self.predict_dir, "L" if self.input_shape[0] == 1 else "RGB")
            images.transform = self.predict_transform()
            self.predict_set, self.predict_files = images, images.files
            return
        if stage in ("test", "predict", None) and self.test_set is None:
            dataset, targets = self._test_split()
            self._check_labels(targets, "test")
            source = self._source(dataset, "test")
            self.test_set = self._subset(source, targets, range(len(targets)), train=False)
            self.predict_set, self.predict_files = self.test_set, image_files(dataset)

    def _test_split(self) -> tuple[Dataset, Sequence[int]]:
        """:meth:`read_split` of the test split, read once (the data summary counts it before the test)."""
        if self._test_data is None:
            self._test_data = self.read_split(train=False)
        return self._test_data

    def _summarize(self, train: int, val: int, copies: int) -> None:
        """One line of what data was found: images and classes, and how they are split."""
        if self.trainer is None or not self.trainer.is_global_zero:
            return
        test = len(self._test_split()[1])
        noisy = f" (+{copies} noisy copies)" if copies else ""
        where = f" in '{self.data_dir}'" if self.shows_data_dir else ""
        Console().print(
            f"{self.name}{where}: {train + val + test} images in {self.num_classes} classes: {train} train"
            f"{noisy}, {val} validation, {test} test",
            soft_wrap=True,
            highlight=False,
        )

    def decode(self, dataset: Dataset, split: str) -> torch.Tensor:
        """Every image of the ``split`` dataset as one uint8 tensor (N, C, H, W), as the PIL path has it
        before augmenting (after :meth:`preprocessing`); images read from files are cached on disk."""
        if isinstance(dataset, TensorImageDataset) and not self.preprocessing():
            return dataset.images
        transform = v2.Compose([v2.ToImage(), *self.preprocessing(), v2.ToPureTensor()])
        return cached_decode(dataset, transform, self.input_shape, self.data_dir, split, self.num_workers)

    def in_memory_device(self) -> torch.device:
        """Where in-memory images live: the training device, once a trainer is attached."""
        return self.trainer.strategy.root_device if self.trainer is not None else torch.device("cpu")

    def keeps_in_memory(self, num_images: int) -> bool:
        """Whether a split of ``num_images`` images is held in memory (see ``in_memory``)."""
        if self.in_memory is False:
            return False
        try:
            self.batch_transform(train=True)
        except LitvisionError as err:  # an augmentation with no whole-batch version
            if self.in_memory is True:
                raise
            if not self._said_file_path:
                self._said_file_path = True
                rank_zero_info(f"{self.name}: read from the image files, not from memory, because {err}")
            return False
        if self.in_memory is True:
            return True
        size = num_images * math.prod(self.input_shape)
        device = self.in_memory_device()
        if device.type == "cuda":
            free, _ = torch.cuda.mem_get_info(device)
            return size <= min(AUTO_MAX_BYTES, AUTO_MAX_GPU_FRACTION * free)
        return size <= AUTO_MAX_BYTES

    def _source(self, dataset: Dataset, split: str) -> Dataset | torch.Tensor:
        """The split's decoded images when it is held in memory, else the dataset itself."""
        return self.decode(dataset, split) if self.keeps_in_memory(len(dataset)) else dataset

    def _subset(
        self, source: Dataset | torch.Tensor, targets: Sequence[int], indices: Sequence[int], train: bool
    ) -> Dataset:
        if isinstance(source, torch.Tensor):
            device = self.in_memory_device()
            return InMemorySubset(source, targets, indices, self.batch_transform(train), device)
        return TransformedSubset(source, indices, self.train_transform() if train else self.eval_transform())

    def check_options(self) -> None:
        """Reject impossible settings with one line, before any data is read (the CLI calls this right
        after building the datamodule, so that nothing is written first)."""
        check_split_size(self.val_size, "val_size")
        if self.in_memory is True:
            self.batch_transform(train=True)  # every augmentation must have a whole-batch version
        if self.imbalance is not None:
            self.imbalance.validate(self.num_classes)
        self.sampling_q()
        if self.mixup_alpha < 0 or self.cutmix_alpha < 0:
            raise LitvisionError(
                f"mixup_alpha={self.mixup_alpha} and cutmix_alpha={self.cutmix_alpha} must both be >= 0 "
                "(0 turns one off)"
            )
        if not 0 <= self.cutmix_prob <= 1:
            raise LitvisionError(f"cutmix_prob={self.cutmix_prob} is invalid: it is a probability, 0 to 1")
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
        """Print the training class counts as a table (``run_info.json`` keeps them)."""
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
        self,
        dataset: Dataset | None,
        sampler: Sampler | None = None,
        loader_class: type[DataLoader] = DataLoader,
    ) -> DataLoader | list:
        if dataset is None:  # no validation split: Lightning skips the loop
            return []
        trainer = self.trainer
        if sampler is None and trainer is not None and trainer.world_size > 1:
            # Evaluated under DDP, every sample counts exactly once: no padding to even out the ranks.
            sampler = UnrepeatedDistributedSampler(
                dataset, num_replicas=trainer.world_size, rank=trainer.global_rank, shuffle=False
            )
        if yields_batches(dataset):
            # The dataset gathers and finishes a whole batch of indices on its own device
            # (__getitems__): no worker processes, no collation, no pinning.
            _quiet_worker_warning()
            return loader_class(
                dataset,
                batch_size=self.batch_size,
                sampler=sampler,
                collate_fn=as_batch,
                generator=torch.Generator().manual_seed(0),
            )
        return loader_class(
            dataset,
            batch_size=self.batch_size,
            sampler=sampler,
            num_workers=self.num_workers,
            persistent_workers=self.num_workers > 0,
            pin_memory=torch.cuda.is_available(),
            # Its own generator: making an iterator must not draw from (and shift) the global one.
            generator=torch.Generator().manual_seed(0),
        )

    def sampling_q(self) -> float | Literal["progressive"]:
        """The exponent ``q`` of the sampling schedule (``oversample`` is ``class_balanced``)."""
        if self.oversample and self.sampling not in (None, "class_balanced", 0):
            raise LitvisionError(
                f"oversample: true is sampling: class_balanced; it cannot combine with "
                f"sampling={self.sampling!r}"
            )
        return sampling_power("class_balanced" if self.oversample else self.sampling or "instance")

    @property
    def mixes(self) -> bool:
        """Whether training batches are mixed (mixup or cutmix)."""
        return self.mixup_alpha > 0 or self.cutmix_alpha > 0

    def train_dataloader(self) -> DataLoader:
        """Shuffled (or, with a ``sampling`` schedule, re-balanced) batches, each sample with its own
        augmentation seed, all fixed by the run's seed and the epoch (see data/resumable.py); Lightning
        gives each DDP rank its own share."""
        q = self.sampling_q()
        weights = None
        if q == "progressive":
            epochs = self.trainer.max_epochs if self.trainer is not None else None
            if epochs is None or epochs < 1:
                raise LitvisionError(
                    "sampling: progressive needs trainer.max_epochs (its schedule spans them)"
                )
            weights = partial(sampling_weights, self.train_targets, self.train_class_counts, q, epochs)
        elif q != 1:
            weights = sampling_weights(self.train_targets, self.train_class_counts, q)
        sampler = SeededSampler(len(self.train_set), _run_seed(), weights)
        return self._loader(self.train_set, sampler=sampler, loader_class=ResumableDataLoader)

    def on_after_batch_transfer(self, batch: Any, dataloader_idx: int) -> Any:
        """Mixup or cutmix of a training batch, on the device it reached. The draws are seeded by the run
        seed, the rank and the batch's position in the fit, so that a resumed run mixes as the
        uninterrupted one would. A bare tensor (the model summary's example input) has no labels to mix."""
        trainer = self.trainer
        if not self.mixes or trainer is None or not trainer.training or isinstance(batch, torch.Tensor):
            return batch
        position = trainer.fit_loop.epoch_loop.batch_progress.total.ready
        rng = np.random.default_rng([_run_seed(), trainer.global_rank, position])
        return mix_batch(batch, self.mixup_alpha, self.cutmix_alpha, rng, self.cutmix_prob)

    def val_dataloader(self) -> DataLoader | list:
        return self._loader(self.val_set)

    def test_dataloader(self) -> DataLoader:
        return self._loader(self.test_set)

    def predict_dataloader(self) -> DataLoader:
        return self._loader(self.predict_set)

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


def _quiet_worker_warning() -> None:
    """Silence Lightning's advice to add loader processes, which in-memory loaders do not need."""
    warnings.filterwarnings("ignore", message=r"The '\w+_dataloader' does not have many workers")


def _run_seed() -> int:
    """The seed the run was started with (``seed_everything``), or torch's initial seed."""
    seed = os.environ.get("PL_GLOBAL_SEED")
    return int(seed) if seed is not None else torch.initial_seed()


class TorchvisionDataModule(ImageDataModule):
    """A torchvision dataset with a ``train`` flag and a ``download`` option (CIFAR-10, MNIST, ...).

    A subclass names ``dataset_class`` and says in :meth:`how_to_supply` how to get the files by hand.
    """

    dataset_class: type[Dataset]

    def __init__(self, data_dir: str | Path = "data", download: bool = True, **kwargs: Any) -> None:
        super().__init__(data_dir=data_dir, **kwargs)
        self.download = download

    @abstractmethod
    def how_to_supply(self) -> str:
        """How to get the files by hand, for the error of a failed download."""

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

    def decode(self, dataset: Dataset, split: str) -> torch.Tensor:
        # torchvision keeps these datasets decoded in ``data``: (N, H, W, C) or (N, H, W) uint8.
        indices = dataset.indices if isinstance(dataset, Subset) else None  # a per-class subset
        data = getattr(dataset.dataset if indices is not None else dataset, "data", None)
        if data is not None and indices is not None:
            data = np.asarray(data)[indices]
        if data is not None and not self.preprocessing():
            images = torch.as_tensor(np.asarray(data))
            images = images.unsqueeze(1) if images.ndim == 3 else images.permute(0, 3, 1, 2)
            if images.dtype == torch.uint8 and tuple(images.shape[1:]) == tuple(self.input_shape):
                return images.contiguous()
        return super().decode(dataset, split)
