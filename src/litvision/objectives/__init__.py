"""Objective mixins of ``ImageClassifier``: each changes the loss, none knows the architecture."""

from litvision.objectives.irm import IRMMixin, irm_penalty
from litvision.objectives.label_smoothing import LabelSmoothingMixin

__all__ = ["IRMMixin", "LabelSmoothingMixin", "irm_penalty"]
