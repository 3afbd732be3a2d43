"""Imbalance profiles, oversampling and Gaussian-noise minority copies, as datamodule arguments."""

from __future__ import annotations

import math
from collections import Counter

import numpy as np
import pytest
import torch

from litvision.data import DigitsDataModule, LongTailImbalance, StepImbalance, SyntheticDataModule
from litvision.data.imbalance import NoisyCopies
from litvision.errors import LitvisionError

VARIANCES = [round(0.1 * k, 1) for k in range(1, 10)]


def synthetic(**kwargs) -> SyntheticDataModule:
    options = {
        "num_classes": 10,
        "input_shape": (1, 8, 8),
        "train_size": 2000,
        "test_size": 100,
        "val_size": 0.1,
    }
    data = SyntheticDataModule(**{**options, **kwargs})
    data.setup("fit")
    return data


def test_step_profile_keeps_the_floor_of_the_fraction():
    available = synthetic().kept_class_counts
    data = synthetic(imbalance=StepImbalance(classes=[0, 1, 2, 3, 4], fraction=0.1))
    expected = [math.floor(n * 0.1) if c < 5 else n for c, n in enumerate(available)]
    assert data.kept_class_counts == expected == data.train_class_counts
    assert len(data.val_set) == 200, "the validation split is carved before, and stays balanced"


def test_step_profile_reproduces_report_002_mnist_counts():
    # MNIST's training counts per digit; 002 kept 10% of digits 0-4 and reported these counts.
    mnist = [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]
    counts = StepImbalance().counts(mnist)
    assert counts == [592, 674, 595, 613, 584, 5421, 5918, 6265, 5851, 5949]


def test_long_tail_profile_is_exponential():
    available = synthetic().kept_class_counts
    data = synthetic(imbalance=LongTailImbalance(ratio=10))
    expected = [math.floor(n * 10 ** (-i / 9)) for i, n in enumerate(available)]
    assert data.kept_class_counts == expected
    assert expected[0] == available[0] and expected[-1] == available[-1] // 10


def test_imbalance_is_seeded_and_deterministic():
    first = synthetic(imbalance=StepImbalance(fraction=0.3))
    again = synthetic(imbalance=StepImbalance(fraction=0.3))
    other = synthetic(imbalance=StepImbalance(fraction=0.3), split_seed=1)
    assert first.train_set.indices == again.train_set.indices
    assert first.train_set.indices != other.train_set.indices


def test_imbalance_applies_to_training_only_on_real_data():
    data = DigitsDataModule(imbalance=StepImbalance(fraction=0.2))
    data.setup("fit")
    data.setup("test")
    assert len(data.test_set) == 360
    assert Counter(data.val_set[i][1] for i in range(len(data.val_set)))[0] >= 14


@pytest.mark.parametrize(
    "make, message",
    [
        (
            lambda: synthetic(imbalance=StepImbalance(fraction=0)),
            r"fraction=0 is invalid: it must be in \(0, 1\]",
        ),
        (lambda: synthetic(imbalance=StepImbalance(fraction=1.5)), r"fraction=1.5 is invalid"),
        (lambda: synthetic(imbalance=StepImbalance(classes=[1, 1])), "must be distinct class ids"),
        (
            lambda: synthetic(imbalance=LongTailImbalance(ratio=0.5)),
            "ratio=0.5 is invalid: it must be at least 1",
        ),
        (
            lambda: synthetic(imbalance=StepImbalance(classes=[3, 12])),
            r"imbalance classes \[12\] do not exist",
        ),
        (
            lambda: synthetic(imbalance=StepImbalance(fraction=0.001)),
            "leaves classes .* with no training image",
        ),
        (lambda: synthetic(noise_variances=[0.1]), "noise_variances needs the classes to copy"),
        (
            lambda: synthetic(noise_variances=[0.1, -0.2], noise_classes=[0]),
            r"noise variances \[-0.2\] are negative",
        ),
        (lambda: synthetic(noise_variances=[0.1], noise_classes=[10]), r"noise_classes \[10\] do not exist"),
    ],
)
def test_invalid_settings_stop_with_a_clear_error(make, message):
    with pytest.raises(LitvisionError, match=message):
        make()


