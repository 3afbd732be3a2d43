"""Objective pieces of ``ImageClassifier``: the loss (a component chosen in YAML, aware of the class
counts) and the mixins that change it (label smoothing, IRM); none knows the architecture."""

from litvision.objectives.irm import IRMMixin, irm_penalty
from litvision.objectives.label_smoothing import LabelSmoothingMixin
from litvision.objectives.losses import (
    BalancedSoftmax,
    ClassCountLoss,
    CrossEntropy,
    FocalLoss,
    LDAMLoss,
    LogitAdjustedLoss,
    effective_number_weights,
    posthoc_adjusted,
)

__all__ = [
    "BalancedSoftmax",
    "ClassCountLoss",
    "CrossEntropy",
    "FocalLoss",
    "IRMMixin",
    "LDAMLoss",
    "LabelSmoothingMixin",
    "LogitAdjustedLoss",
    "effective_number_weights",
    "irm_penalty",
    "posthoc_adjusted",
]
