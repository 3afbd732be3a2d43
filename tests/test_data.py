"""Datamodules: splits, transforms, image folders, EuroSAT layout and missing-data errors."""

from __future__ import annotations

import json
import pickle
import threading
import urllib.error
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from litvision.data import (
    CIFAR10DataModule,
    DigitsDataModule,
    EuroSATDataModule,
    ImageFolderDataModule,
    MNISTDataModule,
    SyntheticDataModule,
)
from litvision.data.base import stratified_split
from litvision.data.eurosat import CLASSES as EUROSAT_CLASSES
from litvision.errors import DataNotFoundError, LitvisionError


def write_images(folder: Path, classes: dict[str, int], size: tuple[int, int], suffix: str = ".png") -> None:
    rng = np.random.default_rng(0)
    for name, count in classes.items():
        (folder / name).mkdir(parents=True, exist_ok=True)
        for i in range(count):
            pixels = rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
            Image.fromarray(pixels).save(folder / name / f"{name}_{i}{suffix}")


def test_stratified_split_is_seeded_disjoint_and_keeps_proportions():
    targets = [0] * 100 + [1] * 50 + [2] * 10
    kept, held = stratified_split(targets, 0.2, seed=3)
    again_kept, again_held = stratified_split(targets, 0.2, seed=3)
    other_kept, _ = stratified_split(targets, 0.2, seed=4)
    assert np.array_equal(kept, again_kept) and np.array_equal(held, again_held)
    assert not np.array_equal(kept, other_kept)
    assert set(kept).isdisjoint(held) and len(kept) + len(held) == len(targets)
    assert Counter(targets[i] for i in held) == {0: 20, 1: 10, 2: 2}


def test_stratified_split_by_count_and_zero():
    targets = list(range(10)) * 10
    _, held = stratified_split(targets, 30, seed=0)
    assert len(held) == 30
    kept, held = stratified_split(targets, 0, seed=0)
    assert len(held) == 0 and len(kept) == 100


@pytest.mark.parametrize("size", [-1, 1.0, 1.5, 100])
def test_stratified_split_rejects_bad_sizes(size):
    with pytest.raises(LitvisionError, match="split size"):
        stratified_split(list(range(10)) * 10, size, seed=0)


def test_stratified_split_needs_one_sample_per_class():
    with pytest.raises(LitvisionError, match="cannot hold out 5 of 100 samples by class"):
        stratified_split(list(range(10)) * 10, 5, seed=0)


# Both data paths: the decoded dataset in memory (the default for small sets), and torchvision/PIL loaders.
BOTH_PATHS = pytest.mark.parametrize("in_memory", [True, False], ids=["in_memory", "pil"])


@BOTH_PATHS
def test_digits_splits_shapes_and_normalisation(in_memory):
    data = DigitsDataModule(val_size=0.1, batch_size=32, in_memory=in_memory)
    data.setup("fit")
    data.setup("test")
    assert data.num_classes == 10 and data.input_shape == (1, 8, 8)
    sizes = len(data.train_set), len(data.val_set), len(data.test_set)
    assert sum(sizes) == 1797 and sizes[2] == 360
    x, y = next(iter(data.train_dataloader()))
    assert x.shape == (32, 1, 8, 8) and x.dtype == torch.float32 and y.dtype == torch.int64
    # Normalised with the dataset's statistics: mean near 0 and std near 1 over the training set.
    images = torch.stack([data.train_set[i][0] for i in range(len(data.train_set))])
    assert abs(images.mean().item()) < 0.05 and abs(images.std().item() - 1) < 0.05


@BOTH_PATHS
def test_validation_split_uses_eval_transform(tmp_path, in_memory):
    write_images(tmp_path / "train", {"a": 10, "b": 10}, (16, 16))
    write_images(tmp_path / "test", {"a": 2, "b": 2}, (16, 16))
    data = ImageFolderDataModule(tmp_path, val_size=4, augment=True, in_memory=in_memory)
    data.setup("fit")
    torch.manual_seed(0)
    # Augmentation (random crop + flip) makes two reads of a training image differ; evaluation must not.
    train_reads = [torch.stack([data.train_set[i][0] for i in range(16)]) for _ in range(2)]
    val_reads = [torch.stack([data.val_set[i][0] for i in range(4)]) for _ in range(2)]
    assert not torch.equal(*train_reads)
    assert torch.equal(*val_reads)


