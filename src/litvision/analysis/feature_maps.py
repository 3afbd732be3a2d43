"""Activations of named layers for a few test images, recorded by forward hooks (report 001, task A)."""

from __future__ import annotations

import difflib
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from jsonargparse import ActionYesNo, Namespace
from matplotlib.figure import Figure
from torch import Tensor, nn

from litvision.analysis.common import (
    Tool,
    add_run_arguments,
    open_run,
    run_outputs,
    split_dataset,
    write_run_outputs,
)
from litvision.errors import LitvisionError
from litvision.models.base import module_outputs, stages_by_resolution
from litvision.parsing import Parser
from litvision.plotting import plt
from litvision.utils import run_label

TOOL = Tool("feature-maps", ("feature_maps_*.png",), "feature_maps.json")


def add_parser(subcommands: Any) -> None:
    parser = Parser(
        config=True,
        description="Record the outputs of named layers (forward hooks) for a few test images and draw "
        "them: feature maps as image grids, pooled vectors as 1-D profiles, RNN outputs as time x unit "
        "maps. Writes feature_maps_<index>.png per image, feature_maps.npz and feature_maps.json.",
    )
    add_run_arguments(parser)
    parser.add_argument(
        "--images",
        type=int,
        nargs="+",
        help="positions of the images in the test split (default: the first image of each of the first "
        "four classes)",
    )
    parser.add_argument(
        "--layers",
        nargs="+",
        help="module names from net.named_modules() (default: the network's stages, its stage_names: "
        "the last layer at each resolution, then the pooled features; --list_layers prints every name)",
    )
    parser.add_argument(
        "--channels", type=int, default=16, help="feature maps shown per layer, the most active"
    )
    parser.add_argument(
        "--list_layers", action=ActionYesNo, default=False,
        help="print every layer name with its output shape, and stop",
    )  # fmt: skip
    subcommands.add_subcommand(TOOL.name, parser, help="activations of named layers for a few test images")


def main(args: Namespace) -> list[Path]:
    if args.channels < 1:
        raise LitvisionError(f"--channels {args.channels} is invalid: show at least 1 channel")
    run = open_run(args)
    net = run.model.net
    datamodule = run.datamodule
    dataset = split_dataset(datamodule, "test")
    _, targets = datamodule.read_split(train=False)
    indices = args.images if args.images is not None else default_images(targets, 4)
    bad = [i for i in indices if not 0 <= i < len(dataset)]
    if bad:
        last = len(dataset) - 1
        raise LitvisionError(f"--images {bad[0]} is out of range: the test split has images 0-{last}")
    indices = list(dict.fromkeys(indices))
    device = next(net.parameters()).device
    x = torch.stack([dataset[i][0] for i in indices]).to(device)
    shapes = output_shapes(net, x[:1])
    if args.list_layers:
        for name, module in net.named_modules():
            if name:
                shape = "x".join(map(str, shapes[name])) if name in shapes else "(no tensor output)"
                print(f"{name:40s} {type(module).__name__:24s} {shape}")
        return []
    # A network that declares no stages (a model of one's own) gets the last layer at each resolution.
    stages = args.layers or getattr(net, "stage_names", None) or stages_by_resolution(net, x[:1])
    layers = check_layers(net, shapes, stages)
    if not layers:
        raise LitvisionError(
            "the network has no feature maps or pooled features to draw: name layers with --layers "
            "(see --list_layers)"
        )
    activations, logits = capture(net, x, layers)
    predicted = logits.argmax(dim=1).tolist()
    names = run.model.class_names
    mean = torch.tensor(datamodule.mean).view(-1, 1, 1)
    std = torch.tensor(datamodule.std).view(-1, 1, 1)

    has_maps = any(kind_of(shapes[layer]) == "maps" for layer in layers)
    scale_note = "; each map scaled to its own range" if has_maps else ""
    outputs = run_outputs(args)
    arrays: dict[str, np.ndarray] = {}
    shown: dict[str, dict[int, list[int]]] = {layer: {} for layer in layers}
    for row, index in enumerate(indices):
        label = int(targets[index])
        picture = (x[row].cpu() * std + mean).clamp(0, 1)
        title = (
            f"test image {index}: {names[label]} (predicted: {names[predicted[row]]})\n"
            f"{run_label(run.directory)}, {run.checkpoint.name}{scale_note}"
        )
        per_layer = [(layer, activations[layer][row]) for layer in layers]
        figure, channels = image_figure(picture, per_layer, args.channels, title)
        outputs.figure(f"feature_maps_{index}.png", f"analysis/feature_maps/{index}", figure)
        for layer, activation in per_layer:
            arrays[f"{index}/{layer}"] = activation.numpy()
            if layer in channels:
                shown[layer][index] = channels[layer]
    outputs.npz("feature_maps.npz", arrays)
    outputs.json(
        "feature_maps.json",
        {
            "checkpoint": str(run.checkpoint),
            "images": [
                {"index": i, "label": int(targets[i]), "class": names[int(targets[i])], "predicted": names[p]}
                for i, p in zip(indices, predicted)
            ],
            "layers": [
                {
                    "name": layer,
                    "shape": list(shapes[layer]),
                    "kind": kind_of(shapes[layer]),
                    "channels_shown": shown[layer] or None,
                }
                for layer in layers
            ],
        },
    )
    return write_run_outputs(outputs, args, run)


