"""Training throughput of one config three ways, in this one process: (a) Lightning with the standard
torchvision/PIL DataLoader (``in_memory: false``, worker processes), (b) Lightning with the in-memory
path (``in_memory: true``), (c) the plain PyTorch loop (``litvision.reproduce.plain.train_one_epoch``)
over (b)'s own training loader, with the same network, initial weights, optimizer, precision and memory
format. It prints images per second (epochs after the first, which pays for start-up and compilation),
CPU time per image (loader workers included) and the ratios b/a and b/c; medians over ``--rounds``,
which see the same load, are what hold on a shared machine. Validation and the test are off.

    python benchmarks/throughput.py                                   # simple CNN, CPU, offline CIFAR-10
    python benchmarks/throughput.py --data-source synthetic --scale smoke     # anywhere, no data needed
    python benchmarks/throughput.py --config configs/resnet18_cifar_fast.yaml --device cuda --epochs 3
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any

import torch
import yaml
from lightning.pytorch import Callback, seed_everything

from litvision.cli import LitvisionCLI
from litvision.reproduce.data_sources import SOURCES, DataSource
from litvision.reproduce.plain import train_one_epoch
from litvision.reproduce.plan import load_scale

ROOT = Path(__file__).resolve().parents[1]
SEED = 42
RUNS = {"a": "(a) Lightning, DataLoader", "b": "(b) Lightning, in memory", "c": "(c) plain loop, in memory"}


def cpu_seconds() -> float:
    """CPU time of this process and its live children (the loader workers, read from /proc on Linux)."""
    times = os.times()
    total = times.user + times.system
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:  # the process ended meanwhile
            continue
        if int(fields[1]) == os.getpid():  # [1]: the parent's id; [11], [12]: user and system ticks
            total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return total


class Timer:
    """Wall time, CPU time and images of each timed epoch (the GPU drained at both ends)."""

    def __init__(self, device: torch.device) -> None:
        self.device, self.epochs = device, []

    def start(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        self.t0, self.cpu0 = time.perf_counter(), cpu_seconds()

    def stop(self, images: int) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        self.epochs.append((time.perf_counter() - self.t0, cpu_seconds() - self.cpu0, images))

    def result(self) -> dict:
        timed = self.epochs[1:] or self.epochs
        images = sum(n for *_, n in timed)
        return {"images_per_s": images / sum(s for s, *_ in timed),
                "cpu_s_per_1000": 1000 * sum(c for _, c, _ in timed) / images,
                "epoch_s": [round(s, 2) for s, *_ in self.epochs]}  # fmt: skip


class EpochTimer(Callback):
    def __init__(self, timer: Timer) -> None:
        self.timer, self.images = timer, 0

    def on_train_epoch_start(self, trainer, pl_module) -> None:
        self.images = 0
        self.timer.start()

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        self.images += batch[0].shape[0]  # a shape: no read from the device

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        self.timer.stop(self.images)


def cli_args(args: argparse.Namespace, data_args: list[str], in_memory: bool, log_dir: str) -> list[str]:
    """The command line of one Lightning run, as a user would type it."""
    options = [
        f"--config={args.config}", *data_args, f"--trainer.max_epochs={args.epochs}",
        f"--trainer.accelerator={'gpu' if args.device == 'cuda' else 'cpu'}", "--trainer.devices=1",
        f"--trainer.logger.save_dir={log_dir}", "--trainer.enable_checkpointing=false",
        "--trainer.enable_progress_bar=false", "--test_after_fit=false", f"--seed_everything={SEED}",
        f"--data.in_memory={str(in_memory).lower()}", "--data.val_size=0",
        f"--data.augment={str(args.augment).lower()}", f"--data.num_workers={args.num_workers}",
        f"--model.compile={str(args.compile).lower()}",
    ]  # fmt: skip
    if args.batch_size:
        options.append(f"--data.batch_size={args.batch_size}")
    if args.precision:
        options.append(f"--trainer.precision={args.precision}")
    if args.limit_batches:
        options.append(f"--trainer.limit_train_batches={args.limit_batches}")
    if args.channels_last is not None:
        options.append(f"--model.channels_last={str(args.channels_last).lower()}")
    return options


def run_lightning(
    args: argparse.Namespace, data_args: list[str], in_memory: bool
) -> tuple[dict, LitvisionCLI]:
    timer = Timer(torch.device(args.device))
    with tempfile.TemporaryDirectory() as log_dir:
        options = ["fit", *cli_args(args, data_args, in_memory, log_dir)]
        cli = LitvisionCLI(args=options, trainer_defaults={"callbacks": [EpochTimer(timer)]})
    return {**timer.result(), "precision": str(cli.trainer.precision)}, cli


def run_plain(args: argparse.Namespace, data_args: list[str], memory: Any) -> dict:
    """The plain loop on the in-memory run's own training loader, from the same initial weights."""
    device = torch.device(args.device)
    with tempfile.TemporaryDirectory() as log_dir:
        seed_everything(SEED)
        built = LitvisionCLI(args=cli_args(args, data_args, True, log_dir), run=False)
    model = built.model
    net = model.net.to(device)
    channels_last = memory.model.uses_channels_last
    if channels_last:
        net = net.to(memory_format=torch.channels_last)
    if args.compile:
        net.compile()
    optimizer = model.optimizer_factory(net.parameters())
    loader = memory.datamodule.train_dataloader()
    batches = memory.trainer.num_training_batches
    bf16 = str(memory.trainer.precision).startswith("bf16")
    timer = Timer(device)
    for epoch in range(args.epochs):
        timer.start()
        images = train_one_epoch(net, loader, optimizer, device, epoch, batches, bf16, model.label_smoothing,
                                 channels_last)  # fmt: skip
        timer.stop(images)
    return timer.result()


