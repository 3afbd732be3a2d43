"""Train and validation loss and accuracy per epoch of one or many runs, read from their TensorBoard
event files, like the training-curve figures of reports 000, 003 and 004."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from jsonargparse import ActionYesNo, Namespace
from matplotlib.figure import Figure

from litvision.analysis.common import Outputs, Tool
from litvision.errors import LitvisionError
from litvision.parsing import Parser
from litvision.plotting import categorical_colours, plt
from litvision.utils import read_scalars, run_names

METRICS = ("train/loss", "val/loss", "train/acc", "val/acc")
Curve = list[tuple[int, float]]  # (epoch, value), epochs counted from 1


TOOL = Tool("curves", ("curves.png",), "curves.png")


def add_parser(subcommands: Any) -> None:
    parser = Parser(
        config=True,
        description="Plot train and validation loss and accuracy per epoch from the runs' TensorBoard "
        "event files, overlaid for several runs. Writes curves.png and curves.csv "
        "(run,epoch,train_loss,val_loss,train_acc,val_acc).",
    )
    parser.add_argument("runs", nargs="+", type=Path, help="run directories")
    parser.add_argument("--names", nargs="+", help="legend names, one per run (default: the config names)")
    parser.add_argument(
        "--output",
        type=Path | None,
        help="folder for the files (default with one run: RUN/analysis; required with several)",
    )
    parser.add_argument(
        "--tensorboard", action=ActionYesNo, default=True,
        help="add the figure to the run's TensorBoard (only done for a single run)",
    )  # fmt: skip
    subcommands.add_subcommand(
        TOOL.name, parser, help="train/val loss and accuracy per epoch of one or many runs"
    )


def read_curves(run_dir: Path) -> tuple[dict[str, Curve], int]:
    """The per-epoch curves of ``METRICS`` found in a run's event files, and the last step logged."""
    if not Path(run_dir).is_dir():
        raise LitvisionError(f"run directory '{run_dir}' not found")
    scalars = read_scalars(run_dir, [*METRICS, "epoch"])
    # Lightning logs ``epoch`` with every metric, at the same step: it places each point on the epoch axis.
    epoch_at = {e.step: int(e.value) for e in scalars.get("epoch", [])}
    curves: dict[str, Curve] = {}
    last_step = 0
    for tag in METRICS:
        if tag in scalars:
            points = scalars[tag]
            curves[tag] = [(epoch_at.get(e.step, i) + 1, e.value) for i, e in enumerate(points)]
            last_step = max([last_step, *(e.step for e in points)])
    if not curves:
        raise LitvisionError(
            f"no training curves in the event files of '{run_dir}' (looked for {', '.join(METRICS)}): "
            "is it a litvision run directory?"
        )
    return curves, last_step


def main(args: Namespace) -> list[Path]:
    if args.names and len(args.names) != len(args.runs):
        raise LitvisionError(f"--names has {len(args.names)} names for {len(args.runs)} runs")
    if args.output is None and len(args.runs) > 1:
        raise LitvisionError(
            f"{len(args.runs)} runs: give --output, the folder for curves.png and curves.csv"
        )
    read = [read_curves(run) for run in args.runs]
    names = args.names or run_names(args.runs)
    outputs = Outputs(args.output if args.output is not None else args.runs[0] / "analysis")
    outputs.figure("curves.png", "analysis/curves", curves_figure([c for c, _ in read], names))
    rows = [["run", "epoch", "train_loss", "val_loss", "train_acc", "val_acc"]]
    for name, (curves, _) in zip(names, read):
        by_epoch: dict[int, dict[str, float]] = {}
        for tag, points in curves.items():
            for epoch, value in points:
                by_epoch.setdefault(epoch, {})[tag] = value
        for epoch in sorted(by_epoch):
            values = by_epoch[epoch]
            rows.append([name, epoch, *(f"{values[t]:.6f}" if t in values else "" for t in METRICS)])
    outputs.csv("curves.csv", rows)
    tensorboard = args.runs[0] if args.tensorboard and len(args.runs) == 1 else None
    return outputs.write(tensorboard, read[0][1])


def curves_figure(runs: list[dict[str, Curve]], names: list[str]) -> Figure:
    """Loss (left) and accuracy (right) per epoch; train solid, validation dashed; best validation
    accuracy of each run marked."""
    fig, (loss_ax, acc_ax) = plt.subplots(1, 2, figsize=(12, 4.6), dpi=100)
    single = len(runs) == 1
    colours = categorical_colours(len(runs))
    for k, (curves, name) in enumerate(zip(runs, names)):
        for tag, points in curves.items():
            split, metric = tag.split("/")
            ax = loss_ax if metric == "loss" else acc_ax
            scale = 100 if metric == "acc" else 1
            epochs = [e for e, _ in points]
            values = [scale * v for _, v in points]
            split_name = "train" if split == "train" else "validation"
            # One run: a colour per split, as in the reports; several: a colour per run, a style per split.
            colour = ("C0" if split == "train" else "C1") if single else colours[k]
            label = split_name if single else f"{name} ({split_name})"
            style = "-" if split == "train" else "--"
            marker = "o" if len(points) < 30 else None  # points readable on short runs only
            ax.plot(epochs, values, style, color=colour, label=label, marker=marker, markersize=3)
        if "val/acc" in curves:
            epoch, best = max(curves["val/acc"], key=lambda p: p[1])
            colour = "C1" if single else colours[k]
            label = f"best validation: {100 * best:.2f}% (epoch {epoch})" if single else None
            acc_ax.plot(
                epoch, 100 * best, "*", color=colour, markersize=13, markeredgecolor="black", label=label
            )
    loss_ax.set(xlabel="epoch", ylabel="loss", title="Loss")
    acc_ax.set(xlabel="epoch", ylabel="accuracy (%)", title="Accuracy")
    for ax in (loss_ax, acc_ax):
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
        ax.xaxis.get_major_locator().set_params(integer=True)
    fig.suptitle(f"Training curves: {names[0]}" if single else "Training curves")
    fig.tight_layout()
    return fig
