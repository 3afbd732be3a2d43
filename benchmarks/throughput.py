"""Training throughput of one config, in one process, with the same network, initial weights, optimizer,
precision and memory format: (a) Lightning with the torchvision/PIL DataLoader, (b) Lightning in memory,
(c) the plain loop (``litvision/plain.py``) over (b)'s loader; (g), (h): (b), (c) compiled in
``--compile``'s mode (default ``reduce-overhead``: CUDA graphs). Images/s of the epochs after the first
(start-up, compilation), CPU time per image (loader workers included) and the ratios, medians over
``--rounds``. ``--profile DIR``: one more epoch of each under torch's profiler (docs/performance.md).

    python benchmarks/throughput.py                                   # simple CNN, CPU, offline CIFAR-10
    python benchmarks/throughput.py --data-source synthetic --scale smoke     # anywhere, no data needed
    python benchmarks/throughput.py --config configs/resnet18_cifar.yaml --device cuda --paths bcgh  # graphs
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import statistics
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any

import torch
import yaml
from lightning.pytorch import Callback, seed_everything
from torch._dynamo.utils import counters

from litvision.cli import LitvisionCLI
from litvision.data import CIFAR10DataModule
from litvision.data.sources import FOLDER, SOURCES, DataSource
from litvision.parsing import options
from litvision.plain import train_one_epoch
from litvision.reproduce.plan import load_scale
from litvision.utils import markdown_table

ROOT = Path(__file__).resolve().parents[1]
SEED = 42
RUNS = {"a": "(a) Lightning, DataLoader", "b": "(b) Lightning, in memory", "c": "(c) plain loop, in memory"}
RUNS.update(g="(g) Lightning, compiled", h="(h) plain loop, compiled")
RATIOS = {"b/a": ("b", "a"), "b/c": ("b", "c"), "g/b": ("g", "b"), "g/h": ("g", "h"), "cpu a/b": ("a", "b")}
FIXED = "--trainer.devices=1 --trainer.enable_checkpointing=false --trainer.enable_progress_bar=false"
FIXED += f" --test_after_fit=false --seed_everything={SEED} --data.val_size=0"


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
    """Wall time, CPU time and images of each timed epoch (the GPU drained at both ends); with a
    ``profile`` path, one more epoch under torch's profiler, its operator table written there."""

    def __init__(self, device: torch.device, profile: Path | None = None) -> None:
        self.device, self.profile, self.epochs, self.profiled = device, profile, [], {}

    def start(self, profiling: bool = False) -> None:
        self.profiler = None
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        self.t0, self.cpu0 = time.perf_counter(), cpu_seconds()
        if profiling:
            cuda = [torch.profiler.ProfilerActivity.CUDA] if self.device.type == "cuda" else []
            self.profiler = torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU, *cuda])
            self.profiler.start()

    def stop(self, images: int, steps: int) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        if self.profiler is None:
            self.epochs.append((time.perf_counter() - self.t0, cpu_seconds() - self.cpu0, images))
            return
        self.profiler.stop()
        wall, events = time.perf_counter() - self.t0, self.profiler.key_averages()
        self.profile.parent.mkdir(parents=True, exist_ok=True)
        self.profile.write_text(events.table(sort_by="self_cpu_time_total", row_limit=40))
        # CPU: torch's operators and the CUDA runtime calls (the rest of the wall time is Python and
        # waiting); GPU: the kernels themselves, as torch's own table totals them, not the GPU spans of
        # annotations such as Optimizer.step (under Lightning's closure it covers forward and backward).
        cpu_us = sum(e.self_cpu_time_total for e in events if e.key.startswith(("aten::", "cuda")))
        gpu = torch.autograd.DeviceType.CUDA
        gpu_us = sum(
            e.self_device_time_total for e in events if e.device_type == gpu and not e.is_user_annotation
        )
        calls = ("cudaLaunchKernel", "cudaLaunchKernelExC", "cudaGraphLaunch")
        launches = sum(e.count for e in events if e.key in calls)
        per = max(steps, 1)
        self.profiled = {"steps": steps, "wall_ms": round(1000 * wall / per, 3)}
        self.profiled.update(
            cpu_op_ms=round(cpu_us / 1000 / per, 3), gpu_kernel_ms=round(gpu_us / 1000 / per, 3)
        )
        self.profiled.update(launches=round(launches / per, 1))

    def result(self) -> dict:
        timed = self.epochs[1:] or self.epochs
        images = sum(n for *_, n in timed)
        result = {"images_per_s": images / sum(s for s, *_ in timed)}
        result.update(cpu_s_per_1000=1000 * sum(c for _, c, _ in timed) / images)
        result.update(epoch_s=[round(s, 2) for s, *_ in self.epochs])
        return {**result, "profile": self.profiled} if self.profile else result


