"""A hand-written PyTorch training loop: the reference a litvision run should land on.

It reads a finished run's ``config.yaml`` and trains the same network the way a user would by hand,
without Lightning: same seed (so the same initial weights), the same datamodule's loaders (so the same
batches in the same order), same optimizer, epochs and batch limits; it keeps the weights with the best
validation accuracy, as the run's checkpoint does, and tests them. What differs is the training loop
only: Lightning's loops, ``ImageClassifier``, its metrics and checkpointing against twenty lines of
PyTorch. On a CPU the two should end on the same test accuracy.

    litvision reproduce plain lightning_logs/cnn_cifar/version_0 --output plain/

Writes ``results.json`` (test ``acc``, ``acc_macro``, ``per_class``, the best validation accuracy and
its epoch, the wall time) in the output folder, last. After each epoch it saves its state there
(``state.pt``: weights, optimizer, best weights so far, the random generators), so that the same command
run again after a stop goes on from the last epoch finished, as if it had never stopped. Recipes it does
not implement (a learning-rate schedule, IRM, label smoothing, oversampling, gradient clipping or
accumulation) are refused.
"""

from __future__ import annotations

import copy
import functools
import json
import os
import random
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
import yaml
from torch import nn
from torch.utils.data import DataLoader

from litvision.callbacks import RandomState
from litvision.errors import LitvisionError
from litvision.metrics import accuracies
from litvision.utils import import_object, load_checkpoint, write_atomically, write_json

STATE = "state.pt"  # in the output folder, after each epoch; removed once results.json is written
# Trainer settings the plain loop follows only at their defaults.
TRAINER_DEFAULTS = {
    "accumulate_grad_batches": lambda v: v in (None, 1),
    "gradient_clip_val": lambda v: not v,
    "precision": lambda v: v is None or str(v).startswith("32"),
    "check_val_every_n_epoch": lambda v: v in (None, 1),
    "val_check_interval": lambda v: v is None or v == 1.0,
    "limit_val_batches": lambda v: v is None or (isinstance(v, float) and v == 1.0),
    "max_steps": lambda v: v in (None, -1),
}


def instantiate(value: Any) -> Any:
    """A ``{class_path, init_args}`` mapping (nested ones included) built into its object."""
    if isinstance(value, dict) and "class_path" in value:
        init_args = {k: instantiate(v) for k, v in (value.get("init_args") or {}).items()}
        return import_object(value["class_path"])(**init_args)
    if isinstance(value, list):
        return [instantiate(v) for v in value]
    return value


def check_supported(config: dict[str, Any]) -> None:
    model, trainer, data = config["model"], config.get("trainer") or {}, config["data"].get("init_args") or {}
    refused = []
    if model.get("lr_scheduler"):
        refused.append("a learning-rate schedule")
    if model.get("irm_weight"):
        refused.append("IRM")
    if model.get("label_smoothing"):
        refused.append("label smoothing")
    if data.get("oversample"):
        refused.append("oversampling")
    for key, is_default in TRAINER_DEFAULTS.items():
        if not is_default(trainer.get(key)):
            refused.append(f"trainer.{key}={trainer[key]}")
    if refused:
        raise LitvisionError(
            f"the plain loop does not implement {', '.join(refused)}: no reference for this run"
        )


def seed_all(seed: int) -> None:
    """What ``seed_everything`` does: Python's, NumPy's and torch's generators, and the variable the
    datamodule reads its sampler's seed from."""
    os.environ["PL_GLOBAL_SEED"] = str(seed)
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def num_batches(limit: int | float | None, total: int) -> int:
    if limit is None:
        return total
    if isinstance(limit, int):  # a count of batches; a float is a fraction of the epoch
        return min(limit, total)
    return int(total * float(limit))


def train_one_epoch(
    net: nn.Module,
    loader: DataLoader,
    optimizer: torch.optim.Optimizer,
    device: torch.device,
    epoch: int,
    max_batches: int | None = None,
    bf16: bool = False,
    label_smoothing: float = 0.0,
    channels_last: bool = False,
) -> int:
    """One epoch of the plain loop over ``loader`` (at most ``max_batches``); returns the images seen.

    The loader's sampler is told the epoch first, as Lightning's fit loop does, so that each epoch has
    its own order. ``bf16``: autocast as ``precision: bf16-mixed`` does."""
    for sampler in (loader.sampler, getattr(loader.batch_sampler, "sampler", None)):
        if hasattr(sampler, "set_epoch"):
            sampler.set_epoch(epoch)
    net.train()
    images = 0
    for i, batch in enumerate(loader):
        if max_batches is not None and i >= max_batches:
            break
        x, y = batch[0].to(device), batch[1].to(device)
        if channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
            loss = F.cross_entropy(net(x), y, label_smoothing=label_smoothing)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        images += len(y)
    return images


