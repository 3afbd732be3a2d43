"""The in-memory path: whole-batch augmentation with torchvision's semantics, the same tensors as the PIL
path, the decoded-image cache, and training steps that never read back from the device."""

from __future__ import annotations

import collections
import math
import os
from pathlib import Path

import numpy as np
import pytest
import torch
from lightning.pytorch import Callback, Trainer
from PIL import Image
from test_data import write_images
from torch.overrides import TorchFunctionMode
from torchvision.transforms import v2
from torchvision.transforms.v2 import functional as TF

from litvision.cli import LitvisionCLI
from litvision.data import (
    CIFAR10DataModule,
    DigitsDataModule,
    ImageFolderDataModule,
    StepImbalance,
    SyntheticDataModule,
)
from litvision.data.base import TransformedSubset
from litvision.data.device_augment import BatchTransform, random_crop, random_flip
from litvision.data.memory import InMemorySubset
from litvision.errors import LitvisionError
from litvision.models import SimpleCNN
from litvision.module import ImageClassifier, compile_mode


def write_folder(root: Path, counts: dict[str, int], size: tuple[int, int], suffix: str = ".png") -> None:
    """Random RGB images of ``size`` (width, height) in ``root/<class>/``."""
    rng = np.random.default_rng(0)
    for name, count in counts.items():
        (root / name).mkdir(parents=True, exist_ok=True)
        for i in range(count):
            pixels = rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
            Image.fromarray(pixels).save(root / name / f"{i}{suffix}")


def distinct_image(channels: int = 3, size: int = 8) -> torch.Tensor:
    """A uint8 image whose pixels all differ (and differ from the padding value 0)."""
    return torch.arange(1, channels * size * size + 1, dtype=torch.uint8).view(channels, size, size)


def test_random_crop_is_torchvisions_padded_crop_at_a_uniform_offset():
    torch.manual_seed(0)
    image = distinct_image()
    crops = random_crop(image.expand(4000, -1, -1, -1), (8, 8), padding=(4, 4, 4, 4))
    padded = TF.pad(image, [4, 4, 4, 4], fill=0)
    windows = {(t, x): TF.crop(padded, t, x, 8, 8) for t in range(9) for x in range(9)}
    offsets = []
    for crop in crops:
        found = [offset for offset, window in windows.items() if torch.equal(crop, window)]
        assert len(found) == 1, "every crop is a window of the padded image"
        offsets.append(found[0])
    counts = collections.Counter(offsets)
    expected, sigma = 4000 / 81, math.sqrt(4000 / 81 * (1 - 1 / 81))
    assert len(counts) == 81 and all(abs(c - expected) < 4.5 * sigma for c in counts.values()), counts


@pytest.mark.parametrize("dim, flip", [(-1, TF.horizontal_flip), (-2, TF.vertical_flip)])
def test_flips_happen_to_half_of_the_images(dim, flip):
    torch.manual_seed(0)
    image = distinct_image()
    out = random_flip(image.expand(4000, -1, -1, -1), p=0.5, dim=dim)
    flipped = torch.tensor([torch.equal(o, flip(image)) for o in out])
    kept = torch.tensor([torch.equal(o, image) for o in out])
    assert bool((flipped ^ kept).all()), "each image is either flipped or left as it is"
    assert abs(flipped.float().mean().item() - 0.5) < 4 * math.sqrt(0.25 / 4000)


def test_batch_transform_gives_what_the_torchvision_pipeline_can_give():
    """Each augmented image equals the PIL path's train transform for one of its crops and flips,
    normalisation included, to the bit."""
    data = CIFAR10DataModule(data_dir="unused")
    images = torch.randint(0, 256, (16, 3, 32, 32), dtype=torch.uint8)
    torch.manual_seed(0)
    out = data.batch_transform(train=True)(images)
    assert out.dtype == torch.float32 and out.shape == images.shape
    finish = v2.Compose([v2.ToDtype(torch.float32, scale=True), v2.Normalize(data.mean, data.std)])
    for image, result in zip(images, out):
        padded = TF.pad(image, [4, 4, 4, 4], fill=0)
        candidates = [
            finish(TF.horizontal_flip(crop) if flipped else crop)
            for t in range(9)
            for left in range(9)
            for crop in [TF.crop(padded, t, left, 32, 32)]
            for flipped in (False, True)
        ]
        assert any(torch.equal(result, c) for c in candidates)
    torch.manual_seed(0)
    eval_out = data.batch_transform(train=False)(images)
    expected = torch.stack([data.eval_transform()(image) for image in images])
    assert torch.equal(eval_out, expected)