class EpochTimer(Callback):
    """Times the epochs before ``timed``; profiles the one after them (if the timer profiles)."""

    def __init__(self, timer: Timer, timed: int) -> None:
        self.timer, self.timed, self.images, self.steps = timer, timed, 0, 0

    def on_train_epoch_start(self, trainer, pl_module) -> None:
        self.images = self.steps = 0
        self.timer.start(profiling=trainer.current_epoch >= self.timed)

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        self.images += batch[0].shape[0]  # a shape: no read from the device
        self.steps += 1

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        self.timer.stop(self.images, self.steps)


def cli_args(
    args: argparse.Namespace, data_args: list[str], in_memory: bool, log_dir: str, mode: str
) -> list[str]:
    """The command line of one Lightning run, as a user would type it."""
    given = {
        "trainer.accelerator": "gpu" if args.device == "cuda" else "cpu",
        "trainer.logger.save_dir": log_dir,
        "data.in_memory": in_memory,
        "data.augment": args.augment,
        "data.num_workers": args.num_workers,
        "model.compile": mode,
        "data.batch_size": args.batch_size,
        "trainer.precision": args.precision,
        "trainer.limit_train_batches": args.limit_batches or None,
        "model.channels_last": args.channels_last,
    }
    given = {key: value for key, value in given.items() if value is not None}
    return [f"--config={args.config}", *data_args, *shlex.split(FIXED), *options(given)]


def run_lightning(
    args: argparse.Namespace, data_args: list[str], in_memory: bool, profile: Path | None, mode: str = "false"
) -> tuple[dict, LitvisionCLI]:
    timer = Timer(torch.device(args.device), profile)
    with tempfile.TemporaryDirectory() as log_dir:
        options_ = cli_args(args, data_args, in_memory, log_dir, mode)
        epochs = f"--trainer.max_epochs={args.epochs + bool(profile)}"
        cli = LitvisionCLI(
            args=["fit", *options_, epochs], trainer_defaults={"callbacks": [EpochTimer(timer, args.epochs)]}
        )
    return {**timer.result(), "precision": str(cli.trainer.precision)}, cli


def run_plain(
    args: argparse.Namespace, data_args: list[str], memory: Any, profile: Path | None, mode: str | None = None
) -> dict:
    """The plain loop on the in-memory run's own training loader, from the same initial weights; its
    network compiled in ``mode``, if given, as the Lightning run's (static shapes)."""
    device = torch.device(args.device)
    with tempfile.TemporaryDirectory() as log_dir:
        seed_everything(SEED)
        model = LitvisionCLI(args=cli_args(args, data_args, True, log_dir, "false"), run=False).model
    net, channels_last = model.net.to(device), memory.model.uses_channels_last
    net = net.to(memory_format=torch.channels_last) if channels_last else net
    optimizer = model.optimizer_factory(net.parameters())
    net = torch.compile(net, mode=mode, dynamic=False) if mode else net
    loader, batches = memory.datamodule.train_dataloader(), memory.trainer.num_training_batches
    bf16 = str(memory.trainer.precision).startswith("bf16")
    timer = Timer(device, profile)
    for epoch in range(args.epochs + bool(profile)):
        timer.start(profiling=epoch >= args.epochs)
        smoothing = model.label_smoothing
        timer.stop(
            train_one_epoch(net, loader, optimizer, device, epoch, batches, bf16, smoothing, channels_last),
            batches,
        )
    return timer.result()


