"""Accuracy from a confusion matrix, defined once for training, the test report, the plain loop and the
analysis heads, many/medium/few-shot accuracy of imbalanced runs (the test report and ``analyze
rebalance``), and the metric that counts the matrix during training."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor
from torchmetrics import Metric


def accuracies(confmat: Any) -> dict[str, Tensor]:
    """Accuracy, macro accuracy and per-class accuracy of a confusion matrix (rows: true class,
    columns: predicted; a tensor, array or nested list).

    - ``acc``: correct / images.
    - ``acc_class``: per class, its correct / its images (recall); 0 for a class with no image.
    - ``acc_macro``: the mean of ``acc_class`` over the classes that have images, i.e. scikit-learn's
      ``balanced_accuracy_score``. A class absent from the split has no accuracy to measure: counting it
      as 0 would mark the model down for the split, and counting it when it is only predicted would
      count each wrong prediction twice (it already lowers its true class's accuracy). A split may lack
      a class (``ImageFolderDataModule`` allows it), so this choice shows.

    Computed on the matrix's device without reading anything back, so a training step never waits.
    """
    confmat = torch.as_tensor(confmat).double()  # exact counts, and the same numbers as scikit-learn's
    correct, support = confmat.diagonal(), confmat.sum(dim=1)
    per_class = correct / support.clamp(min=1)
    present = (support > 0).double()
    return {
        "acc": correct.sum() / support.sum().clamp(min=1),
        "acc_macro": (per_class * present).sum() / present.sum().clamp(min=1),
        "acc_class": per_class,
    }


def shot_groups(
    accuracy: list[float], train_counts: list[int], many_shot: int = 100, few_shot: int = 20
) -> dict[str, dict[str, float]]:
    """Mean per-class accuracy of the many-shot (> ``many_shot`` training images), medium and few-shot
    (< ``few_shot``) classes (Liu et al. 2019), with the number of classes in each; empty groups left out."""
    groups: dict[str, list[float]] = {"many_shot": [], "medium_shot": [], "few_shot": []}
    for a, n in zip(accuracy, train_counts):
        groups["many_shot" if n > many_shot else "few_shot" if n < few_shot else "medium_shot"].append(a)
    return {g: {"acc": sum(a) / len(a), "classes": len(a)} for g, a in groups.items() if a}


class ClassificationCounts(Metric):
    """The confusion matrix of a split, counted on the device, and :func:`accuracies` of it.

    torchmetrics' classification metrics count with ``torch.bincount``, which on a GPU first reads the
    largest label back to the host: a synchronisation at every step. These counts use ``index_add_``
    instead. Labels are not checked here: the datamodule checks them once.
    """

    full_state_update = False
    is_differentiable = False

    def __init__(self, num_classes: int, confusion: bool = True) -> None:
        super().__init__()
        self.num_classes = num_classes
        self.confusion = confusion
        self.add_state(
            "counts", torch.zeros(num_classes * num_classes, dtype=torch.long), dist_reduce_fx="sum"
        )

    def update(self, logits: Tensor, target: Tensor) -> None:
        cell = target * self.num_classes + logits.argmax(dim=1)  # row: true class, column: predicted
        self.counts.index_add_(0, cell, torch.ones_like(cell))

    def compute(self) -> dict[str, Tensor]:
        confmat = self.counts.view(self.num_classes, self.num_classes)
        values = accuracies(confmat)
        if self.confusion:
            values["confmat"] = confmat
        return values