@pytest.mark.parametrize(
    "options",
    [{}, {"image_size": 12, "grayscale": True}],
    ids=["rgb", "resized_grey"],
)
def test_in_memory_batches_equal_the_pil_path(tmp_path, options):
    """Same images, same order: evaluation batches and unaugmented training batches are identical."""
    write_folder(tmp_path / "train", {"a": 9, "b": 7}, (16, 16), suffix=".jpg")
    write_folder(tmp_path / "test", {"a": 3, "b": 4}, (16, 16))
    batches = {}
    for in_memory in (True, False):
        data = ImageFolderDataModule(
            tmp_path, val_size=4, batch_size=5, augment=False, num_workers=0, in_memory=in_memory, **options
        )
        data.setup("fit")
        data.setup("test")
        kind = InMemorySubset if in_memory else TransformedSubset
        assert isinstance(data.train_set, kind) and isinstance(data.test_set, kind)
        batches[in_memory] = [
            list(loader)
            for loader in (data.train_dataloader(), data.val_dataloader(), data.test_dataloader())
        ]
    for fast, pil in zip(batches[True], batches[False]):
        assert len(fast) == len(pil) > 0
        for (x_fast, y_fast), (x_pil, y_pil) in zip(fast, pil):
            assert torch.equal(x_fast, x_pil) and torch.equal(y_fast, y_pil)


def test_noisy_copies_in_a_batch():
    """A batch mixing originals and noisy copies: labels and environments follow the indices, and each
    copy is its original plus noise of the stated variance."""
    data = SyntheticDataModule(
        input_shape=(1, 16, 16),
        train_size=200,
        val_size=0,
        augment=False,
        imbalance=StepImbalance(classes=[0], fraction=0.5),
        noise_variances=[0.4],
    )
    data.setup("fit")
    train = data.train_set
    originals = train.dataset
    assert isinstance(originals, InMemorySubset)
    copies = list(range(len(originals), len(train)))
    items = [(i, 1000 + i) for i in [0, 1, *copies]]  # (index, seed), as the training sampler gives
    x, y, env = train.__getitems__(items)
    assert env.tolist() == [0, 0] + [1] * len(copies)
    source = [0, 1, *[train.copies[c - len(originals)] for c in copies]]
    clean, labels = originals.__getitems__(source)
    assert torch.equal(y, labels) and set(y[2:].tolist()) == {0}
    assert torch.equal(x[:2], clean[:2])
    noise = x[2:] - clean[2:]
    assert abs(noise.mean().item()) < 0.03 and abs(noise.var().item() - 0.4) < 0.03


def test_seeded_items_make_the_same_batch_and_other_seeds_another():
    """Training items carry seeds (data/resumable.py): a batch is a function of them, so that a run is
    reproducible and resumes exactly."""
    data = SyntheticDataModule(train_size=64, val_size=0, noise_variances=[0.3], noise_classes=[1])
    data.setup("fit")
    items = [(i, 7 * i + 1) for i in range(0, len(data.train_set), 3)]
    first, again = data.train_set.__getitems__(items), data.train_set.__getitems__(items)
    other = data.train_set.__getitems__([(i, s + 1) for i, s in items])
    assert all(torch.equal(a, b) for a, b in zip(first, again))
    assert not torch.equal(first[0], other[0])


def test_decoded_images_are_cached_and_rebuilt_when_a_file_changes(tmp_path):
    write_folder(tmp_path / "train", {"a": 6, "b": 6}, (8, 8))
    write_folder(tmp_path / "test", {"a": 2, "b": 2}, (8, 8))

    def train_images(in_memory: bool = True) -> torch.Tensor:
        data = ImageFolderDataModule(tmp_path, val_size=0, augment=False, num_workers=0, in_memory=in_memory)
        data.setup("fit")
        return torch.cat([x for x, _ in data.train_dataloader()])

    first = train_images()
    caches = sorted(tmp_path.glob(".litvision-train-*.pt"))
    assert len(caches) == 1
    stamp = caches[0].stat().st_mtime_ns
    assert torch.equal(train_images(), first) and caches[0].stat().st_mtime_ns == stamp, "read, not rebuilt"

    changed = tmp_path / "train" / "a" / "0.png"
    Image.fromarray(np.full((8, 8, 3), 200, dtype=np.uint8)).save(changed)
    os.utime(changed, ns=(stamp + 10**9, stamp + 10**9))  # a new modification time, whatever the clock
    rebuilt = train_images()
    assert [p.name for p in tmp_path.glob(".litvision-train-*.pt")] != [caches[0].name], "old cache replaced"
    assert len(list(tmp_path.glob(".litvision-train-*"))) == 1, "no stale cache or temporary file left"
    assert not torch.equal(rebuilt, first) and torch.equal(rebuilt, train_images(in_memory=False))