def evaluate(net: nn.Module, loader: DataLoader, num_classes: int, device: torch.device) -> np.ndarray:
    """The confusion matrix of ``net`` on ``loader`` (rows: true class)."""
    confmat = torch.zeros(num_classes, num_classes, dtype=torch.long)
    net.eval()
    with torch.inference_mode():
        for batch in loader:
            x, y = batch[0].to(device), batch[1]
            predicted = net(x).argmax(1).cpu()
            confmat += torch.bincount(y * num_classes + predicted, minlength=num_classes**2).view(
                num_classes, num_classes
            )
    return confmat.numpy()


def plain_fit(config: dict[str, Any], device: str | None = None, state: Path | None = None) -> dict[str, Any]:
    """Train and test the run described by ``config`` (a run's ``config.yaml``) with a plain loop; with
    ``state``, saved there after each epoch and resumed from there if it exists."""
    check_supported(config)
    device_ = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    seed = int(config.get("seed_everything") or 0)
    trainer = config.get("trainer") or {}
    seed_all(seed)
    # Built in the CLI's order (data, then the network), so that the network draws the same weights.
    data = instantiate(config["data"])
    backbone = config["model"]["backbone"]
    net = import_object(backbone["class_path"])(
        data.num_classes, tuple(data.input_shape), **(backbone.get("init_args") or {})
    ).to(device_)
    optimizer_spec = config["model"]["optimizer"]
    optimizer = import_object(optimizer_spec["class_path"])(
        net.parameters(), **(optimizer_spec.get("init_args") or {})
    )
    data.setup("fit")
    data.setup("test")
    train_loader = data.train_dataloader()
    val_loader = data.val_dataloader() or None
    test_loader = data.test_dataloader()
    steps = num_batches(trainer.get("limit_train_batches"), len(train_loader))
    epochs = int(trainer.get("max_epochs") or 1000)
    done: dict[str, Any] = {"epochs": 0, "best_acc": -1.0, "best_epoch": None, "images": 0, "seconds": 0.0}
    best_state = None
    if state is not None and state.is_file():
        saved = load_checkpoint(state)
        if saved["config"] != config:
            raise LitvisionError(f"'{state}' holds the plain loop of another run: delete it to start afresh")
        net.load_state_dict(saved["state_dict"])
        optimizer.load_state_dict(saved["optimizer"])
        RandomState.restore(saved["random"])
        done, best_state = saved["done"], saved["best_state"]
    start = time.perf_counter() - done["seconds"]
    for epoch in range(done["epochs"], epochs):
        done["images"] += train_one_epoch(net, train_loader, optimizer, device_, epoch, steps)
        if val_loader is not None:
            confmat = evaluate(net, val_loader, data.num_classes, device_)
            acc = accuracies(confmat)["acc"].item()
            if acc > done["best_acc"]:  # the first epoch of the best accuracy, as ModelCheckpoint keeps it
                done.update(best_acc=acc, best_epoch=epoch + 1)  # counted from 1, as litvision shows epochs
                best_state = copy.deepcopy(net.state_dict())
        done.update(epochs=epoch + 1, seconds=time.perf_counter() - start)
        if state is not None:
            saved = {"config": config, "state_dict": net.state_dict(), "optimizer": optimizer.state_dict()}
            saved.update(random=RandomState().state_dict(), done=done, best_state=best_state)
            write_atomically(state, functools.partial(torch.save, saved))
    seconds, images = done["seconds"], done["images"]
    if best_state is not None:
        net.load_state_dict(best_state)
    confmat = evaluate(net, test_loader, data.num_classes, device_)
    values = {k: v.tolist() for k, v in accuracies(confmat).items()}
    per_class = {
        name: {"acc": acc, "support": int(row.sum())}
        for name, acc, row in zip(data.class_names, values["acc_class"], confmat)
    }
    return {
        "acc": values["acc"],
        "acc_macro": values["acc_macro"],
        "per_class": per_class,
        "confusion_matrix": confmat.tolist(),
        "val_acc_best": done["best_acc"] if best_state is not None else None,
        "best_epoch": done["best_epoch"],
        "epochs": epochs,
        "train_images": images,
        "wall_time_s": round(seconds, 2),
        "images_per_s": round(images / seconds, 1) if seconds else None,
        "device": str(device_),
    }


def run(run_dir: Path, output: Path | None = None, device: str | None = None) -> None:
    """``litvision reproduce plain``: train, test, write ``results.json`` and print the headline."""
    config_file = run_dir / "config.yaml"
    if not config_file.is_file():
        raise LitvisionError(f"'{run_dir}' is not a run directory: it has no config.yaml")
    output = output or run_dir / "plain_loop"
    results = plain_fit(yaml.safe_load(config_file.read_text()), device, output / STATE)
    write_json(output / "results.json", {"run": str(run_dir), **results})
    (output / STATE).unlink()
    print(
        json.dumps({k: results[k] for k in ("acc", "acc_macro", "val_acc_best", "best_epoch", "wall_time_s")})
    )
