"""Losses that know the training split's class counts, for long-tailed training.

Each is chosen in YAML as ``model.loss: {class_path: ..., init_args: ...}`` and built by
``ImageClassifier`` as ``loss(num_classes)``. The counts are not typed by the user: the model hands the
datamodule's ``train_class_counts`` (after any imbalance, noisy copies included) to
:meth:`ClassCountLoss.set_class_counts` when training starts, and keeps them in its checkpoints as the
buffer ``loss.class_counts``, so that a resumed run or a test of a checkpoint uses the counts it trained
with. Every rank of a DDP run builds the same split from the same ``split_seed``, so the counts agree.

Each loss is a cross-entropy on logits changed per class (the logit-adjusted, Balanced Softmax and LDAM
losses), optionally weighted per class (Cui et al.'s class-balanced weights, from a given epoch for
DRW). Each batch is averaged as the reference code does: the cross-entropy losses as
``F.cross_entropy(weight=...)`` does, ``sum_i w_{y_i} l_i / sum_i w_{y_i}`` (Cao et al.'s CE-DRW and
LDAM-DRW); the focal loss over the batch size, ``sum_i w_{y_i} l_i / N`` (Cui et al.'s class-balanced
focal loss and Cao et al.'s ``FocalLoss``). The model's predictions and metrics stay on the raw logits.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from litvision.errors import LitvisionError


def effective_number_weights(counts: Tensor, beta: float) -> Tensor:
    """Class-balanced weights (Cui et al., CVPR 2019): ``(1 - beta) / (1 - beta ** n_j)``, the inverse
    effective number of samples, normalised to sum to the number of classes. ``beta`` 0 gives all ones;
    beta -> 1 tends to inverse class frequency."""
    counts = counts.double()
    weights = (1.0 - beta) / (1.0 - torch.pow(torch.full_like(counts, beta), counts))
    return (weights / weights.sum() * len(counts)).float()


class ClassCountLoss(nn.Module):
    """Cross-entropy, optionally with class-balanced weights; the base of every loss here.

    Args:
        num_classes: number of classes (given by the model).
        class_balanced_beta: weight class ``j`` by Cui et al.'s inverse effective number with this
            ``beta`` (0.9999 in Cao et al.'s DRW; 0: unweighted).
        reweight_from_epoch: apply the class-balanced weights from this epoch on (0: from the start);
            Cao et al.'s deferred re-weighting (DRW) starts at epoch 160 of 200.
    """

    #: Whether the loss reads the class counts even without class-balanced weights.
    uses_counts: bool = False
    #: Whether ``label_smoothing`` (LabelSmoothingMixin) has a meaning for this loss.
    smoothable: bool = True

    def __init__(
        self, num_classes: int, class_balanced_beta: float = 0.0, reweight_from_epoch: int = 0
    ) -> None:
        super().__init__()
        if not 0 <= class_balanced_beta < 1:
            raise LitvisionError(
                f"class_balanced_beta={class_balanced_beta} is invalid: it must be in [0, 1)"
            )
        if reweight_from_epoch < 0:
            raise LitvisionError(f"reweight_from_epoch={reweight_from_epoch} is invalid: it must be >= 0")
        self.num_classes = num_classes
        self.class_balanced_beta = class_balanced_beta
        self.reweight_from_epoch = reweight_from_epoch
        self.epoch = 0  # set by the model at every training epoch
        if self.needs_counts:
            # Zeros until set; saved in checkpoints. Losses that need no counts keep no buffer, so that
            # checkpoints of plain cross-entropy runs keep their keys.
            self.register_buffer("class_counts", torch.zeros(num_classes, dtype=torch.long))

    @property
    def needs_counts(self) -> bool:
        return self.uses_counts or self.class_balanced_beta > 0

    def set_class_counts(self, counts: Sequence[int] | Tensor) -> None:
        """The training split's images per class, from the datamodule."""
        if not self.needs_counts:
            return
        counts = torch.as_tensor(counts, dtype=torch.long)
        if counts.shape != (self.num_classes,):
            raise LitvisionError(
                f"{type(self).__name__} got {counts.numel()} class counts for {self.num_classes} classes"
            )
        if (counts <= 0).any():
            empty = torch.nonzero(counts <= 0).flatten().tolist()
            raise LitvisionError(
                f"{type(self).__name__} needs at least one training image per class; "
                f"classes {empty} have none"
            )
        self.class_counts.copy_(counts)

    def counts(self) -> Tensor:
        """The class counts as floats, checked to be set."""
        if not bool((self.class_counts > 0).all()):
            raise LitvisionError(
                f"{type(self).__name__} has no class counts: train with a litvision datamodule (it gives "
                "train_class_counts) or load a checkpoint of such a run"
            )
        return self.class_counts.float()

    def class_weights(self) -> Tensor | None:
        """The per-class weights in force at this epoch, or None (unweighted)."""
        if self.class_balanced_beta == 0 or self.epoch < self.reweight_from_epoch:
            return None
        return effective_number_weights(self.counts(), self.class_balanced_beta)

    def adjust(self, logits: Tensor, target: Tensor) -> Tensor:
        """The logits the cross-entropy sees (the identity here)."""
        return logits

    def forward(self, logits: Tensor, target: Tensor, label_smoothing: float = 0.0) -> Tensor:
        weights = self.class_weights()
        return F.cross_entropy(
            self.adjust(logits, target),
            target,
            weight=None if weights is None else weights.to(logits.dtype),
            label_smoothing=label_smoothing,
        )


class CrossEntropy(ClassCountLoss):
    """Softmax cross-entropy; with ``class_balanced_beta`` > 0, Cui et al.'s class-balanced
    cross-entropy (and with ``reweight_from_epoch``, Cao et al.'s CE-DRW)."""


class FocalLoss(ClassCountLoss):
    """Focal loss (Lin et al., ICCV 2017), softmax form: ``-(1 - p_y) ** gamma * log p_y`` per sample,
    with Cui et al.'s class-balanced weights as an option (``class_balanced_beta``), the weighted sum
    divided by the batch size as in Cui et al.'s and Cao et al.'s code. ``gamma`` 0 is cross-entropy.
    Label smoothing has no meaning here (the focusing term is of the true class alone)."""

    smoothable = False

    def __init__(
        self,
        num_classes: int,
        gamma: float = 1.0,
        class_balanced_beta: float = 0.0,
        reweight_from_epoch: int = 0,
    ) -> None:
        super().__init__(num_classes, class_balanced_beta, reweight_from_epoch)
        if gamma < 0:
            raise LitvisionError(f"focal gamma={gamma} is invalid: it must be >= 0")
        self.gamma = gamma

    def forward(self, logits: Tensor, target: Tensor, label_smoothing: float = 0.0) -> Tensor:
        if label_smoothing:
            raise LitvisionError("label_smoothing cannot combine with FocalLoss: set one of them only")
        dtype = torch.promote_types(logits.dtype, torch.float32)  # half precision computed in float32
        log_p = F.log_softmax(logits.to(dtype), dim=1).gather(1, target[:, None]).squeeze(1)
        losses = -((1 - log_p.exp()) ** self.gamma) * log_p
        weights = self.class_weights()
        if weights is not None:
            losses = weights.to(dtype)[target] * losses
        return losses.mean().to(logits.dtype)


class LogitAdjustedLoss(ClassCountLoss):
    """Logit-adjusted loss (Menon et al., ICLR 2021): cross-entropy on ``logits + tau * log(prior)``,
    where the prior is the training split's class frequencies. Predictions use the raw logits."""

    uses_counts = True

    def __init__(
        self,
        num_classes: int,
        tau: float = 1.0,
        class_balanced_beta: float = 0.0,
        reweight_from_epoch: int = 0,
    ) -> None:
        super().__init__(num_classes, class_balanced_beta, reweight_from_epoch)
        self.tau = tau

    def adjust(self, logits: Tensor, target: Tensor) -> Tensor:
        counts = self.counts()
        return logits + (self.tau * torch.log(counts / counts.sum())).to(logits.dtype)


class BalancedSoftmax(LogitAdjustedLoss):
    """Balanced Softmax (Ren et al., NeurIPS 2020): the softmax with ``n_j * exp(z_j)``, i.e.
    cross-entropy on ``logits + log(n_j)``. It is the logit-adjusted loss with ``tau`` 1 (the log of the
    counts and of the prior differ by a constant, which the softmax ignores)."""

    def __init__(
        self, num_classes: int, class_balanced_beta: float = 0.0, reweight_from_epoch: int = 0
    ) -> None:
        super().__init__(num_classes, 1.0, class_balanced_beta, reweight_from_epoch)


class LDAMLoss(ClassCountLoss):
    """Label-distribution-aware margin loss (Cao et al., NeurIPS 2019): cross-entropy on
    ``s * (logits - m_y 1[j = y])`` with margins ``m_j = C / n_j ** (1/4)``, ``C`` chosen so that the
    largest margin is ``max_m``. With ``class_balanced_beta`` 0.9999 and ``reweight_from_epoch`` 160 it is
    LDAM-DRW. Cao et al. feed it the cosine logits of a normalised head (``CifarResNet(head="cosine")``),
    which ``s`` = 30 scales; with a plain linear head use a small ``s``."""

    uses_counts = True

    def __init__(
        self,
        num_classes: int,
        max_m: float = 0.5,
        s: float = 30.0,
        class_balanced_beta: float = 0.0,
        reweight_from_epoch: int = 0,
    ) -> None:
        super().__init__(num_classes, class_balanced_beta, reweight_from_epoch)
        if not max_m > 0 or not s > 0:
            raise LitvisionError(f"LDAM max_m={max_m} and s={s} are invalid: both must be above 0")
        self.max_m = max_m
        self.s = s

    def margins(self) -> Tensor:
        margins = self.counts() ** -0.25
        return margins * (self.max_m / margins.max())

    def adjust(self, logits: Tensor, target: Tensor) -> Tensor:
        margin = self.margins().to(logits.dtype)[target]
        shifted = logits.scatter_add(1, target[:, None], -margin[:, None])
        return self.s * shifted


def posthoc_adjusted(logits: Tensor, counts: Tensor, tau: float = 1.0) -> Tensor:
    """Post-hoc logit adjustment (Menon et al. 2021): ``logits - tau * log(prior)``, whose argmax is
    the prediction for a balanced test distribution."""
    counts = torch.as_tensor(counts, dtype=torch.float64)
    return logits - (tau * torch.log(counts / counts.sum())).to(logits.dtype)


__all__ = [
    "BalancedSoftmax",
    "ClassCountLoss",
    "CrossEntropy",
    "FocalLoss",
    "LDAMLoss",
    "LogitAdjustedLoss",
    "effective_number_weights",
    "posthoc_adjusted",
]