def default_images(targets: Sequence[int], classes: int) -> list[int]:
    """The first image of each of the first ``classes`` classes present, in class order."""
    first: dict[int, int] = {}
    for i, y in enumerate(targets):
        first.setdefault(int(y), i)
    return [first[c] for c in sorted(first)[:classes]]


def output_shapes(net: nn.Module, x: Tensor) -> dict[str, tuple[int, ...]]:
    """Per-sample output shape of every submodule, in the order the modules complete."""
    outputs, _ = module_outputs(net, x)
    return {name: shape[1:] for name, shape in outputs.items()}


def capture(net: nn.Module, x: Tensor, layers: Sequence[str]) -> tuple[dict[str, Tensor], Tensor]:
    """The outputs of ``layers`` on the batch ``x``, and the logits."""
    return module_outputs(net, x, set(layers))


def kind_of(shape: tuple[int, ...]) -> str:
    """How an output of this per-sample shape is drawn: maps, a profile, or a sequence."""
    if len(shape) == 3:
        return "maps" if shape[1] * shape[2] > 1 else "profile"
    return {1: "profile", 2: "sequence"}.get(len(shape), "unsupported")


def check_layers(net: nn.Module, shapes: dict[str, tuple[int, ...]], layers: Sequence[str]) -> list[str]:
    """The requested layers, or one line naming the first unknown one and the valid names."""
    valid = [n for n, _ in net.named_modules() if n]
    for layer in layers:
        if layer not in valid:
            close = difflib.get_close_matches(layer, valid, n=1)
            hint = f" (did you mean '{close[0]}'?)" if close else ""
            raise LitvisionError(f"unknown layer '{layer}'{hint}; valid layers: {', '.join(valid)}")
        if layer not in shapes:
            raise LitvisionError(f"layer '{layer}' gives no tensor in a forward pass: choose another")
        if kind_of(shapes[layer]) == "unsupported":
            raise LitvisionError(f"layer '{layer}' outputs {list(shapes[layer])} per image: nothing to draw")
    return list(dict.fromkeys(layers))


def image_figure(
    picture: Tensor, layers: list[tuple[str, Tensor]], channels: int, title: str
) -> tuple[Figure, dict[str, list[int]]]:
    """One image and, a row per layer, its activations; returns the figure and the channels shown."""
    widest = max((a.shape[0] for _, a in layers if kind_of(tuple(a.shape)) == "maps"), default=channels)
    columns = max(min(channels, widest), 4)
    fig = plt.figure(figsize=(0.8 * columns + 2.4, 1.05 * (len(layers) + 1) + 0.9), dpi=100)
    grid = fig.add_gridspec(len(layers) + 1, columns, hspace=0.6, wspace=0.1, left=0.14, right=0.99)
    fig.suptitle(title, fontsize=10)
    ax = fig.add_subplot(grid[0, 0])
    image = picture.permute(1, 2, 0).numpy()
    ax.imshow(image[..., 0] if image.shape[2] == 1 else image, cmap="gray", vmin=0, vmax=1)
    ax.set(xticks=[], yticks=[])
    ax.set_ylabel("input", rotation=0, ha="right", va="center", fontsize=8)
    shown: dict[str, list[int]] = {}
    for row, (name, activation) in enumerate(layers, start=1):
        shape = tuple(activation.shape)
        label = f"{name}\n{'x'.join(map(str, shape))}"
        kind = kind_of(shape)
        if kind == "maps":
            # The most active channels on this image: the first ones are as arbitrary as any others.
            order = activation.mean(dim=(1, 2)).argsort(descending=True)[:channels].tolist()
            shown[name] = order
            for column in range(columns):
                ax = fig.add_subplot(grid[row, column])
                ax.set(xticks=[], yticks=[])
                if column < len(order):
                    ax.imshow(activation[order[column]].numpy(), cmap="viridis", interpolation="nearest")
                    ax.set_title(f"ch {order[column]}", fontsize=6, pad=2)
                else:
                    ax.axis("off")
                if column == 0:
                    ax.set_ylabel(label, rotation=0, ha="right", va="center", fontsize=8)
        elif kind == "profile":
            values = activation.flatten().numpy()
            ax = fig.add_subplot(grid[row, :])
            # One filled outline, not a bar per channel: a torchvision model pools 1,000-2,000 of them.
            ax.stairs(values, np.arange(len(values) + 1) - 0.5, fill=True, color="C0", baseline=0)
            ax.set_xlim(-0.5, len(values) - 0.5)
            ax.set_xlabel("channel", fontsize=7, labelpad=1)
            ax.tick_params(labelsize=6)
            ax.set_ylabel(label, rotation=0, ha="right", va="center", fontsize=8)
        else:  # a sequence: time steps x units
            ax = fig.add_subplot(grid[row, :])
            image = ax.imshow(activation.numpy(), aspect="auto", cmap="viridis", interpolation="nearest")
            fig.colorbar(image, ax=ax, fraction=0.02, pad=0.01)
            ax.set_xlabel("unit", fontsize=7, labelpad=1)
            ax.tick_params(labelsize=6)
            ax.set_ylabel(f"{label}\n(step)", rotation=0, ha="right", va="center", fontsize=8)
    return fig, shown
