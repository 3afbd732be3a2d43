"""Training throughput of one config three ways, in this one process: (a) Lightning with the standard
torchvision/PIL DataLoader (``in_memory: false``, worker processes), (b) Lightning with the in-memory
path (``in_memory: true``), (c) a hand-written PyTorch loop over (b)'s very dataset object, with the
same network, optimizer, precision, memory format and batch size. It prints images per second of
each (training epochs after the first, which pays for worker start-up, cuDNN's algorithm search and
compilation), the CPU time per image (loader workers included), and the ratios b/a and b/c. Ratios,
not absolute speeds, are what hold on a shared machine, and more so over ``--rounds`` repeats of the
three runs (medians), which see the same load.

    python benchmarks/throughput.py                                   # simple CNN, CPU, CIFAR-10 JPEG copy
    python benchmarks/throughput.py --data synthetic                  # anywhere, no data needed
    python benchmarks/throughput.py --config configs/resnet18_cifar_fast.yaml --device cuda \\
        --epochs 3 [--compile] [--sync-debug]                        # ResNet-18, bf16, channels-last

The CIFAR-10 JPEG copy comes from ``../shared/data`` through ``offline_data.py`` (extracted once into
``.offline/``; its images are decoded once more and cached for the in-memory path). Validation and the
test after fit are off: only training is timed.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from lightning.pytorch import Callback, LightningModule, Trainer, seed_everything
from offline_data import CIFAR10_MEAN, CIFAR10_STD, ROOT

from litvision.cli import LitvisionCLI

SEED = 42


def cpu_seconds() -> float:
    """CPU time (user + system) of this process and of its live child processes (the loader workers;
    read from /proc on Linux): what a path costs in cores, whatever else runs on a shared machine."""
    times = os.times()
    total = times.user + times.system
    ticks = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:  # the process ended meanwhile
            continue
        if int(fields[1]) == os.getpid():  # fields[1]: the parent's id; [11], [12]: user, system ticks
            total += (int(fields[11]) + int(fields[12])) / ticks
    return total


class EpochTimer(Callback):
    """Wall time, CPU time and images of each training epoch (the device drained at both ends)."""

    def __init__(self) -> None:
        self.epochs: list[tuple[float, int]] = []
        self.cpu: list[float] = []

    def on_train_epoch_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        _drain(pl_module.device)
        self.images = 0
        self.start = time.perf_counter()
        self.cpu_start = cpu_seconds()

    def on_train_batch_end(
        self, trainer: Trainer, pl_module: LightningModule, outputs, batch, batch_idx
    ) -> None:
        self.images += batch[0].shape[0]  # a shape: no read from the device

    def on_train_epoch_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        _drain(pl_module.device)
        self.epochs.append((time.perf_counter() - self.start, self.images))
        self.cpu.append(cpu_seconds() - self.cpu_start)


def _drain(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def steady_rate(epochs: list[tuple[float, int]]) -> float:
    """Images per second over the epochs after the first (over the only one if there is one)."""
    timed = epochs[1:] or epochs
    return sum(n for _, n in timed) / sum(s for s, _ in timed)


def cpu_per_1000(epochs: list[tuple[float, int]], cpu: list[float]) -> float:
    """CPU seconds per 1,000 images over the epochs after the first."""
    timed = slice(1, None) if len(epochs) > 1 else slice(None)
    return 1000 * sum(cpu[timed]) / sum(n for _, n in epochs[timed])


def cli_args(args: argparse.Namespace, data_dir: Path | None, in_memory: bool, log_dir: str) -> list[str]:
    """The command line of one Lightning run, as a user would type it."""
    options = [
        "fit",
        f"--config={args.config}",
        f"--trainer.max_epochs={args.epochs}",
        f"--trainer.accelerator={'gpu' if args.device == 'cuda' else 'cpu'}",
        "--trainer.devices=1",
        f"--trainer.logger.save_dir={log_dir}",
        "--trainer.enable_checkpointing=false",
        f"--trainer.enable_progress_bar={str(args.progress_bar).lower()}",
        "--test_after_fit=false",
        f"--seed_everything={SEED}",
        f"--data.in_memory={str(in_memory).lower()}",
        "--data.val_size=0",
        f"--data.augment={str(args.augment).lower()}",
        f"--data.num_workers={args.num_workers}",
        f"--model.compile={str(args.compile).lower()}",
    ]
    if data_dir is not None:
        options += [
            "--data=litvision.data.ImageFolderDataModule",
            f"--data.data_dir={data_dir}",
            f"--data.mean={list(CIFAR10_MEAN)}",
            f"--data.std={list(CIFAR10_STD)}",
        ]
    else:
        options += [
            "--data=litvision.data.SyntheticDataModule",
            "--data.input_shape=[3,32,32]",
            f"--data.train_size={args.synthetic_size}",
        ]
    if args.batch_size:
        options.append(f"--data.batch_size={args.batch_size}")
    if args.precision:
        options.append(f"--trainer.precision={args.precision}")
    if args.channels_last is not None:
        options.append(f"--model.channels_last={str(args.channels_last).lower()}")
    if args.limit_batches:
        options.append(f"--trainer.limit_train_batches={args.limit_batches}")
    return options


def run_lightning(args: argparse.Namespace, data_dir: Path | None, in_memory: bool) -> tuple[dict, Any]:
    timer = EpochTimer()
    start = time.perf_counter()
    with tempfile.TemporaryDirectory() as log_dir:
        cli = LitvisionCLI(
            args=cli_args(args, data_dir, in_memory, log_dir), trainer_defaults={"callbacks": [timer]}
        )
    total = time.perf_counter() - start
    train_s = sum(s for s, _ in timer.epochs)
    result = {
        "images_per_s": steady_rate(timer.epochs),
        "cpu_s_per_1000": cpu_per_1000(timer.epochs, timer.cpu),
        "epoch_s": [round(s, 2) for s, _ in timer.epochs],
        "setup_s": total - train_s,  # data loading/decoding, model build, everything but the epochs
        "precision": str(cli.trainer.precision),
    }
    return result, cli


def run_plain(args: argparse.Namespace, data_dir: Path | None, lightning_cli: Any) -> dict:
    """The loop one writes by hand, on the in-memory run's own training set (already on the device)."""
    train_set = lightning_cli.datamodule.train_set
    batch_size = lightning_cli.datamodule.batch_size
    precision = str(lightning_cli.trainer.precision)
    device = torch.device("cuda" if args.device == "cuda" else "cpu")
    with tempfile.TemporaryDirectory() as log_dir:
        built = LitvisionCLI(args=cli_args(args, data_dir, True, log_dir)[1:], run=False)
    seed_everything(SEED)
    model = built.model
    net = model.net.to(device)
    channels_last = model.channels_last is True or (
        model.channels_last == "auto"
        and device.type == "cuda"
        and any(isinstance(m, torch.nn.Conv2d) for m in net.modules())
    )
    if channels_last:
        net = net.to(memory_format=torch.channels_last)
    if args.compile:
        net.compile()
    optimizer = model.optimizer_factory(net.parameters())
    bf16 = precision.startswith("bf16")
    batches = math.ceil(len(train_set) / batch_size)
    limit = args.limit_batches
    if limit:  # as Lightning reads limit_train_batches: a count, or a fraction of the batches
        batches = int(limit) if limit >= 1 else int(limit * batches)
    epochs, cpu = [], []
    for _ in range(args.epochs):
        _drain(device)
        start, images, cpu_start = time.perf_counter(), 0, cpu_seconds()
        order = torch.randperm(len(train_set))
        for index in order.split(batch_size)[:batches]:
            x, y = train_set.__getitems__(index.tolist())
            if channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
                loss = F.cross_entropy(net(x), y, label_smoothing=model.label_smoothing)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            images += x.shape[0]
        _drain(device)
        epochs.append((time.perf_counter() - start, images))
        cpu.append(cpu_seconds() - cpu_start)
    return {
        "images_per_s": steady_rate(epochs),
        "cpu_s_per_1000": cpu_per_1000(epochs, cpu),
        "epoch_s": [round(s, 2) for s, _ in epochs],
        "precision": precision,
    }