def test_noise_copies_restore_the_class_sizes():
    data = synthetic(imbalance=StepImbalance(fraction=0.1), noise_variances=VARIANCES)
    kept, trained = data.kept_class_counts, data.train_class_counts
    assert trained == [k * 10 if c < 5 else k for c, k in enumerate(kept)]
    assert len(data.train_set) == sum(trained)
    envs = Counter(data.train_set[i][2] for i in range(len(data.train_set)))
    assert envs == {0: sum(kept), 1: 9 * sum(kept[:5])}


def test_noise_copies_have_the_stated_variance_and_are_fresh_at_each_read():
    data = synthetic(imbalance=StepImbalance(classes=[0], fraction=0.5), noise_variances=[0.4], augment=False)
    base = data.train_set.dataset
    copy_index = len(base)  # the first noisy copy
    source = data.train_set.copies[0]
    x, y, env = data.train_set[copy_index]
    original, label = base[source]
    assert env == 1 and y == label == 0
    torch.manual_seed(0)
    noise = torch.cat([data.train_set[copy_index][0] - original for _ in range(200)])
    assert noise.mean().abs() < 0.03 and abs(noise.var().item() - 0.4) < 0.03
    assert not torch.equal(data.train_set[copy_index][0], data.train_set[copy_index][0])


def test_in_memory_noise_copies_make_batches_with_and_without_copies():
    """The batch path reads copies by their own indices: a batch of originals needs none, and a noise
    class with no training image (no copies at all) still trains."""
    data = synthetic(train_size=60, num_classes=3, in_memory=True, noise_variances=[0.4], noise_classes=[2])
    base, copies = data.train_set.dataset, data.train_set.copies
    empty = NoisyCopies(base, [], [0.4])
    x, y, env = empty.__getitems__([0, 1, 2])
    assert torch.equal(x, base.__getitems__(np.array([0, 1, 2]))[0]) and env.tolist() == [0, 0, 0]
    x, y, env = data.train_set.__getitems__([1, len(base), len(base) + 1])
    assert env.tolist() == [0, 1, 1] and y.tolist()[1:] == [2, 2]
    assert not torch.equal(x[1], base.__getitems__(np.array([copies[0]]))[0][0])  # noise was added


def test_oversampling_draws_classes_uniformly():
    data = synthetic(imbalance=LongTailImbalance(ratio=20), oversample=True, batch_size=256)
    loader = data.train_dataloader()
    sampler = loader.batch_sampler.sampler if loader.batch_sampler is not None else loader.sampler
    labels = []
    for epoch in range(3):  # new draws every epoch, as Lightning asks for with set_epoch
        sampler.set_epoch(epoch)
        labels += [y for _, y in loader]
    labels = torch.cat(labels)
    assert len(labels) == 3 * sum(data.train_class_counts)
    share = np.bincount(labels.numpy(), minlength=10) / len(labels)
    sigma = math.sqrt(0.1 * 0.9 / len(labels))
    assert np.all(np.abs(share - 0.1) < 4 * sigma), share


def test_long_tail_profile_gives_cao_et_al_cifar10_lt_counts():
    """CIFAR-10-LT at ratio 100 (Cao et al. 2019's ``int(5000 * 0.01 ** (i / 9))``), and what our
    balanced validation split of 500 per class, carved first, leaves of it."""
    profile = LongTailImbalance(ratio=100)
    assert profile.counts([5000] * 10) == [5000, 2997, 1796, 1077, 645, 387, 232, 139, 83, 50]
    assert profile.counts([4500] * 10) == [4500, 2697, 1617, 969, 581, 348, 208, 125, 75, 45]
