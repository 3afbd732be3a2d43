"""Row-normalised confusion matrix of a run and its most confused pairs of classes (report 003)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import numpy as np
from jsonargparse import Namespace
from sklearn.metrics import accuracy_score, confusion_matrix

from litvision.analysis.common import (
    Tool,
    add_run_arguments,
    extract,
    open_run,
    run_outputs,
    split_dataset,
    write_run_outputs,
)
from litvision.errors import LitvisionError
from litvision.parsing import Parser
from litvision.plotting import confusion_matrix_figure
from litvision.utils import run_label

TOOL = Tool("confusion", ("confusion.png",), "confusion.png")


def add_parser(subcommands: Any) -> None:
    parser = Parser(
        config=True,
        description="Predict the test split, plot the confusion matrix normalised by true class, and list "
        "the most confused pairs of classes. Writes confusion.png, confusion.csv (counts), "
        "confusion_normalized.csv (rows sum to 1) and confusion.json.",
    )
    add_run_arguments(parser)
    parser.add_argument("--split", type=Literal["test", "val"], default="test", help="split predicted")
    parser.add_argument("--pairs", type=int, default=5, help="confused pairs listed")
    subcommands.add_subcommand(
        TOOL.name, parser, help="row-normalised confusion matrix and the most confused pairs"
    )


def main(args: Namespace) -> list[Path]:
    if args.pairs < 0:
        raise LitvisionError(f"--pairs {args.pairs} is invalid: list 0 or more pairs")
    run = open_run(args)
    dataset = split_dataset(run.datamodule, args.split)
    data = extract(run.model.net, dataset, "pooled", run.datamodule.batch_size, run.datamodule.num_workers)
    names = run.model.class_names
    predicted = data.logits.argmax(axis=1)
    counts = confusion_matrix(data.labels, predicted, labels=np.arange(len(names)))
    shares = counts / np.maximum(counts.sum(axis=1, keepdims=True), 1)
    accuracy = accuracy_score(data.labels, predicted)
    pairs = confused_pairs(counts, names, args.pairs)
    for pair in pairs:
        a, b = pair["classes"]
        images = "image" if pair["count"] == 1 else "images"
        print(
            f"{a} / {b}: {pair['count']} {images} confused ({pair['a_as_b']} {a} as {b}, "
            f"{pair['b_as_a']} {b} as {a}), {100 * pair['share']:.1f}% of the two classes"
        )

    title = (
        f"{args.split} confusion matrix, accuracy {100 * accuracy:.2f}% ({len(data.labels)} images)\n"
        f"{run_label(run.directory)}, {run.checkpoint.name}"
    )
    outputs = run_outputs(args)
    figure = confusion_matrix_figure(counts, names, title, annotate="shares")
    outputs.figure("confusion.png", "analysis/confusion", figure)
    header = ["true \\ predicted", *names]
    outputs.csv("confusion.csv", [header, *([n, *map(int, row)] for n, row in zip(names, counts))])
    outputs.csv(
        "confusion_normalized.csv",
        [header, *([n, *(f"{v:.6f}" for v in row)] for n, row in zip(names, shares))],
    )
    outputs.json(
        "confusion.json",
        {
            "split": args.split,
            "checkpoint": str(run.checkpoint),
            "num_samples": len(data.labels),
            "acc": accuracy,
            "class_names": names,
            "confusion_matrix": counts,
            "most_confused": pairs,
        },
    )
    return write_run_outputs(outputs, args, run)


def confused_pairs(counts: np.ndarray, names: list[str], top: int) -> list[dict[str, Any]]:
    """The ``top`` pairs of classes [a, b] most confused with each other, both directions counted
    (``a_as_b``: images of a predicted as b), ranked by the share of the two classes' images that went to
    the other one."""
    support = counts.sum(axis=1)
    pairs = []
    for i in range(len(names)):
        for j in range(i + 1, len(names)):
            both = int(counts[i, j] + counts[j, i])
            if both:
                share = both / max(int(support[i] + support[j]), 1)
                pairs.append((share, both, i, j))
    pairs.sort(key=lambda p: (-p[0], -p[1], p[2], p[3]))
    return [
        {
            "classes": [names[i], names[j]],
            "count": both,
            "a_as_b": int(counts[i, j]),
            "b_as_a": int(counts[j, i]),
            "share": share,
        }
        for share, both, i, j in pairs[:top]
    ]
