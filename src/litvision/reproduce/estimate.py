"""How long the runs of a reproduction take on this machine, before and while they run.

Before: each architecture's training step is timed on this machine's device, once per command and as it
is loaded now (a forward and backward pass of random images; not kept across commands, where a timing
taken in a busy hour would outlive it), and multiplied by the images a run trains on
(epochs x training images, from the dataset's size, the scale's subset and ``limit_train_batches``),
plus a share for validation and test. Imbalance, noise copies and data loading are left out, so this is
a rough figure. While running: the estimate is scaled by how long the finished runs took compared with
their estimates.
"""

from __future__ import annotations

import functools
import json
import time
from typing import Any

import yaml

from litvision.utils import import_object

# Images in each dataset's training and test sets (what a run trains on before the validation split).
TRAIN_IMAGES = {"cifar10": 50_000, "mnist": 60_000, "eurosat": 27_000}
EVAL_SHARE = 0.3  # validation and test time, as a share of training time (eval steps are cheaper)
START_S = 20.0  # starting Python, Lightning and the data of one run


def run_seconds(
    config: dict[str, Any],
    args: list[str],
    dataset: str,
    shape: tuple[int, ...],
    sizes: dict[str, Any],
    epochs_done: int = 0,
) -> float | None:
    """Estimated seconds of one run of ``config`` with the ``--key=value`` arguments ``args`` (later ones
    win), on ``dataset`` (its subset ``sizes`` per class, if any), ``epochs_done`` of its epochs trained
    already (a resumed run); None when its network is unknown."""
    given = {k: yaml.safe_load(v) for k, _, v in (a[2:].partition("=") for a in args if "=" in a)}

    def setting(key: str, default: Any = None) -> Any:  # from the arguments, else the config file
        section, name = key.split(".", 1)
        for candidate in (key, f"{section}.init_args.{name}"):
            if candidate in given:
                return given[candidate]
        node = config.get(section) or {}
        node = node.get("init_args", node) if section in ("data", "model") else node
        return node.get(name, default) if isinstance(node, dict) else default

    backbone = setting("model.backbone")
    if not isinstance(backbone, dict) or "class_path" not in backbone:
        return None
    images = 10 * sizes["train"] if "train" in sizes else TRAIN_IMAGES[dataset]
    if dataset == "eurosat":  # one folder: the test split comes out of it
        images = 10 * sizes.get("images", 2_700)
        test = setting("data.test_size", 0.2)
        images -= int(images * test) if isinstance(test, float) else int(test)
    val = setting("data.val_size", 0.1)
    images -= int(images * val) if isinstance(val, float) else int(val)
    batch = int(setting("data.batch_size", 128))
    limit = setting("trainer.limit_train_batches", 1.0)
    images = min(images, limit * batch) if isinstance(limit, int) else int(images * float(limit))
    epochs = max(int(setting("trainer.max_epochs", 1000)) - epochs_done, 0)
    init_args = {k: v for k, v in (backbone.get("init_args") or {}).items() if k != "pretrained"}
    per_image = step_seconds(backbone["class_path"], json.dumps(init_args), shape, min(batch, 64))
    return START_S + epochs * max(images, 1) * per_image * (1 + EVAL_SHARE)


@functools.cache
def step_seconds(class_path: str, init_args: str, shape: tuple[int, ...], batch: int) -> float:
    """Seconds per image of a training step of the network (its ``init_args`` as JSON) on this machine's
    device, timed once per command."""
    import torch

    device = "cuda" if torch.cuda.is_available() else "cpu"
    net = import_object(class_path)(10, shape, **json.loads(init_args)).to(device)
    images = torch.randn(batch, *shape, device=device)
    labels = torch.zeros(batch, dtype=torch.long, device=device)
    times = []
    for _ in range(3):  # the first step warms up (a few seconds per architecture on a CPU)
        start = time.perf_counter()
        torch.nn.functional.cross_entropy(net(images), labels).backward()
        if device == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    return min(times[1:]) / batch


def format_duration(seconds: float) -> str:
    minutes = int(seconds // 60)
    return f"{minutes // 60}h{minutes % 60:02d}m" if minutes >= 60 else f"{minutes}m{int(seconds % 60):02d}s"


class Progress:
    """Runs finished, running and left, the time elapsed and an estimate of the time left."""

    def __init__(self, predicted: dict[str, float], slots: int = 1) -> None:
        self.predicted = predicted  # run id -> estimated seconds, for the runs this invocation trains
        self.slots = max(slots, 1)
        self.started = time.perf_counter()
        self.running: set[str] = set()
        self.failed: set[str] = set()
        self.actual: dict[str, float] = {}  # run id -> seconds, of the finished runs

    def start(self, run: str) -> None:
        self.running.add(run)

    def end(self, run: str, seconds: float, ok: bool | None) -> None:
        """A run ended: ``ok`` True (finished), False (failed) or None (interrupted: left to do)."""
        self.running.discard(run)
        if ok:
            self.actual[run] = seconds
        elif ok is False:
            self.failed.add(run)

    def left_seconds(self) -> float:
        expected = sum(self.predicted.get(r, 0.0) for r in self.actual)
        ratio = sum(self.actual.values()) / expected if expected > 0 else 1.0
        left = [s for r, s in self.predicted.items() if r not in self.actual and r not in self.failed]
        return ratio * sum(left) / self.slots

    def line(self) -> str:
        left = len(self.predicted) - len(self.actual) - len(self.failed) - len(self.running)
        failed = f", {len(self.failed)} failed" if self.failed else ""
        elapsed = format_duration(time.perf_counter() - self.started)
        return (
            f"{len(self.actual)} finished, {len(self.running)} running, {left} left{failed}; "
            f"{elapsed} elapsed, about {format_duration(self.left_seconds())} left"
        )
