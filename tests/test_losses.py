"""The class-count-aware losses against their papers' closed forms, and how the counts reach them."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from conftest import ROOT

from litvision.cli import LitvisionCLI
from litvision.errors import LitvisionError
from litvision.objectives import (
    BalancedSoftmax,
    CrossEntropy,
    FocalLoss,
    LDAMLoss,
    LogitAdjustedLoss,
    effective_number_weights,
    posthoc_adjusted,
)

COUNTS = np.array([500, 200, 60, 12, 3])
BETA = 0.999


def batch(seed: int = 0, n: int = 16) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return rng.normal(0, 2, (n, len(COUNTS))), rng.integers(0, len(COUNTS), n)


def log_softmax(z: np.ndarray) -> np.ndarray:
    z = z - z.max(axis=1, keepdims=True)
    return z - np.log(np.exp(z).sum(axis=1, keepdims=True))


def nll(z: np.ndarray, y: np.ndarray) -> np.ndarray:
    return -log_softmax(z)[np.arange(len(y)), y]


def cb_weights(counts: np.ndarray, beta: float) -> np.ndarray:
    """Cui et al. 2019, eq. for the class-balanced term, normalised to sum to the number of classes."""
    w = (1 - beta) / (1 - beta ** counts.astype(np.float64))
    return w / w.sum() * len(counts)


def evaluate(loss: torch.nn.Module, z: np.ndarray, y: np.ndarray, **kwargs) -> float:
    loss.set_class_counts(COUNTS.tolist())
    return float(loss(torch.tensor(z), torch.tensor(y), **kwargs))


def test_cross_entropy_and_class_balanced_weights_equal_their_closed_forms():
    z, y = batch()
    assert evaluate(CrossEntropy(5), z, y) == pytest.approx(nll(z, y).mean(), rel=1e-6)
    w = cb_weights(COUNTS, BETA)
    expected = (w[y] * nll(z, y)).sum() / w[y].sum()
    assert evaluate(CrossEntropy(5, class_balanced_beta=BETA), z, y) == pytest.approx(expected, rel=1e-5)
    assert effective_number_weights(torch.tensor(COUNTS), BETA).numpy() == pytest.approx(w, rel=1e-5)
    # beta -> 1 tends to inverse frequency (the effective number tends to n).
    inverse = (1 / COUNTS) / (1 / COUNTS).sum() * 5
    assert effective_number_weights(torch.tensor(COUNTS), 1 - 1e-9).numpy() == pytest.approx(
        inverse, rel=1e-3
    )


def test_deferred_reweighting_switches_the_weights_on_at_its_epoch():
    z, y = batch(1)
    drw = CrossEntropy(5, class_balanced_beta=0.9999, reweight_from_epoch=3)
    drw.epoch = 2
    assert evaluate(drw, z, y) == pytest.approx(nll(z, y).mean(), rel=1e-6)
    drw.epoch = 3
    w = cb_weights(COUNTS, 0.9999)
    assert evaluate(drw, z, y) == pytest.approx((w[y] * nll(z, y)).sum() / w[y].sum(), rel=1e-5)


@pytest.mark.parametrize("beta", [0.0, BETA])
def test_focal_loss_equals_lin_et_al_summed_over_the_batch_size(beta):
    """The class-balanced focal loss as Cui et al.'s and Cao et al.'s code average it: the weighted sum
    over the batch divided by the batch size, not by the sum of the batch's weights (as cross-entropy's)."""
    z, y = batch(2)
    p = np.exp(-nll(z, y))
    per_sample = -((1 - p) ** 2) * np.log(p)
    w = cb_weights(COUNTS, beta) if beta else np.ones(5)
    expected = (w[y] * per_sample).sum() / len(y)
    assert evaluate(FocalLoss(5, gamma=2.0, class_balanced_beta=beta), z, y) == pytest.approx(
        expected, rel=1e-6
    )
    # gamma 0: Cao et al.'s FocalLoss, the per-sample weighted cross-entropy averaged over the batch.
    weighted = F.cross_entropy(torch.tensor(z), torch.tensor(y), weight=torch.tensor(w), reduction="none")
    assert evaluate(FocalLoss(5, gamma=0.0, class_balanced_beta=beta), z, y) == pytest.approx(
        float(weighted.mean()), rel=1e-6
    )


@pytest.mark.parametrize("tau", [1.0, 2.0])
def test_logit_adjusted_loss_is_cross_entropy_on_logits_plus_tau_log_prior(tau):
    z, y = batch(3)
    prior = COUNTS / COUNTS.sum()
    expected = nll(z + tau * np.log(prior), y).mean()
    assert evaluate(LogitAdjustedLoss(5, tau=tau), z, y) == pytest.approx(expected, rel=1e-5)


def test_balanced_softmax_weights_each_exponential_by_its_class_count():
    z, y = batch(4)
    # Ren et al. 2020, eq. 4: phi_y = n_y exp(z_y) / sum_j n_j exp(z_j).
    scaled = COUNTS * np.exp(z)
    expected = -np.log(scaled[np.arange(len(y)), y] / scaled.sum(axis=1)).mean()
    assert evaluate(BalancedSoftmax(5), z, y) == pytest.approx(expected, rel=1e-5)


def test_ldam_subtracts_the_class_margin_from_the_true_logit_and_scales():
    z, y = batch(5)
    margins = 1 / COUNTS**0.25
    margins = margins * 0.5 / margins.max()  # the rarest class gets max_m
    shifted = z.copy()
    shifted[np.arange(len(y)), y] -= margins[y]
    assert evaluate(LDAMLoss(5, max_m=0.5, s=30), z, y) == pytest.approx(
        nll(30 * shifted, y).mean(), rel=1e-5
    )
    drw = LDAMLoss(5, max_m=0.5, s=30, class_balanced_beta=0.9999, reweight_from_epoch=0)
    w = cb_weights(COUNTS, 0.9999)
    expected = (w[y] * nll(30 * shifted, y)).sum() / w[y].sum()
    assert evaluate(drw, z, y) == pytest.approx(expected, rel=1e-5)


def test_label_smoothing_combines_with_a_count_aware_loss():
    z, y = batch(6)
    eps, prior = 0.1, COUNTS / COUNTS.sum()
    adjusted = log_softmax(z + np.log(prior))
    target = np.full(z.shape, eps / 5)
    target[np.arange(len(y)), y] += 1 - eps
    expected = -(target * adjusted).sum(axis=1).mean()
    got = evaluate(LogitAdjustedLoss(5), z, y, label_smoothing=eps)
    assert got == pytest.approx(expected, rel=1e-5)


def test_posthoc_adjustment_subtracts_tau_log_prior():
    z, _ = batch(7)
    prior = COUNTS / COUNTS.sum()
    got = posthoc_adjusted(torch.tensor(z), torch.tensor(COUNTS), tau=1.5).numpy()
    assert got == pytest.approx(z - 1.5 * np.log(prior))


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda: CrossEntropy(5, class_balanced_beta=1.0), "class_balanced_beta=1.0 is invalid"),
        (lambda: FocalLoss(5, gamma=-1), "gamma=-1 is invalid"),
        (lambda: LDAMLoss(5, s=0), "s=0 are invalid"),
        (lambda: LogitAdjustedLoss(5).set_class_counts([1, 2, 0, 4, 5]), "classes [2] have none"),
        (
            lambda: LogitAdjustedLoss(5)(torch.zeros(2, 5), torch.zeros(2, dtype=torch.long)),
            "no class counts",
        ),
    ],
)
def test_bad_loss_settings_stop_with_one_line(make, message):
    with pytest.raises(LitvisionError, match=message.replace("[", r"\[").replace("]", r"\]")):
        make()


DATA = [
    "--data=litvision.data.SyntheticDataModule", "--data.input_shape=[1,8,8]", "--data.train_size=300",
    "--data.val_size=30", "--data.test_size=40", "--data.batch_size=32",
    "--data.imbalance=LongTailImbalance", "--data.imbalance.ratio=10",
]  # fmt: skip
QUIET = [
    "--trainer.enable_progress_bar=false",
    "--trainer.enable_model_summary=false",
    "--trainer.accelerator=cpu",
]
CONFIG = f"--config={ROOT / 'configs/digits_lstm.yaml'}"


def test_class_counts_reach_the_loss_from_the_datamodule_and_the_checkpoint(in_tmp):
    loss = ["--model.loss=litvision.objectives.LogitAdjustedLoss"]
    cli = LitvisionCLI(args=["fit", CONFIG, *DATA, *loss, *QUIET, "--trainer.max_epochs=1"])
    counts = cli.datamodule.train_class_counts
    assert counts[0] > counts[-1] > 0, "imbalanced"
    assert cli.model.loss.class_counts.tolist() == counts
    ckpt = next((in_tmp / "lightning_logs").rglob("last.ckpt"))
    assert torch.load(ckpt, weights_only=True)["state_dict"]["loss.class_counts"].tolist() == counts
    # A test of the checkpoint alone (no training split set up) uses the counts it trained with.
    tested = LitvisionCLI(args=["test", CONFIG, *DATA, *loss, *QUIET, f"--ckpt_path={ckpt}"])
    assert tested.datamodule.train_class_counts is None
    assert tested.model.loss.class_counts.tolist() == counts
    # Resuming with another imbalance would train on counts the data no longer has: refused.
    other = [a.replace("ratio=10", "ratio=5") for a in DATA]
    with pytest.raises(LitvisionError, match="trained with class counts"):
        LitvisionCLI(
            args=["fit", CONFIG, *other, *loss, *QUIET, "--trainer.max_epochs=2", f"--ckpt_path={ckpt}"]
        )