def test_images_of_different_sizes_stop_with_one_line(tmp_path):
    write_folder(tmp_path / "train", {"a": 3}, (8, 8))
    write_folder(tmp_path / "train" / "b", {"": 1}, (9, 8))
    write_folder(tmp_path / "test", {"a": 1}, (8, 8))
    data = ImageFolderDataModule(tmp_path, val_size=0, num_workers=0, in_memory=True)
    with pytest.raises(LitvisionError, match=r"image '.*0\.png' has shape \(3, 8, 9\), not \(3, 8, 8\)"):
        data.setup("fit")


class RotatingDigits(DigitsDataModule):
    """Digits with an augmentation that has no whole-batch version."""

    def augmentations(self) -> list:
        return [v2.RandomRotation(10)]


def test_in_memory_choice():
    auto = DigitsDataModule()
    auto.setup("fit")
    assert isinstance(auto.train_set, InMemorySubset), "small datasets are held in memory by default"
    pil = DigitsDataModule(in_memory=False)
    pil.setup("fit")
    assert isinstance(pil.train_set, TransformedSubset)
    rotating = RotatingDigits(augment=True)  # "auto": falls back to the PIL path
    rotating.setup("fit")
    assert isinstance(rotating.train_set, TransformedSubset)
    with pytest.raises(LitvisionError, match=r"^RandomRotation cannot run per batch .*use in_memory: false$"):
        RotatingDigits(augment=True, in_memory=True).check_options()
    with pytest.raises(LitvisionError, match=r"in_memory='yes' is invalid: use true, false or auto"):
        DigitsDataModule(in_memory="yes")


def test_batch_transform_refuses_padding_it_cannot_reproduce():
    with pytest.raises(LitvisionError, match="only constant padding"):
        BatchTransform([v2.RandomCrop(8, padding=2, padding_mode="reflect")], (0.5,), (0.5,))


# torch calls that make the host wait for a GPU: reading values back (bincount reads the largest one to
# size its result), and making a tensor from Python data on a device (a copy from pageable memory).
HOST_READS = {"item", "tolist", "numpy", "cpu", "__bool__", "__int__", "__float__", "__index__", "nonzero",
              "unique", "_unique2", "masked_select", "bincount"}  # fmt: skip
FROM_PYTHON = {"tensor", "as_tensor", "asarray", "scalar_tensor"}


class CountHostWaits(TorchFunctionMode):
    """Counts, while ``active``, the calls that would make the host wait for a GPU, per training step.

    On the CPU the device cannot be told from the host, so calls are judged by name; reads of the
    optimizers' step counters are left out: torch keeps Adam's ``step`` on the host (unless
    ``capturable``), and reading it does not wait for the device."""

    def __init__(self) -> None:
        super().__init__()
        self.active = False
        self.step = -1
        self.on_host: set[int] = set()  # ids of tensors that live on the host whatever the device
        self.calls: collections.Counter[tuple[int, str]] = collections.Counter()

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        name = getattr(func, "__name__", "")
        copied = name in FROM_PYTHON and "device" in kwargs and not isinstance(args[0], torch.Tensor)
        host = bool(args) and id(args[0]) in self.on_host
        if self.active and (name in HOST_READS or copied) and not host:
            self.calls[self.step, name] += 1
        return func(*args, **kwargs)


class DuringTrainingSteps(Callback):
    """Turns the counter on from the start of the third training batch to the start of the last one:
    whole steps, with the loading of the next batch and every end-of-step hook."""

    def __init__(self, counter: CountHostWaits) -> None:
        self.counter = counter

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        self.counter.active = 2 <= batch_idx < trainer.num_training_batches - 1
        self.counter.step = trainer.global_step + 1  # the step this batch makes (its end hooks see it)
        for optimizer in trainer.optimizers:
            steps = [state["step"] for state in optimizer.state.values() if "step" in state]
            self.counter.on_host.update(id(t) for t in steps if t.device.type == "cpu")


