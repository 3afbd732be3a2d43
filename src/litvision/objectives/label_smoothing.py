"""Label smoothing (Szegedy et al. 2016), as report 001 used with epsilon 0.1."""

from __future__ import annotations

from torch import Tensor


class LabelSmoothingMixin:
    """The risk is the model's loss against targets smoothed by ``label_smoothing`` (0: unsmoothed).
    Every loss that is a cross-entropy on (adjusted) logits takes it; the focal loss refuses it."""

    label_smoothing: float = 0.0

    def risk(self, logits: Tensor, target: Tensor) -> Tensor:
        if not self.label_smoothing:
            return super().risk(logits, target)  # type: ignore[misc]
        return self.loss(logits, target, label_smoothing=self.label_smoothing)  # type: ignore[attr-defined]