def test_cifar_augmentation_is_crop_and_flip_on_train_only():
    data = CIFAR10DataModule(data_dir="unused")
    train_ops = [type(t).__name__ for t in data.train_transform().transforms]
    eval_ops = [type(t).__name__ for t in data.eval_transform().transforms]
    assert "RandomCrop" in train_ops and "RandomHorizontalFlip" in train_ops
    assert not any(op.startswith("Random") for op in eval_ops)
    image = torch.randint(0, 256, (3, 32, 32), dtype=torch.uint8)
    torch.manual_seed(0)
    outs = {tuple(data.train_transform()(image).flatten()[:64].tolist()) for _ in range(8)}
    assert len(outs) > 1, "training transform is not random"
    assert data.train_transform()(image).shape == (3, 32, 32)


def test_zero_val_size_skips_validation():
    data = SyntheticDataModule(train_size=40, val_size=0)
    data.setup("fit")
    assert data.val_set is None and data.val_dataloader() == [] and len(data.train_set) == 40


@BOTH_PATHS
def test_image_folder(tmp_path, in_memory):
    write_images(tmp_path / "train", {"cat": 12, "dog": 12, "eel": 6}, (20, 20))
    write_images(tmp_path / "test", {"cat": 3, "eel": 2}, (20, 20), suffix=".jpg")  # no "dog" in test
    data = ImageFolderDataModule(tmp_path, val_size=0.2, batch_size=4, in_memory=in_memory)
    assert data.class_names == ["cat", "dog", "eel"] and data.input_shape == (3, 20, 20)
    data.setup("fit")
    data.setup("test")
    assert len(data.train_set) + len(data.val_set) == 30
    test_labels = [data.test_set[i][1] for i in range(len(data.test_set))]
    assert sorted(test_labels) == [0, 0, 0, 2, 2], "test labels must follow train's class order"
    x, _ = next(iter(data.train_dataloader()))
    assert x.shape == (4, 3, 20, 20)


def test_an_image_folders_datasets_pickle_without_their_datamodule(tmp_path):
    """Loader workers started by spawn or forkserver (macOS, Windows, Python 3.14) get the dataset
    pickled: it must not drag in the datamodule and what it holds (its trainer, a search's study)."""
    write_images(tmp_path, {"cat": 8, "dog": 8}, (12, 12))
    data = ImageFolderDataModule(tmp_path, val_size=0.25, in_memory=False)
    data.setup("fit")
    data.held = threading.Lock()  # does not pickle, like a trainer's callbacks may not
    train = pickle.loads(pickle.dumps(data.train_set))
    assert [train[i][1] for i in range(len(train))] == [data.train_set[i][1] for i in range(len(train))]
    assert train[0][0].shape == (3, 12, 12)


def test_image_folder_resize_and_grayscale(tmp_path):
    write_images(tmp_path / "train", {"a": 4, "b": 4}, (30, 20))
    write_images(tmp_path / "test", {"a": 1, "b": 1}, (30, 20))
    data = ImageFolderDataModule(tmp_path, image_size=16, grayscale=True, val_size=0)
    assert data.input_shape == (1, 16, 16)
    data.setup("test")
    assert data.test_set[0][0].shape == (1, 16, 16)


def test_image_folder_missing_or_empty(tmp_path):
    with pytest.raises(DataNotFoundError, match=r"image folder '.*nowhere' not found"):
        ImageFolderDataModule(tmp_path / "nowhere")
    with pytest.raises(DataNotFoundError, match="has no class sub-folders"):
        ImageFolderDataModule(tmp_path)
    (tmp_path / "train" / "cat").mkdir(parents=True)
    (tmp_path / "test" / "cat").mkdir(parents=True)
    with pytest.raises(DataNotFoundError, match=r"folder\(s\) \['cat'\] of '.*train' hold no image"):
        ImageFolderDataModule(tmp_path)


