"""Figures shared by training (TensorBoard images) and the analysis tools."""

from __future__ import annotations

from collections.abc import Sequence

import matplotlib

matplotlib.use("Agg")  # figures are written to files and TensorBoard, never shown

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402


def confusion_matrix_figure(
    confmat: np.ndarray, class_names: Sequence[str], title: str = "", annotate: str = "counts"
) -> Figure:
    """Heat map of a confusion matrix (rows: true class, columns: predicted), coloured by the share of
    each true class and annotated with counts (or, ``annotate="shares"``, those shares) when there are
    few enough classes to read them."""
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
                share = "0" if confmat[i, j] == 0 else f"{rates[i, j]:.2f}"  # zeros recede
                text = share if annotate == "shares" else str(int(confmat[i, j]))
                ax.text(j, i, text, ha="center", va="center", color=colour, fontsize=7)
    fig.tight_layout()
    return fig


def categorical_colours(n: int) -> list[tuple[float, float, float, float]]:
    """``n`` distinguishable colours: matplotlib's tab10 or tab20 where they suffice."""
    if n <= 10:
        return [plt.get_cmap("tab10")(i) for i in range(n)]
    if n <= 20:
        return [plt.get_cmap("tab20")(i) for i in range(n)]
    return [plt.get_cmap("turbo")(i / max(n - 1, 1)) for i in range(n)]


def class_accuracy_figure(
    history: dict[str, list[tuple[int, list[float]]]],
    class_names: Sequence[str],
    counts: Sequence[int] | None = None,
    title: str = "",
) -> Figure:
    """Each class's accuracy over the epochs, one colour per class: validation solid, training dashed
    and lighter. ``history`` maps a split to its ``(epoch, per-class accuracies)`` points; ``counts``
    (training images per class) are named in the legend."""
    fig, ax = plt.subplots(figsize=(7.5, 4.2), dpi=100)
    colours = categorical_colours(len(class_names))
    names = [f"{n} ({c})" for n, c in zip(class_names, counts)] if counts is not None else list(class_names)
    labelled = False
    for split, style, alpha in (("val", "-", 1.0), ("train", "--", 0.5)):
        points = history.get(split) or []
        if not points:
            continue
        epochs = [e for e, _ in points]
        values = 100 * np.asarray([v for _, v in points], dtype=float)
        for k, name in enumerate(names):  # the legend names each class once, by its colour
            label = None if labelled else name
            ax.plot(epochs, values[:, k], style, color=colours[k], alpha=alpha, marker=".", label=label)
        labelled = True
    ax.set(xlabel="epoch", ylabel="accuracy (%)", ylim=(-2, 102), title=title)
    ax.xaxis.get_major_locator().set_params(integer=True)
    if len(class_names) <= 20:
        legend_title = "class (training images)" if counts is not None else "class"
        ax.legend(
            fontsize=7, title=legend_title, title_fontsize=7, loc="center left", bbox_to_anchor=(1.01, 0.5),
            frameon=False,
        )  # fmt: skip
    fig.tight_layout()
    return fig
