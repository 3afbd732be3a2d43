"""How long the runs of a reproduction take on this machine, before and while they run.

Before: each architecture's training step is timed on this machine's device, once per command and as it
is loaded now (a timing taken in a busy hour must not outlive it), and multiplied by the images a run
trains on (epochs x training images, from the dataset's size, the scale's subset, its imbalance and
``limit_train_batches``), plus a share for validation and test. Noise copies and data
loading are left out: a rough figure. While running: the estimate is scaled by how long the finished
runs took compared with their estimates.
"""

from __future__ import annotations

import functools
import json
import time
from typing import Any

import torch

from litvision.utils import import_object, lookup

# Images in each dataset's training set (before the validation split; EuroSAT: all, before its test split).
TRAIN_IMAGES = {"cifar10": 50_000, "mnist": 60_000, "eurosat": 27_000}
EVAL_SHARE = 0.3  # validation and test time, as a share of training time (eval steps are cheaper)
START_S = 20.0  # starting Python, Lightning and the data of one run


def run_seconds(
    config: dict[str, Any], args: dict[str, Any], dataset: str, shape: tuple[int, ...], epochs_done: int = 0
) -> float | None:
    """Estimated seconds of a run of ``config`` with the arguments ``args`` (dotted keys, as on the
    command line) on ``dataset``, ``epochs_done`` of its epochs trained already; None when its network is
    unknown."""

    def setting(key: str, default: Any = None) -> Any:  # the command line's, else the config file's
        section, name = key.split(".", 1)
        for given in (key, f"{section}.init_args.{name}"):
            if given in args:
                return args[given]
        found, value = lookup(config, key)
        return value if found else default

    backbone = setting("model.backbone")
    if not isinstance(backbone, dict) or "class_path" not in backbone:
        return None
    images = 10 * setting("data.train_per_class", TRAIN_IMAGES[dataset] // 10)
    if dataset == "eurosat":  # one pool: the test split comes out of it
        images = 10 * setting("data.images_per_class", 2_700)
        test = setting("data.test_size", 0.2)
        images -= int(images * test) if isinstance(test, float) else int(test)
    val = setting("data.val_size", 0.1)
    images -= int(images * val) if isinstance(val, float) else int(val)
    imbalance = setting("data.imbalance")
    if isinstance(imbalance, dict) and "class_path" in imbalance:  # CIFAR-10-LT: a quarter of the images
        profile = import_object(imbalance["class_path"])(**(imbalance.get("init_args") or {}))
        images = sum(profile.counts([images // 10] * 10))
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
    device = "cuda" if torch.cuda.is_available() else "cpu"
    net = import_object(class_path)(10, shape, **json.loads(init_args))
    return time_step(net, shape, batch, device, steps=1)


def time_step(
    net: torch.nn.Module, shape: tuple[int, ...], batch: int, device: str, steps: int = 2, bf16: bool = False
) -> float:
    """Seconds per image of a training step (forward, backward, SGD step) of ``net`` on random images:
    the fastest of ``steps`` after one that warms up (allocations, cuDNN's choice; seconds on a CPU)."""
    net = net.to(device).train()
    images = torch.randn(batch, *shape, device=device)
    optimizer = torch.optim.SGD(net.parameters(), lr=1e-3)
    times = []
    for _ in range(steps + 1):
        start = time.perf_counter()
        with torch.autocast(device_type=device, dtype=torch.bfloat16, enabled=bf16):
            logits = net(images)
            labels = torch.arange(batch, device=device) % logits.shape[1]
            loss = torch.nn.functional.cross_entropy(logits, labels)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        if device == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    return min(times[1:]) / batch