def test_eurosat_from_an_extracted_archive(tmp_path):
    write_images(tmp_path / "2750", {c: 10 for c in EUROSAT_CLASSES}, (64, 64), suffix=".jpg")
    data = EuroSATDataModule(tmp_path, download=False, test_size=0.2, val_size=10)
    data.prepare_data()
    data.setup("fit")
    data.setup("test")
    assert len(data.test_set) == 20 and len(data.val_set) == 10 and len(data.train_set) == 70
    assert Counter(data.test_set[i][1] for i in range(20)) == dict.fromkeys(range(10), 2)
    assert data.train_set[0][0].shape == (3, 64, 64)


@pytest.mark.parametrize(
    "module, name",
    [(CIFAR10DataModule, "CIFAR-10"), (MNISTDataModule, "MNIST"), (EuroSATDataModule, "EuroSAT")],
)
def test_missing_data_without_download_names_dataset_and_folder(tmp_path, module, name):
    data = module(data_dir=tmp_path / "nothing", download=False)
    with pytest.raises(DataNotFoundError) as err:
        data.prepare_data()
    message = str(err.value)
    assert message.startswith(f"{name} not found in '{tmp_path / 'nothing'}'")
    assert "\n" not in message and "--data.data_dir" in message


def test_failed_download_explains_and_leaves_no_folder(tmp_path):
    data = SyntheticDataModule(data_dir=tmp_path / "new")

    def unreachable(download: bool):
        if not download:
            raise RuntimeError("Dataset not found")
        (tmp_path / "new").mkdir()  # as torchvision does before it fetches
        raise urllib.error.URLError("[Errno -2] Name or service not known")

    with pytest.raises(DataNotFoundError, match=r"download failed: <urlopen error .*Name or service"):
        data._download(unreachable, download=True, how_to_supply="fetch it")
    assert not (tmp_path / "new").exists()


def write_cifar10(
    root: Path, monkeypatch: pytest.MonkeyPatch, per_batch: int = 8, test: int = 20
) -> np.ndarray:
    """CIFAR-10 as its python archive extracts: ``cifar-10-batches-py/`` with five pickled training
    batches, a test batch and ``batches.meta``. torchvision checks each file's md5 against the real
    archive's: the expected sums are set to those of the files written. Returns the test images (N, 32,
    32, 3)."""
    import hashlib
    import pickle

    from torchvision.datasets import CIFAR10

    folder = root / CIFAR10.base_folder
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)

    def write(name: str, entry: dict) -> tuple[str, str]:
        (folder / name).write_bytes(pickle.dumps(entry))
        return name, hashlib.md5((folder / name).read_bytes()).hexdigest()

    def batch(name: str, n: int) -> tuple[tuple[str, str], np.ndarray]:
        images = rng.integers(0, 256, (n, 32, 32, 3), dtype=np.uint8)
        # The archive's layout: one row per image, the red plane, then green, then blue, row-major.
        rows = images.transpose(0, 3, 1, 2).reshape(n, 3072)
        labels = [i % 10 for i in range(n)]
        return write(name, {"batch_label": name, "data": rows, "labels": labels}), images

    train = [batch(f"data_batch_{i}", per_batch)[0] for i in range(1, 6)]
    test_file, test_images = batch("test_batch", test)
    meta_file = write("batches.meta", {"label_names": CIFAR10DataModule.class_names, "num_vis": 3072})
    monkeypatch.setattr(CIFAR10, "train_list", [list(f) for f in train])
    monkeypatch.setattr(CIFAR10, "test_list", [list(test_file)])
    monkeypatch.setattr(CIFAR10, "meta", {**CIFAR10.meta, "md5": meta_file[1]})
    return test_images


def write_mnist(root: Path, train: int = 40, test: int = 20) -> np.ndarray:
    """MNIST as torchvision keeps it after a download: the four idx files, uncompressed, in
    ``MNIST/raw/`` (torchvision checks that they exist; no checksum). Returns the test images."""
    folder = root / "MNIST" / "raw"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    test_images = None
    for prefix, n in (("train", train), ("t10k", test)):
        images = rng.integers(0, 256, (n, 28, 28), dtype=np.uint8)
        labels = np.arange(n, dtype=np.uint8) % 10
        # idx format: a big-endian magic number (0x08: unsigned bytes; then the number of dimensions),
        # the big-endian size of each dimension, the data.
        header = np.array([0x0803, n, 28, 28], dtype=">i4").tobytes()
        (folder / f"{prefix}-images-idx3-ubyte").write_bytes(header + images.tobytes())
        (folder / f"{prefix}-labels-idx1-ubyte").write_bytes(
            np.array([0x0801, n], ">i4").tobytes() + labels.tobytes()
        )
        test_images = images
    return test_images


