"""Sampling schedules (Kang et al. 2020) and mixup/cutmix, as datamodule arguments."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from lightning.fabric.utilities.distributed import DistributedSamplerWrapper
from lightning.pytorch import Trainer

from litvision.data import LongTailImbalance, SyntheticDataModule
from litvision.data.device_augment import MixedBatch, mix_batch
from litvision.data.imbalance import class_probabilities
from litvision.errors import LitvisionError
from litvision.models import SimpleCNN
from litvision.module import ImageClassifier

EPOCHS = 8


def long_tailed(**kwargs) -> SyntheticDataModule:
    data = SyntheticDataModule(
        input_shape=(1, 4, 4), train_size=20000, val_size=0, imbalance=LongTailImbalance(ratio=50), **kwargs
    )
    data.trainer = Trainer(max_epochs=EPOCHS, logger=False, enable_checkpointing=False)  # for progressive
    data.setup("fit")
    return data


def drawn_frequencies(data: SyntheticDataModule, epochs: list[int]) -> np.ndarray:
    sampler = data.train_dataloader().sampler
    targets = np.asarray(data.train_targets)
    drawn = []
    for epoch in epochs:
        sampler.set_epoch(epoch)
        drawn += [targets[i] for i, _ in sampler]
    return np.bincount(drawn, minlength=data.num_classes) / len(drawn)


@pytest.mark.parametrize(
    ("sampling", "q"), [("instance", 1.0), ("square_root", 0.5), ("class_balanced", 0.0), (0.25, 0.25)]
)
def test_sampling_draws_class_j_with_probability_proportional_to_n_j_to_the_q(sampling, q):
    data = long_tailed(sampling=sampling)
    n = np.asarray(data.train_class_counts, dtype=float)
    expected = n**q / (n**q).sum()
    # 4 epochs of 5,580 draws: a class's share has a standard error below 0.0035; 0.02 is over 5 of them.
    assert drawn_frequencies(data, [0, 1, 2, 3]) == pytest.approx(expected, abs=0.02)


def test_progressive_sampling_moves_from_instance_to_class_balanced():
    data = long_tailed(sampling="progressive")
    n = np.asarray(data.train_class_counts, dtype=float)
    instance, balanced = n / n.sum(), np.full(len(n), 1 / len(n))
    # One epoch of 5,580 draws: standard errors below 0.007; 0.03 is over 4 of them.
    assert drawn_frequencies(data, [0]) == pytest.approx(instance, abs=0.03)
    assert drawn_frequencies(data, [EPOCHS - 1]) == pytest.approx(balanced, abs=0.03)
    middle = class_probabilities(n, "progressive", EPOCHS, 3)
    a = 3 / (EPOCHS - 1)  # Kang et al.: (1 - t/T) p_IB + (t/T) p_CB, here over the epochs 0..T-1
    assert middle == pytest.approx((1 - a) * instance + a * balanced)


def test_oversample_is_class_balanced_sampling_and_every_schedule_is_seeded_per_epoch():
    alias, named = long_tailed(oversample=True), long_tailed(sampling="class_balanced")
    a, b = alias.train_dataloader().sampler, named.train_dataloader().sampler
    for epoch in (0, 5):
        a.set_epoch(epoch)
        b.set_epoch(epoch)
        assert list(a) == list(b), "the same draws: a resumed run draws the same epoch again"
    first, second = list(a), (a.set_epoch(6), list(a))[1]
    assert first != second


def test_progressive_sampler_gives_each_ddp_rank_its_own_share_of_the_same_draws():
    sampler = long_tailed(sampling="progressive").train_dataloader().sampler
    sampler.set_epoch(4)
    draws = list(sampler)
    shares = [list(DistributedSamplerWrapper(sampler, num_replicas=2, rank=r, shuffle=False)) for r in (0, 1)]
    # An odd number of draws: the wrapper pads the last rank with the first draw (an even share each).
    assert shares[0] == draws[0::2] and shares[1][: len(draws[1::2])] == draws[1::2]


def test_mixup_and_cutmix_mix_images_and_labels_by_the_same_share():
    x = torch.rand(6, 3, 8, 8)
    y = torch.arange(6)
    mixed = mix_batch((x, y), mixup_alpha=1.0, cutmix_alpha=0.0, rng=np.random.default_rng(0))
    order = mixed.partner  # labels are 0..5, so the partner labels are the pairing
    assert torch.allclose(mixed.x, mixed.lam * x + (1 - mixed.lam) * x[order])
    cut = mix_batch((x, y), mixup_alpha=0.0, cutmix_alpha=1.0, rng=np.random.default_rng(1))
    from_partner = (cut.x == x[cut.partner]).all(dim=1) & (cut.x != x).all(dim=1)  # pixels pasted in
    moved = cut.partner != y
    share = from_partner[moved].float().mean().item()
    assert share == pytest.approx(1 - cut.lam, abs=1e-6), "lam is the share of the image kept"


def test_cutmix_prob_cuts_that_share_of_the_batches_and_leaves_the_others_as_they_came():
    """Yun et al.'s CIFAR recipe cuts a batch with probability ``cutmix_prob`` 0.5; 1 cuts every batch,
    with the same draws as before the option existed."""
    x, y = torch.rand(4, 3, 8, 8), torch.arange(4)
    batches = [mix_batch((x, y), 0.0, 1.0, np.random.default_rng(s), cutmix_prob=0.5) for s in range(200)]
    plain = [b for b in batches if not isinstance(b, MixedBatch)]
    assert 80 <= len(plain) <= 120 and all(b[0] is x and b[1] is y for b in plain)
    for seed in range(5):
        always = mix_batch((x, y), 0.0, 1.0, np.random.default_rng(seed), cutmix_prob=1.0)
        assert always.lam == mix_batch((x, y), 0.0, 1.0, np.random.default_rng(seed)).lam < 1
    # With mixup on too, only the batches drawn for CutMix may stay plain.
    both = [mix_batch((x, y), 0.4, 1.0, np.random.default_rng(s), cutmix_prob=0.0) for s in range(100)]
    mixed = [b for b in both if isinstance(b, MixedBatch)]
    assert 30 <= len(mixed) <= 70
    assert all(torch.allclose(b.x, b.lam * x + (1 - b.lam) * x[b.partner]) for b in mixed)  # mixup
    with pytest.raises(LitvisionError, match=r"cutmix_prob=1.5 is invalid: it is a probability, 0 to 1"):
        SyntheticDataModule(cutmix_alpha=1.0, cutmix_prob=1.5).check_options()


def test_a_mixed_batch_trains_on_both_labels_and_counts_the_larger_share():
    model = ImageClassifier(SimpleCNN, num_classes=4, input_shape=(1, 8, 8))
    x, y, partner = torch.rand(5, 1, 8, 8), torch.tensor([0, 1, 2, 3, 0]), torch.tensor([1, 1, 2, 3, 1])
    logits = model(x)
    loss = model._step(MixedBatch(x, y, None, partner, 0.3), "train")
    expected = 0.3 * torch.nn.functional.cross_entropy(logits, y) + 0.7 * torch.nn.functional.cross_entropy(
        logits, partner
    )
    assert loss.item() == pytest.approx(expected.item(), rel=1e-5)
    confmat = model.train_metrics.counts.view(4, 4)
    assert confmat.sum(dim=1).tolist() == torch.bincount(partner, minlength=4).tolist(), "lam < 1/2: partner"


@pytest.mark.parametrize("in_memory", [True, False], ids=["in_memory", "pil"])
def test_mixing_runs_on_both_data_paths_seeded_by_the_batch_position(in_memory, in_tmp):
    """Every training batch (no validation batch, nor the model summary's example input) is mixed, with
    draws fixed by the run seed, the rank and the batch's position in the fit: what a resumed run
    recomputes."""
    from litvision.cli import LitvisionCLI

    args = [
        "--model.backbone=litvision.models.SimpleCNN", "--data=litvision.data.SyntheticDataModule",
        "--data.input_shape=[3,8,8]", "--data.train_size=96", "--data.val_size=16", "--data.batch_size=16",
        f"--data.in_memory={str(in_memory).lower()}", "--data.mixup_alpha=0.4", "--data.cutmix_alpha=1.0",
        "--data.sampling=square_root", "--trainer.max_epochs=1", "--trainer.accelerator=cpu",
        "--trainer.enable_progress_bar=false", "--trainer.logger=false",
        "--trainer.enable_checkpointing=false", "--test_after_fit=false",
    ]  # fmt: skip
    # The model summary stays on, as for a user: it sends its example input through the same hook.
    seen: list[MixedBatch] = []
    cli = LitvisionCLI(args=args, run=False)
    original = cli.datamodule.on_after_batch_transfer

    def record(batch, dataloader_idx):
        out = original(batch, dataloader_idx)
        seen.append(out)
        return out

    cli.datamodule.on_after_batch_transfer = record
    cli.trainer.fit(cli.model, datamodule=cli.datamodule)
    training = [b for b in seen if isinstance(b, MixedBatch)]
    assert len(training) == 5, "every training batch mixed, no validation batch"
    shape = (16, 3, 8, 8)
    expected = [
        mix_batch(
            (torch.zeros(shape), torch.zeros(16, dtype=torch.long)),
            0.4,
            1.0,
            np.random.default_rng([42, 0, p]),
        ).lam
        for p in range(5)
    ]
    assert [b.lam for b in training] == expected
