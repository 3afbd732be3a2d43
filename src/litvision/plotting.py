"""Figures shared by training (TensorBoard images) and the analysis tools."""

from __future__ import annotations

from collections.abc import Sequence

import matplotlib

matplotlib.use("Agg")  # figures are written to files and TensorBoard, never shown

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402


def confusion_matrix_figure(confmat: np.ndarray, class_names: Sequence[str], title: str = "") -> Figure:
    """Heat map of a confusion matrix (rows: true class, columns: predicted), coloured by the share of
    each true class and annotated with counts when there are few enough classes to read them."""
    confmat = np.asarray(confmat)
    n = len(class_names)
    rates = confmat / np.maximum(confmat.sum(axis=1, keepdims=True), 1)
    size = max(4.0, 0.45 * n + 2)
    fig, ax = plt.subplots(figsize=(size + 1, size), dpi=100)
    image = ax.imshow(rates, cmap="Blues", vmin=0, vmax=1)
    fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04, label="share of true class")
    ax.set(xticks=range(n), yticks=range(n), xlabel="predicted", ylabel="true", title=title)
    ax.set_xticklabels(class_names, rotation=45, ha="right")
    ax.set_yticklabels(class_names)
    if n <= 20:
        for i in range(n):
            for j in range(n):
                colour = "white" if rates[i, j] > 0.5 else "black"
                ax.text(j, i, int(confmat[i, j]), ha="center", va="center", color=colour, fontsize=7)
    fig.tight_layout()
    return fig