def test_training_steps_never_wait_for_the_device(in_tmp, monkeypatch):
    """The default path (Adam, in-memory images with random crop and flip, noisy copies), progress bar
    on: between logging steps nothing in a training step (data, augmentation, forward, backward, step,
    metrics, hooks) makes the host wait for the device, so on a GPU the CPU runs ahead of it; a logging
    step (every ``log_every_n_steps``) reads the device twice: the finite-loss check and the logged loss.

    Judged on the CPU by the names of the calls (no GPU here): a GPU-only wait that torch makes inside
    one operation (e.g. an allocator's) is not seen."""
    monkeypatch.setenv("PL_GLOBAL_SEED", "42")  # restored afterwards: the run's seed stays in this test
    write_images(in_tmp / "images/train", {"a": 60, "b": 60, "c": 60}, (16, 16))
    write_images(in_tmp / "images/test", {"a": 1, "b": 1, "c": 1}, (16, 16))
    counter = CountHostWaits()
    with counter:
        LitvisionCLI(
            args=[
                "fit",
                "--model.backbone=litvision.models.SimpleCNN",  # the default optimizer: Adam
                "--data=litvision.data.ImageFolderDataModule",
                "--data.data_dir=images",
                "--data.val_size=0",
                "--data.batch_size=20",  # (180 + 60 noisy copies) / 20 = 12 steps
                "--data.in_memory=true",  # random crop with padding and flip, per image on the device
                "--data.noise_variances=[0.2]",
                "--data.noise_classes=[0]",
                "--trainer.max_epochs=1",
                "--trainer.log_every_n_steps=4",  # logging steps 4 and 8 in the watched steps 3 to 11
                "--test_after_fit=false",
            ],
            trainer_defaults={"callbacks": [DuringTrainingSteps(counter)]},
        )
    assert counter.calls and {step for step, _ in counter.calls} == {4, 8}, counter.calls
    assert all(sum(n for (s, _), n in counter.calls.items() if s == step) <= 2 for step in (4, 8)), (
        counter.calls
    )


def fit_briefly(**model_options) -> ImageClassifier:
    """An ImageClassifier (simple CNN) after two training steps on synthetic data, on the CPU."""
    data = SyntheticDataModule(input_shape=(3, 16, 16), train_size=64, val_size=0, batch_size=32)
    model = ImageClassifier(
        lambda n, shape: SimpleCNN(n, shape, channels=(8, 16), hidden=(32,)), input_shape=(3, 16, 16),
        **model_options,
    )  # fmt: skip
    trainer = Trainer(
        accelerator="cpu", max_steps=2, logger=False, enable_checkpointing=False, enable_progress_bar=False,
        enable_model_summary=False,
    )  # fmt: skip
    trainer.fit(model, datamodule=data)
    return model


def test_channels_last_changes_the_layout_not_the_results():
    model = fit_briefly(channels_last=True)
    convs = [m for m in model.net.modules() if isinstance(m, torch.nn.Conv2d)]
    assert convs and all(c.weight.is_contiguous(memory_format=torch.channels_last) for c in convs)
    plain = ImageClassifier(
        lambda n, shape: SimpleCNN(n, shape, channels=(8, 16), hidden=(32,)), input_shape=(3, 16, 16)
    )
    plain.load_state_dict(model.state_dict())  # the checkpoint of a channels-last run loads anywhere
    x = torch.randn(4, 3, 16, 16)
    model.eval(), plain.eval()
    assert torch.allclose(model(x), plain(x), atol=1e-5)
    assert not fit_briefly().uses_channels_last, "auto: off on the CPU"


def test_compile_auto_captures_cuda_graphs_only_where_the_replay_is_safe():
    """``compile: auto`` (the default) trains with CUDA graphs on one GPU for a convolutional network
    without gradient accumulation, and eager everywhere else; CUDA graphs with accumulation are refused."""
    cnn, lstm = SimpleCNN(10, (3, 16, 16)), torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.LSTM(4, 4))
    gpu, cpu = torch.device("cuda", 0), torch.device("cpu")
    assert compile_mode("auto", gpu, 1, 1, cnn) == "reduce-overhead"
    eager = [(cpu, 1, 1, cnn), (gpu, 2, 1, cnn), (gpu, 1, 4, cnn), (gpu, 1, 1, lstm)]
    for device, world, accumulate, net in eager:
        assert compile_mode("auto", device, world, accumulate, net) is None, (device, world, accumulate, net)
    assert compile_mode(True, cpu, 1, 1, cnn) == "default" and compile_mode(False, gpu, 1, 1, cnn) is None
    assert compile_mode("max-autotune-no-cudagraphs", gpu, 1, 4, cnn) == "max-autotune-no-cudagraphs"
    with pytest.raises(LitvisionError, match="compile='reduce-overhead' .* accumulate_grad_batches=4"):
        compile_mode("reduce-overhead", gpu, 1, 4, cnn)
    assert fit_briefly().compiled_mode is None, "auto: eager on the CPU"


@pytest.mark.slow
def test_compiled_network_trains_and_keeps_the_eager_networks_checkpoint_keys():
    model = fit_briefly(compile="reduce-overhead")
    assert model.compiled_mode == "reduce-overhead"
    eager = ImageClassifier(
        lambda n, shape: SimpleCNN(n, shape, channels=(8, 16), hidden=(32,)), input_shape=(3, 16, 16)
    )
    assert list(model.state_dict()) == list(eager.state_dict())
    eager.load_state_dict(model.state_dict())
