"""t-SNE of a run's penultimate features, coloured by class (report 001, task A)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import numpy as np
from jsonargparse import Namespace
from matplotlib.figure import Figure
from sklearn.manifold import TSNE
from threadpoolctl import threadpool_limits
from torch.utils.data import Subset

from litvision.analysis.common import (
    Tool,
    add_features_argument,
    add_run_arguments,
    extract,
    open_run,
    run_outputs,
    split_dataset,
    write_run_outputs,
)
from litvision.errors import LitvisionError
from litvision.parsing import Parser
from litvision.plotting import categorical_colours, plt
from litvision.utils import run_label

TOOL = Tool("tsne", ("tsne.png",), "tsne.png")


def add_parser(subcommands: Any) -> None:
    parser = Parser(
        config=True,
        description="Embed the features of random test images in 2-D with scikit-learn's t-SNE and plot "
        "them coloured by class. Writes tsne.png and tsne.csv (index,label,class,predicted,x,y).",
    )
    add_run_arguments(parser)
    parser.add_argument("--samples", type=int, default=480, help="images drawn at random")
    parser.add_argument("--split", type=Literal["test", "val"], default="test", help="split drawn from")
    parser.add_argument("--perplexity", type=float, default=30.0, help="t-SNE perplexity")
    parser.add_argument("--seed", type=int, default=0, help="seed of the draw and of t-SNE")
    add_features_argument(parser, "pooled")
    subcommands.add_subcommand(
        TOOL.name, parser, help="t-SNE of the penultimate features of random test images"
    )


def main(args: Namespace) -> list[Path]:
    if args.samples < 2:
        raise LitvisionError(f"--samples {args.samples} is too few: t-SNE needs at least 2 images")
    run = open_run(args)
    dataset = split_dataset(run.datamodule, args.split)
    n = min(args.samples, len(dataset))  # a small split is used whole
    if not 0 < args.perplexity < n:
        raise LitvisionError(
            f"--perplexity {args.perplexity} must be positive and below the {n} images embedded"
        )
    indices = np.sort(np.random.default_rng(args.seed).choice(len(dataset), size=n, replace=False))
    data = extract(
        run.model.net,
        Subset(dataset, indices.tolist()),
        args.features,
        run.datamodule.batch_size,
        run.datamodule.num_workers,
    )
    tsne = TSNE(n_components=2, perplexity=args.perplexity, init="pca", random_state=args.seed)
    # scikit-learn's OpenMP runtime and torch's spin against each other once both are loaded: t-SNE of
    # 480 points takes 35 s with both on 2 cores, 6 s on one thread.
    with threadpool_limits(limits=1, user_api="openmp"):
        embedding = tsne.fit_transform(data.features.astype(np.float64))
    predicted = data.logits.argmax(axis=1)
    names = run.model.class_names
    title = (
        f"t-SNE of {args.features} features, {n} {args.split} images\n"
        f"{run_label(run.directory)}, {run.checkpoint.name}"
    )
    outputs = run_outputs(args)
    outputs.figure("tsne.png", "analysis/tsne", tsne_figure(embedding, data.labels, names, title))
    rows = [["index", "label", "class", "predicted", "x", "y"]]
    rows += [
        [int(i), int(y), names[y], int(p), f"{x0:.4f}", f"{x1:.4f}"]
        for i, y, p, (x0, x1) in zip(indices, data.labels, predicted, embedding)
    ]
    outputs.csv("tsne.csv", rows)
    return write_run_outputs(outputs, args, run)


def tsne_figure(embedding: np.ndarray, labels: np.ndarray, class_names: list[str], title: str) -> Figure:
    """Scatter of a 2-D embedding, one colour per class, with a legend of class names."""
    fig, ax = plt.subplots(figsize=(8, 6.5), dpi=100)
    colours = categorical_colours(len(class_names))
    for c, name in enumerate(class_names):
        points = embedding[labels == c]
        if len(points):
            ax.scatter(
                points[:, 0], points[:, 1], s=14, color=colours[c], label=name, alpha=0.85, linewidths=0
            )
    ax.set(xlabel="t-SNE 1", ylabel="t-SNE 2", title=title, xticks=[], yticks=[])
    ax.legend(title="class", loc="center left", bbox_to_anchor=(1.01, 0.5), frameon=False, markerscale=1.5)
    fig.tight_layout()
    return fig
