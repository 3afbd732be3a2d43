"""The loss landscape of BatchNorm (report 004, after Santurkar et al. 2018, "How does batch normalization
help optimization?"): each model variant is trained at several learning rates for a fixed number of steps,
and the band between the lowest and highest training loss across learning rates is plotted per step."""

from __future__ import annotations

import functools
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch
import yaml
from jsonargparse import ActionYesNo, Namespace
from lightning.pytorch import Callback, LightningModule, Trainer, seed_everything
from matplotlib.figure import Figure

from litvision.analysis.common import (
    Outputs,
    Tool,
    add_device_argument,
    parse_data_arguments,
    quiet_lightning,
    resolve_device,
)
from litvision.errors import LitvisionError
from litvision.module import ImageClassifier
from litvision.parsing import Parser
from litvision.plotting import plt
from litvision.utils import import_object

TOOL = Tool("loss-landscape", ("loss_landscape.png",), "loss_landscape.png")
SGD = {"class_path": "torch.optim.SGD", "init_args": {"momentum": 0.9}}


def add_parser(subcommands: Any) -> None:
    parser = Parser(
        config=True,
        description="Train each model variant (VGG-A with and without BatchNorm) at each learning rate for "
        "a fixed number of steps, record the training loss at every step, and plot per variant the band "
        "between the lowest and highest loss across learning rates. Writes loss_landscape.png, "
        "loss_landscape.csv (variant,learning_rate,step,loss), loss_landscape.json and config.yaml into "
        "--output. The options usually come from --config configs/analysis/loss_landscape.yaml.",
    )
    parser.add_argument("--steps", type=int, required=True, help="training steps per run")
    parser.add_argument("--learning_rates", type=float, nargs="+", required=True, help="one run per rate")
    parser.add_argument("--seed", type=int, default=0, help="seed of each run's initial weights and batches")
    parser.add_argument(
        "--optimizer", type=dict, default=SGD, help="{class_path, init_args}; lr is set per run"
    )
    parser.add_argument("--data", type=dict, required=True, help="the datamodule: {class_path, init_args}")
    parser.add_argument(
        "--variants", type=list[dict], required=True, help="[{name, backbone: {class_path, init_args}}, ...]"
    )
    parser.add_argument("--data_dir", type=str | None, help="replaces the datamodule's data_dir")
    add_device_argument(parser, "where the runs train")
    parser.add_argument(
        "--output", type=Path, default=Path("lightning_logs/loss_landscape"),
        help="folder for the files and the TensorBoard events",
    )  # fmt: skip
    parser.add_argument("--tensorboard", action=ActionYesNo, default=True, help="write TensorBoard events")
    subcommands.add_subcommand(
        TOOL.name,
        parser,
        help="train model variants at several learning rates and plot the band of their losses",
    )


def load_config(args: Namespace) -> dict[str, Any]:
    """The options as plain data, checked for what their types cannot say."""
    config = {key: args[key] for key in ("seed", "steps", "learning_rates", "optimizer", "data", "variants")}
    data = config["data"] = dict(config["data"])
    if "class_path" not in data:
        raise LitvisionError(
            "the config's data needs a class_path (and init_args), e.g. litvision.data.CIFAR10DataModule"
        )
    data["init_args"] = {
        **(data.get("init_args") or {}), **parse_data_arguments({}, args.data_dir, data["class_path"])
    }  # fmt: skip
    if config["steps"] < 1:
        raise LitvisionError(f"steps={config['steps']!r} is invalid: train for at least 1 step")
    rates = config["learning_rates"]
    if not all(r > 0 for r in rates):
        raise LitvisionError(f"learning_rates={rates!r} is invalid: give a list of numbers above 0")
    variants = config["variants"]
    if not variants or not all("name" in v and "class_path" in (v.get("backbone") or {}) for v in variants):
        raise LitvisionError(
            "the config's variants must be a list of {name, backbone: {class_path, init_args}}"
        )
    names = [str(v["name"]) for v in variants]
    if len(set(names)) != len(names):
        raise LitvisionError(f"variant names {names} repeat: each variant needs its own name")
    return config


def build(class_path: str, init_args: dict[str, Any], what: str, *args: Any) -> Any:
    """``class_path(*args, **init_args)``, with a wrong argument reported in one line."""
    cls = import_object(class_path, f"{what} class_path")
    try:
        return cls(*args, **init_args)
    except (TypeError, ValueError) as err:
        raise LitvisionError(f"{what} {class_path}: {str(err).splitlines()[0]}") from None