def main() -> None:
    # This script's own flags are in sys.argv, which LightningCLI warns about when given args; and with
    # validation off, Lightning notes that the validation loader is empty.
    warnings.filterwarnings("ignore", message=r".*args parameter is intended to run from within Python.*")
    warnings.filterwarnings("ignore", message=r".*Total length of `list` across ranks is zero.*")
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", type=Path, default=ROOT / "configs" / "cnn_cifar.yaml")
    parser.add_argument("--data", choices=["jpeg", "synthetic"], default="jpeg")
    parser.add_argument(
        "--data-dir", type=Path, help="--data jpeg: this image folder (train/, test/) instead, e.g. a subset"
    )
    parser.add_argument(
        "--synthetic-size", type=int, default=50000, help="training images of --data synthetic"
    )
    parser.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    parser.add_argument("--epochs", type=int, default=2, help="the first is warm-up, the others are timed")
    parser.add_argument("--batch-size", type=int, help="default: the config's")
    parser.add_argument("--precision", help="e.g. 32-true, bf16-mixed; default: the config's or the CLI's")
    parser.add_argument("--channels-last", action=argparse.BooleanOptionalAction, default=None)
    parser.add_argument("--compile", action="store_true", help="torch.compile the network")
    parser.add_argument(
        "--augment",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="random crop with padding and flips (per image on the DataLoader path)",
    )
    parser.add_argument(
        "--num-workers",
        type=int,
        default=min(os.cpu_count() or 1, 8),
        help="loader processes of the DataLoader path",
    )
    parser.add_argument(
        "--limit-batches", type=float, default=0, help="training batches per epoch (or a fraction)"
    )
    parser.add_argument("--progress-bar", action="store_true", help="keep Lightning's progress bar on")
    parser.add_argument(
        "--sync-debug",
        action="store_true",
        help="CUDA: warn at each host-device synchronisation of the in-memory Lightning run",
    )
    parser.add_argument(
        "--rounds",
        type=int,
        default=1,
        help="repeat (a), (b), (c) this often; ratios are medians over rounds",
    )
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args()
    if args.device == "cuda" and not torch.cuda.is_available():
        raise SystemExit("--device cuda: no CUDA device here")
    if args.data == "jpeg":
        from offline_data import cifar10_jpeg

        data_dir = args.data_dir or cifar10_jpeg()
    else:
        data_dir = None

    rounds = []
    for _ in range(args.rounds):
        loader, _ = run_lightning(args, data_dir, in_memory=False)
        if args.sync_debug:
            torch.cuda.set_sync_debug_mode("warn")
        memory, memory_cli = run_lightning(args, data_dir, in_memory=True)
        if args.sync_debug:
            torch.cuda.set_sync_debug_mode("default")
        plain = run_plain(args, data_dir, memory_cli)
        rounds.append(
            {
                "a_lightning_dataloader": loader,
                "b_lightning_in_memory": memory,
                "c_plain_loop_in_memory": plain,
                "b_over_a": memory["images_per_s"] / loader["images_per_s"],
                "b_over_c": memory["images_per_s"] / plain["images_per_s"],
                "cpu_a_over_b": loader["cpu_s_per_1000"] / memory["cpu_s_per_1000"],
            }
        )
    report(args, data_dir, rounds)


