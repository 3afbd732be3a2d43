"""Label smoothing (Szegedy et al. 2016), as report 001 used with epsilon 0.1."""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor


class LabelSmoothingMixin:
    """The risk is cross-entropy against targets smoothed by ``label_smoothing`` (0: plain cross-entropy)."""

    label_smoothing: float = 0.0

    def risk(self, logits: Tensor, target: Tensor) -> Tensor:
        return F.cross_entropy(logits, target, label_smoothing=self.label_smoothing)
