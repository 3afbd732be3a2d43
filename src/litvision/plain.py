"""A hand-written PyTorch training loop: the reference a litvision run should land on
(``litvision reproduce plain RUN_DIR``, docs/reproduce.md) and the throughput benchmark's baseline.

It retrains a finished run from its ``config.yaml`` without Lightning: the same seed, network, loaders,
optimizer, epochs and batch limits, testing the weights of the best validation epoch. It saves its
state after each epoch (``state.pt``) and resumes from it; ``results.json`` is written last. Recipes it
does not implement are refused.
"""

from __future__ import annotations

import copy
import functools
import json
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
import yaml
from lightning.fabric.utilities.seed import seed_everything
from torch import nn
from torch.utils.data import DataLoader
from torchmetrics.functional import confusion_matrix

from litvision.callbacks import RandomState
from litvision.errors import LitvisionError
from litvision.metrics import accuracies
from litvision.utils import import_object, load_checkpoint, lookup, write_atomically, write_json

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

REFUSED = {  # what the plain loop does not implement
    "model.lr_scheduler": "a learning-rate schedule",
    "model.irm_weight": "IRM",
    "model.label_smoothing": "label smoothing",
    "data.oversample": "oversampling",
}


def build(value: Any, *args: Any) -> Any:
    """A ``{class_path, init_args}`` mapping (nested ones included) built into its object, ``args``
    first."""
    if isinstance(value, dict) and "class_path" in value:
        init_args = {k: build(v) for k, v in (value.get("init_args") or {}).items()}
        return import_object(value["class_path"])(*args, **init_args)
    return [build(v) for v in value] if isinstance(value, list) else value


def check_supported(config: dict[str, Any]) -> None:
    trainer = config.get("trainer") or {}
    refused = [what for key, what in REFUSED.items() if lookup(config, key)[1]]
    refused += [
        f"trainer.{key}={trainer[key]}" for key, ok in TRAINER_DEFAULTS.items() if not ok(trainer.get(key))
    ]
    if refused:
        raise LitvisionError(
            f"the plain loop does not implement {', '.join(refused)}: no reference for this run"
        )


def num_batches(limit: int | float | None, total: int) -> int:
    """``limit_train_batches`` as Lightning reads it: a count of batches (int) or a fraction (float)."""
    if limit is None:
        return total
    return min(limit, total) if isinstance(limit, int) else int(total * float(limit))


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
    """One epoch over ``loader`` (at most ``max_batches``); returns the images seen. Its sampler is told
    the epoch first, as Lightning's fit loop does; ``bf16``: autocast as ``precision: bf16-mixed``."""
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
    net.eval()
    with torch.inference_mode():
        pairs = [(net(batch[0].to(device)).argmax(1).cpu(), batch[1]) for batch in loader]
    predicted, target = (torch.cat(p) for p in zip(*pairs))
    return confusion_matrix(predicted, target, "multiclass", num_classes=num_classes).numpy()


def plain_fit(config: dict[str, Any], device: str | None = None, state: Path | None = None) -> dict[str, Any]:
    """Train and test the run described by ``config`` (a run's ``config.yaml``) with a plain loop; with
    ``state``, saved there after each epoch and resumed from there if it exists."""
    check_supported(config)
    device_ = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    trainer = config.get("trainer") or {}
    seed_everything(int(config.get("seed_everything") or 0), verbose=False)  # as the CLI seeds
    # Built in the CLI's order (data, then the network), so that the network draws the same weights.
    data = build(config["data"])
    net = build(config["model"]["backbone"], data.num_classes, tuple(data.input_shape)).to(device_)
    optimizer = build(config["model"]["optimizer"], net.parameters())
    data.setup("fit")
    data.setup("test")
    train_loader, val_loader = data.train_dataloader(), data.val_dataloader() or None
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
    if best_state is not None:
        net.load_state_dict(best_state)
    confmat = evaluate(net, data.test_dataloader(), data.num_classes, device_)
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
        "train_images": done["images"],
        "wall_time_s": round(done["seconds"], 2),
        "images_per_s": round(done["images"] / done["seconds"], 1) if done["seconds"] else None,
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