def main() -> None:
    # LightningCLI warns that this script's own flags are in sys.argv.
    warnings.filterwarnings("ignore", message=r".*(args parameter is intended|across ranks is zero).*")
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", type=Path, default=ROOT / "configs" / "cnn_cifar.yaml")
    parser.add_argument("--data-source", choices=SOURCES, default="offline", help="as litvision reproduce")
    parser.add_argument("--scale", default="full", help="as litvision reproduce (synthetic needs smoke)")
    parser.add_argument("--synthetic-size", type=int, default=50000, help="training images, synthetic")
    parser.add_argument("--data-dir", type=Path, help="instead: a CIFAR-10 image folder (train/, test/)")
    parser.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    parser.add_argument("--epochs", type=int, default=2, help="the first is warm-up, the others are timed")
    parser.add_argument("--batch-size", type=int, help="default: the config's")
    parser.add_argument("--precision", help="e.g. 32-true, bf16-mixed; default: the config's or the CLI's")
    parser.add_argument("--compile", default="reduce-overhead", help="torch.compile mode of (g) and (h)")
    parser.add_argument("--channels-last", action=argparse.BooleanOptionalAction, default=None)
    parser.add_argument("--augment", action=argparse.BooleanOptionalAction, default=True)
    parser.add_argument("--num-workers", type=int, default=min(os.cpu_count() or 1, 8), help="for (a)")
    parser.add_argument("--limit-batches", type=float, default=0, help="training batches per epoch")
    parser.add_argument("--rounds", type=int, default=1, help="repeats of the paths; medians of ratios")
    parser.add_argument("--paths", default="abc", help="which of (a), (b), (c), (g), (h) to run, e.g. bcgh")
    parser.add_argument("--profile", type=Path, help="profile one more epoch of (b) and (c), tables here")
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args()
    paths = set(args.paths)
    if not paths or paths - set(RUNS) or any(x in paths and y not in paths for x, y in ("cb", "hg")):
        parser.error(f"--paths {args.paths!r}: give some of a, b, c, g, h; c runs on b's loader, h on g's")
    # --data-dir: a CIFAR-10 image folder, e.g. the GPU check's JPEG copy or a subset (no ../shared there)
    stats = {"data.mean": list(CIFAR10DataModule.mean), "data.std": list(CIFAR10DataModule.std)}
    data = {"data": FOLDER, "data.data_dir": args.data_dir, **stats}
    if not args.data_dir:
        scale = load_scale(args.scale, ROOT / "configs" / "experiments" / "scales")
        source = DataSource(args.data_source, scale, ROOT / "data", ROOT.parent / "shared" / "data")
        data = source.arguments(yaml.safe_load(args.config.read_text()))[0]
        data.update({"data.train_size": args.synthetic_size} if args.data_source == "synthetic" else {})
    ratios = {k: (x, y) for k, (x, y) in RATIOS.items() if {x, y} <= paths}
    profile = {key: args.profile / f"{key}.txt" if args.profile and key != "a" else None for key in RUNS}
    rounds = []
    for _ in range(args.rounds):
        result, built = {}, {}
        for key in [k for k in RUNS if k in paths]:
            mode = args.compile if key in "gh" else None
            if key in "ch":  # the plain loop on the Lightning run's loader: (c) on (b)'s, (h) on (g)'s
                result[key] = run_plain(
                    args, options(data), built["b" if key == "c" else "g"], profile[key], mode
                )
            else:
                result[key], built[key] = run_lightning(
                    args, options(data), key != "a", profile[key], mode or "false"
                )
        for k, (x, y) in ratios.items():
            metric = "cpu_s_per_1000" if k.startswith("cpu") else "images_per_s"
            result[k] = result[x][metric] / result[y][metric]
        rounds.append(result)
    cpu = f"CPU, {torch.get_num_threads()} threads"
    device = torch.cuda.get_device_name() if args.device == "cuda" else cpu
    first = rounds[0]
    precision = next(first[k]["precision"] for k in "bag" if k in first)
    setup = f"{args.config.name}, {args.data_dir or args.data_source} data, {device}, precision {precision}"
    print(f"\n{setup}, augment {args.augment}, {args.epochs} epochs per run (the first untimed)\n")
    rows = [["path", "round", "images/s", "CPU s/1k img", "epochs (s)"]]
    for n, result in enumerate(rounds, 1):
        timed = [(RUNS[k], result[k]) for k in RUNS if k in result]
        rows += [
            [name, n, f"{r['images_per_s']:.0f}", f"{r['cpu_s_per_1000']:.2f}", r["epoch_s"]]
            for name, r in timed
        ]
    print(markdown_table(rows))
    for n, result in enumerate(rounds, 1):
        print(f"round {n}: " + "  ".join(f"{k} {result[k]:.2f}" for k in ratios))
    medians = {k: statistics.median(r[k] for r in rounds) for k in ratios}
    print("medians: " + "  ".join(f"{k} {v:.2f}" for k, v in medians.items()))
    # A graph torch.compile could not capture runs eagerly; it says why with TORCH_LOGS=perf_hints.
    skips = counters["inductor"]["cudagraph_skips"]
    if paths & {"g", "h"}:
        print(f"CUDA graphs that torch.compile skipped (0 on a GPU when every graph is captured): {skips}")
    if args.profile:
        print(f"\nPer training step, one more epoch under torch's profiler (tables in {args.profile}/):\n")
        rows = [["path", "wall ms", "CPU in ops ms", "GPU kernels ms", "launches"]]
        metrics = ("wall_ms", "cpu_op_ms", "gpu_kernel_ms", "launches")
        rows += [[RUNS[k], *(first[k]["profile"][m] for m in metrics)] for k in "bcgh" if k in first]
        print(markdown_table(rows))
    if args.json:
        setup = {**{k: str(v) for k, v in vars(args).items()}, "device_name": device}
        record = {"setup": setup, "rounds": rounds, "medians": medians, "cudagraph_skips": skips}
        args.json.write_text(json.dumps(record, indent=2))


if __name__ == "__main__":
    main()