def main() -> None:
    # LightningCLI warns that this script's own flags are in sys.argv.
    warnings.filterwarnings("ignore", message=r".*(args parameter is intended|across ranks is zero).*")
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", type=Path, default=ROOT / "configs" / "cnn_cifar.yaml")
    parser.add_argument("--data-source", choices=SOURCES, default="offline", help="as litvision reproduce")
    parser.add_argument("--scale", default="full", help="as litvision reproduce (synthetic needs smoke)")
    parser.add_argument("--synthetic-size", type=int, default=50000, help="training images, synthetic")
    parser.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    parser.add_argument("--epochs", type=int, default=2, help="the first is warm-up, the others are timed")
    parser.add_argument("--batch-size", type=int, help="default: the config's")
    parser.add_argument("--precision", help="e.g. 32-true, bf16-mixed; default: the config's or the CLI's")
    parser.add_argument("--compile", action="store_true", help="torch.compile the network")
    parser.add_argument("--channels-last", action=argparse.BooleanOptionalAction, default=None)
    parser.add_argument("--sync-debug", action="store_true", help="CUDA: warn at each host sync of (b)")
    parser.add_argument("--augment", action=argparse.BooleanOptionalAction, default=True)
    parser.add_argument("--num-workers", type=int, default=min(os.cpu_count() or 1, 8), help="for (a)")
    parser.add_argument("--limit-batches", type=float, default=0, help="training batches per epoch")
    parser.add_argument("--rounds", type=int, default=1, help="repeats of (a), (b), (c); medians of ratios")
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args()
    scale = load_scale(args.scale, ROOT / "configs" / "experiments" / "scales")
    source = DataSource(args.data_source, scale, ROOT / "data", ROOT.parent / "shared" / "data")
    data_args, _ = source.run_args(yaml.safe_load(args.config.read_text()))
    if args.data_source == "synthetic":
        data_args.append(f"--data.train_size={args.synthetic_size}")
    rounds = []
    for _ in range(args.rounds):
        a, _ = run_lightning(args, data_args, in_memory=False)
        if args.sync_debug:
            torch.cuda.set_sync_debug_mode("warn")
        b, memory = run_lightning(args, data_args, in_memory=True)
        if args.sync_debug:
            torch.cuda.set_sync_debug_mode("default")
        c = run_plain(args, data_args, memory)
        rounds.append({"a": a, "b": b, "c": c, "b/a": b["images_per_s"] / a["images_per_s"],
                       "b/c": b["images_per_s"] / c["images_per_s"],
                       "cpu a/b": a["cpu_s_per_1000"] / b["cpu_s_per_1000"]})  # fmt: skip
    device = (
        torch.cuda.get_device_name() if args.device == "cuda" else f"CPU, {torch.get_num_threads()} threads"
    )
    precision = rounds[0]["b"]["precision"]
    print(f"\n{args.config.name}, {args.data_source} data, {device}, precision {precision}, "
          f"augment {args.augment}, {args.epochs} epochs per run (the first untimed)")  # fmt: skip
    print(f"{'':32} {'images/s':>10} {'CPU s/1k img':>12} {'epochs (s)':>24}")
    for number, result in enumerate(rounds, 1):
        for key, name in RUNS.items():
            r = result[key]
            print(f"{name:32} {r['images_per_s']:10.0f} {r['cpu_s_per_1000']:12.2f} {str(r['epoch_s']):>24}")
        print(f"  round {number}: " + "  ".join(f"{k} {result[k]:.2f}" for k in ("b/a", "b/c", "cpu a/b")))
    medians = {k: statistics.median(r[k] for r in rounds) for k in ("b/a", "b/c", "cpu a/b")}
    print("medians: " + "  ".join(f"{k} {v:.2f}" for k, v in medians.items()))
    if args.json:
        setup = {**{k: str(v) for k, v in vars(args).items()}, "device_name": device}
        args.json.write_text(json.dumps({"setup": setup, "rounds": rounds, "medians": medians}, indent=2))


if __name__ == "__main__":
    main()
