"""How long the runs of a reproduction take on this machine, before and while they run.

Before: each architecture's training step is timed once on this machine's device (a forward and backward
pass of random images, cached in ``RUNS/estimates.json``) and multiplied by the images a run trains on
(epochs x training images, from the dataset's size, the scale's subset and ``limit_train_batches``),
plus a share for validation and test. Imbalance, noise copies and data loading are left out, so this is
a rough figure. While running: the estimate is scaled by how long the finished runs took compared with
their estimates.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

# Images in each dataset's training and test sets (what a run trains on before the validation split).
TRAIN_IMAGES = {"cifar10": 50_000, "mnist": 60_000, "eurosat": 27_000}
EVAL_SHARE = 0.3  # validation and test time, as a share of training time (eval steps are cheaper)
START_S = 20.0  # starting Python, Lightning and the data of one run


def dotted_args(args: list[str]) -> dict[str, Any]:
    """``--key=value`` command-line arguments as a mapping (later ones win)."""
    values: dict[str, Any] = {}
    for arg in args:
        if arg.startswith("--") and "=" in arg:
            key, value = arg[2:].split("=", 1)
            values[key] = yaml.safe_load(value)
    return values


def setting(config: dict[str, Any], args: dict[str, Any], key: str, default: Any = None) -> Any:
    """A run's setting ``section.name``: from its arguments (``data.x`` or ``data.init_args.x``), else
    its config file, else ``default``."""
    section, name = key.split(".", 1)
    for candidate in (key, f"{section}.init_args.{name}"):
        if candidate in args:
            return args[candidate]
    node: Any = config.get(section) or {}
    node = node.get("init_args", node) if section in ("data", "model") else node
    return node.get(name, default) if isinstance(node, dict) else default


def training_images(dataset: str | None, config: dict[str, Any], args: dict[str, Any],
                    sizes: dict[str, Any]) -> int:  # fmt: skip
    """The images one epoch trains on: the dataset (or the scale's subset), less test and validation."""
    if dataset is None:
        return 1_000
    total = 10 * sizes["train"] if "train" in sizes else TRAIN_IMAGES[dataset]
    if dataset == "eurosat":
        total = 10 * sizes.get("images", 2_700)
        test = setting(config, args, "data.test_size", 0.2)
        total -= int(total * test) if isinstance(test, float) else int(test)
    val = setting(config, args, "data.val_size", 0.1)
    total -= int(total * val) if isinstance(val, float) else int(val)
    return max(total, 1)


def step_seconds(backbone: dict[str, Any], shape: tuple[int, ...], batch: int, cache: Path) -> float:
    """Seconds per image of a training step of ``backbone`` on this machine's device (cached)."""
    import importlib

    import torch

    device = "cuda" if torch.cuda.is_available() else "cpu"
    init_args = {k: v for k, v in (backbone.get("init_args") or {}).items() if k != "pretrained"}
    key = json.dumps([backbone.get("class_path"), init_args, list(shape), batch, device], sort_keys=True)
    known = json.loads(cache.read_text()) if cache.is_file() else {}
    if key in known:
        return float(known[key])
    module_name, _, class_name = str(backbone["class_path"]).rpartition(".")
    net_class = getattr(importlib.import_module(module_name), class_name)
    net = net_class(10, shape, **init_args).to(device)
    images = torch.randn(batch, *shape, device=device)
    labels = torch.zeros(batch, dtype=torch.long, device=device)
    times = []
    for _ in range(3):  # the first step warms up (a few seconds per architecture on a CPU)
        start = time.perf_counter()
        torch.nn.functional.cross_entropy(net(images), labels).backward()
        if device == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    seconds = min(times[1:]) / batch
    known[key] = seconds
    cache.parent.mkdir(parents=True, exist_ok=True)
    cache.write_text(json.dumps(known, indent=1))
    return seconds


def format_duration(seconds: float) -> str:
    minutes = int(seconds // 60)
    return f"{minutes // 60}h{minutes % 60:02d}m" if minutes >= 60 else f"{minutes}m{int(seconds % 60):02d}s"


@dataclass
class Progress:
    """Runs finished, running and left, the time elapsed and an estimate of the time left."""

    predicted: dict[str, float]  # run id -> estimated seconds, for the runs this invocation trains
    slots: int = 1
    started: float = field(default_factory=time.perf_counter)
    finished: set[str] = field(default_factory=set)
    running: set[str] = field(default_factory=set)
    failed: set[str] = field(default_factory=set)
    actual: dict[str, float] = field(default_factory=dict)

    def start(self, run: str) -> None:
        self.running.add(run)

    def end(self, run: str, seconds: float, ok: bool) -> None:
        self.running.discard(run)
        (self.finished if ok else self.failed).add(run)
        if ok:
            self.actual[run] = seconds

    def left_seconds(self) -> float:
        measured = [r for r in self.actual if r in self.predicted]
        scale = (
            sum(self.actual[r] for r in measured) / sum(self.predicted[r] for r in measured)
            if measured and sum(self.predicted[r] for r in measured) > 0
            else 1.0
        )
        left = [r for r in self.predicted if r not in self.finished and r not in self.failed]
        return scale * sum(self.predicted[r] for r in left) / max(self.slots, 1)

    def line(self) -> str:
        left = len(self.predicted) - len(self.finished) - len(self.failed) - len(self.running)
        text = f"{len(self.finished)} finished, {len(self.running)} running, {left} left"
        if self.failed:
            text += f", {len(self.failed)} failed"
        elapsed = time.perf_counter() - self.started
        return (
            f"{text}; {format_duration(elapsed)} elapsed, about {format_duration(self.left_seconds())} left"
        )