def batches(loader) -> list[tuple[torch.Tensor, torch.Tensor]]:
    return [(x, y) for x, y, *_ in loader]


@pytest.mark.parametrize("dataset", ["cifar10", "mnist"])
def test_cifar10_and_mnist_files_give_the_same_batches_on_both_paths(dataset, tmp_path, monkeypatch):
    """The flagship configs' default path decodes the archives in memory (TorchvisionDataModule.decode);
    the torchvision/PIL loaders read them image by image. From the files in their real formats, both give
    the same validation and test batches, bit for bit, and the test images are the pixels written."""
    if dataset == "cifar10":
        module, written = CIFAR10DataModule, write_cifar10(tmp_path, monkeypatch)
    else:
        module, written = MNISTDataModule, write_mnist(tmp_path)
    loaded = {}
    for in_memory in (True, False):
        data = module(
            data_dir=tmp_path, download=False, val_size=10, batch_size=8, num_workers=0, augment=False,
            in_memory=in_memory,
        )  # fmt: skip
        data.prepare_data()  # finds the files: no download
        data.setup("fit")
        data.setup("test")
        assert len(data.train_set) == 30 and len(data.test_set) == 20
        loaded[in_memory] = {
            "val": batches(data.val_dataloader()),
            "test": batches(data.test_dataloader()),
            "train": batches(data.train_dataloader()),  # no augmentation: the same on both paths
        }
    for split in ("val", "test", "train"):
        for (x, y), (x_pil, y_pil) in zip(loaded[True][split], loaded[False][split], strict=True):
            assert torch.equal(x, x_pil) and torch.equal(y, y_pil), split
    # The pixels written, in the file's layout, normalised with the dataset's statistics.
    pixels = (
        torch.as_tensor(written).reshape(20, 28, 28, 1) if dataset == "mnist" else torch.as_tensor(written)
    )
    mean, std = (torch.tensor(v).view(1, -1, 1, 1) for v in (data.mean, data.std))
    expected = (pixels.permute(0, 3, 1, 2).float() / 255 - mean) / std
    test_images = torch.cat([x for x, _ in loaded[True]["test"]])
    assert torch.allclose(test_images, expected, atol=1e-5)
    assert torch.cat([y for _, y in loaded[True]["test"]]).tolist() == [i % 10 for i in range(20)]


def test_a_run_trains_each_epoch_on_that_epochs_seeded_draws(in_tmp, monkeypatch):
    """What a real run trained on (recorded by a callback) is, epoch by epoch, what its seeded sampler
    draws for that epoch, a new order each epoch: Lightning advances the sampler's epoch."""
    from conftest import ROOT
    from helpers.record import image_digest

    from litvision.cli import main

    main([
        "fit", f"--config={ROOT / 'configs/digits_lstm.yaml'}", "--trainer.max_epochs=2",
        "--trainer.enable_progress_bar=false", "--trainer.enable_model_summary=false",
        "--trainer.callbacks+=helpers.record.RecordTrainingImages", "--test_after_fit=false",
    ])  # fmt: skip
    recorded = json.loads((in_tmp / "trained-rank0.json").read_text())
    assert not list(in_tmp.rglob("test_results.json")), "--test_after_fit=false: no test after fit"
    monkeypatch.setenv("PL_GLOBAL_SEED", "42")
    data = DigitsDataModule(batch_size=64, val_size=0.1)
    data.setup("fit")
    sampler = data.train_dataloader().sampler
    for epoch in range(2):
        sampler.set_epoch(epoch)
        assert recorded[epoch] == [image_digest(data.train_set[item][0]) for item in sampler], epoch
    assert recorded[0] != recorded[1] and sorted(recorded[0]) == sorted(recorded[1])