class LossRecorder(Callback):
    """The training loss of every optimizer step."""

    def __init__(self) -> None:
        self.losses: list[float] = []

    def on_train_batch_end(
        self, trainer: Trainer, pl_module: LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        self.losses.append(float(outputs["loss"]))


def train_losses(
    variant: dict[str, Any], lr: float, config: dict[str, Any], datamodule: Any, accelerator: str
) -> list[float]:
    """Train one variant at one learning rate through ``ImageClassifier``; the loss at every step."""
    backbone = variant["backbone"]
    optimizer = config["optimizer"]
    seed_everything(config["seed"], verbose=False)  # a variant starts from the same weights at every rate
    model = ImageClassifier(
        backbone=functools.partial(
            import_object(backbone["class_path"], "backbone class_path"), **backbone.get("init_args", {})
        ),
        num_classes=datamodule.num_classes,
        input_shape=datamodule.input_shape,
        class_names=datamodule.class_names,
        optimizer=functools.partial(
            import_object(optimizer["class_path"], "optimizer class_path"),
            lr=lr,
            **optimizer.get("init_args", {}),
        ),
        log_confusion_matrix=False,
    )
    recorder = LossRecorder()
    trainer = Trainer(
        accelerator=accelerator,
        devices=1,
        max_steps=config["steps"],
        limit_val_batches=0,
        num_sanity_val_steps=0,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        callbacks=[recorder],
    )
    seed_everything(config["seed"], verbose=False)  # and every run sees the same batches
    trainer.fit(model, datamodule=datamodule)
    return recorder.losses


def main(args: Namespace) -> list[Path]:
    config = load_config(args)
    device = resolve_device(args.device)
    data = config["data"]
    datamodule = build(data["class_path"], data.get("init_args", {}), "data")
    for variant in config["variants"]:  # a network too deep for the images fails here, not mid-way
        backbone = variant["backbone"]
        init_args = dict(backbone.get("init_args") or {})
        if "pretrained" in init_args:  # only the shapes matter here: nothing to download
            init_args["pretrained"] = False
        what = f"variant {variant['name']!r}: backbone"
        with torch.device("meta"):
            net = build(
                backbone["class_path"], init_args, what, datamodule.num_classes, datamodule.input_shape
            )
        side = min(datamodule.input_shape[1:])
        if side < getattr(net, "min_size", 1):
            raise LitvisionError(
                f"variant {variant['name']!r} needs images of at least {net.min_size} pixels a side; "
                f"the data's are {datamodule.input_shape[1]}x{datamodule.input_shape[2]}"
            )
    datamodule.prepare_data()
    datamodule.setup("fit")

    rates = [float(r) for r in config["learning_rates"]]
    names = [str(v["name"]) for v in config["variants"]]
    losses = np.full((len(names), len(rates), config["steps"]), np.nan)
    runs = []
    with quiet_lightning():
        for v, variant in enumerate(config["variants"]):
            for r, lr in enumerate(rates):
                start = time.perf_counter()
                accelerator = "gpu" if device.type == "cuda" else "cpu"
                recorded = train_losses(variant, lr, config, datamodule, accelerator)
                seconds = time.perf_counter() - start
                losses[v, r, : len(recorded)] = recorded[: config["steps"]]
                finite = losses[v, r][np.isfinite(losses[v, r])]
                runs.append(
                    {
                        "variant": names[v],
                        "learning_rate": lr,
                        "steps": len(recorded),
                        "final_loss": float(losses[v, r, -1]) if np.isfinite(losses[v, r, -1]) else None,
                        "min_loss": float(finite.min()) if finite.size else None,
                        "diverged": bool(finite.size < config["steps"]),
                        "seconds": round(seconds, 2),
                    }
                )
                first, last = losses[v, r, 0], losses[v, r, -1]
                print(f"{names[v]}, lr {lr:g}: loss {first:.3f} -> {last:.3f} ({seconds:.1f} s)")

    low, high = band(losses)
    outputs = Outputs(args.output)
    batch = data.get("init_args", {}).get("batch_size", getattr(datamodule, "batch_size", "?"))
    optimizer_name = config["optimizer"]["class_path"].rsplit(".", 1)[-1]
    title = (
        f"Loss range across learning rates {', '.join(f'{r:g}' for r in rates)}\n"
        f"{datamodule.name}, batch {batch}, {config['steps']} steps, {optimizer_name}"
    )
    outputs.figure("loss_landscape.png", "analysis/loss_landscape", landscape_figure(low, high, names, title))
    rows: list[list[Any]] = [["variant", "learning_rate", "step", "loss"]]
    for v, name in enumerate(names):
        for r, lr in enumerate(rates):
            rows += [[name, f"{lr:g}", s + 1, f"{losses[v, r, s]:.6f}"] for s in range(config["steps"])]
    outputs.csv("loss_landscape.csv", rows)
    outputs.json(
        "loss_landscape.json",
        {
            "runs": runs,
            # The mean width of the band: how much the loss depends on the learning rate, per variant.
            "mean_band_width": {n: float(np.nanmean(high[v] - low[v])) for v, n in enumerate(names)},
            "config": config,
        },
    )
    outputs.files["config.yaml"] = yaml.safe_dump(config, sort_keys=False)
    for v, name in enumerate(names):
        for r, lr in enumerate(rates):
            outputs.scalars[f"loss_landscape/{name}/lr_{lr:g}"] = losses[v, r].tolist()
    return outputs.write(args.output if args.tensorboard else None)


def band(losses: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per variant and step, the lowest and highest finite loss across learning rates (NaN where none)."""
    finite = np.where(np.isfinite(losses), losses, np.nan)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # a step at which every run has diverged
        return np.nanmin(finite, axis=1), np.nanmax(finite, axis=1)


def landscape_figure(low: np.ndarray, high: np.ndarray, names: list[str], title: str) -> Figure:
    """Per variant, the band between the lowest and highest loss at each step."""
    fig, ax = plt.subplots(figsize=(9, 5), dpi=100)
    steps = np.arange(1, low.shape[1] + 1)
    for v, name in enumerate(names):
        ax.fill_between(steps, low[v], high[v], color=f"C{v}", alpha=0.35, linewidth=0, label=name)
        ax.plot(steps, low[v], color=f"C{v}", linewidth=0.6)
        ax.plot(steps, high[v], color=f"C{v}", linewidth=0.6)
    values = np.concatenate([low[np.isfinite(low)], high[np.isfinite(high)]])
    if values.size:  # a diverged run's spikes would flatten everything else
        ax.set_ylim(
            max(0.0, float(values.min()) - 0.05),
            min(float(values.max()), 1.5 * float(np.percentile(values, 99))) * 1.05,
        )
    ax.set(xlabel="training step", ylabel="training loss", title=title)
    ax.legend(title="min-max band", frameon=False)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    return fig