def report(args: argparse.Namespace, data_dir: Path | None, rounds: list[dict]) -> None:
    """Print each round and the medians of the ratios over rounds; write them as JSON if asked."""
    device_name = (
        torch.cuda.get_device_name() if args.device == "cuda" else f"CPU, {torch.get_num_threads()} threads"
    )
    data_name = str(args.data_dir) if args.data_dir else "CIFAR-10 (JPEG copy)"
    if data_dir is None:
        data_name = f"synthetic {args.synthetic_size}"
    precision = rounds[0]["b_lightning_in_memory"]["precision"]
    print(
        f"\n{args.config.name} on {data_name}, {device_name}, precision {precision}, augment {args.augment}, "
        f"{args.epochs} epochs per run (the first untimed), {len(rounds)} round(s) of (a), (b), (c)"
    )
    print(f"{'':38} {'images/s':>10} {'CPU s/1k img':>12} {'epochs (s)':>24} {'setup s':>8}")
    names = {
        "a_lightning_dataloader": f"(a) Lightning, DataLoader ({args.num_workers} workers)",
        "b_lightning_in_memory": "(b) Lightning, in memory",
        "c_plain_loop_in_memory": "(c) plain PyTorch loop, in memory",
    }
    for number, result in enumerate(rounds, 1):
        for key, name in names.items():
            r = result[key]
            setup = f"{r['setup_s']:8.1f}" if "setup_s" in r else f"{'':8}"
            line = f"{r['images_per_s']:10.0f} {r['cpu_s_per_1000']:12.2f} {str(r['epoch_s']):>24} {setup}"
            print(f"{name:38} {line}")
        ratios = "  ".join(f"{k} {result[k]:.2f}" for k in ("b_over_a", "b_over_c", "cpu_a_over_b"))
        print(f"  round {number}: {ratios}")
    medians = {k: statistics.median(r[k] for r in rounds) for k in ("b_over_a", "b_over_c", "cpu_a_over_b")}
    print(f"b/a (in memory vs DataLoader, images/s), median: {medians['b_over_a']:.2f}")
    print(f"b/c (Lightning vs plain loop, images/s), median: {medians['b_over_c']:.2f}")
    print(f"CPU time per image a/b, median: {medians['cpu_a_over_b']:.2f}")
    if args.json:
        setup = {**{k: str(v) for k, v in vars(args).items()}, "device_name": device_name}
        args.json.write_text(
            json.dumps({"setup": setup, "rounds": rounds, "medians": medians}, indent=2) + "\n"
        )


if __name__ == "__main__":
    main()
