"""Training throughput of one config three ways, in this one process, with the same network, initial
weights, optimizer, precision and memory format: (a) Lightning with the torchvision/PIL DataLoader
(``in_memory: false``), (b) Lightning in memory (``in_memory: true``), (c) the plain PyTorch loop
(``reproduce/plain.py``) over (b)'s training loader; (g) and (h): (b) and (c) with the network compiled
in ``--compile``'s mode (default ``reduce-overhead``: the step replayed as CUDA graphs). It prints images/s
(epochs after the first, which pay for start-up and compilation), CPU time per image (loader workers
included) and the ratios b/a, b/c, g/b and g/h; medians over ``--rounds`` hold on a shared machine.
``--profile DIR``: one more epoch of each path under torch's profiler, per step: wall time, CPU in torch's
operators and CUDA calls, GPU kernel time, kernel and graph launches (tables in DIR).

    python benchmarks/throughput.py                                   # simple CNN, CPU, offline CIFAR-10
    python benchmarks/throughput.py --data-source synthetic --scale smoke     # anywhere, no data needed
    python benchmarks/throughput.py --config configs/resnet18_cifar_fast.yaml --device cuda --epochs 3
    python benchmarks/throughput.py --config configs/resnet18_cifar.yaml --device cuda --paths bcgh  # graphs
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
from torch._dynamo.utils import counters

from litvision.cli import LitvisionCLI
from litvision.data import CIFAR10DataModule
from litvision.reproduce.data_sources import FOLDER, SOURCES, DataSource
from litvision.reproduce.plain import train_one_epoch
from litvision.reproduce.plan import format_value, load_scale

ROOT = Path(__file__).resolve().parents[1]
SEED = 42
RUNS = {"a": "(a) Lightning, DataLoader", "b": "(b) Lightning, in memory", "c": "(c) plain loop, in memory",
        "g": "(g) Lightning, compiled", "h": "(h) plain loop, compiled"}  # fmt: skip


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


class StepProfile:
    """torch's profiler over one epoch: per step, wall time and CPU time in operators (ms), GPU kernel
    time (ms) and kernel launches; the operator table by self CPU time written to ``path``."""

    def __init__(self, device: torch.device, path: Path) -> None:
        self.device, self.path = device, path
        activities = [torch.profiler.ProfilerActivity.CPU]
        if device.type == "cuda":
            activities.append(torch.profiler.ProfilerActivity.CUDA)
        self.profiler = torch.profiler.profile(activities=activities)

    def start(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        self.t0 = time.perf_counter()
        self.profiler.start()

    def stop(self, steps: int) -> dict:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        self.profiler.stop()
        wall = time.perf_counter() - self.t0
        events = self.profiler.key_averages()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.path.write_text(events.table(sort_by="self_cpu_time_total", row_limit=40))
        # CPU: torch's operators and the CUDA runtime calls (the rest of the wall time is Python and
        # waiting); GPU: the kernels themselves (operators also carry their kernels' time: not summed).
        cpu_us = sum(e.self_cpu_time_total for e in events if e.key.startswith(("aten::", "cuda")))
        # As torch's own table totals them: kernels, not the GPU spans of annotations such as
        # Optimizer.step, which under Lightning's closure covers the forward and backward passes.
        gpu = torch.autograd.DeviceType.CUDA
        kernels = [e for e in events if e.device_type == gpu and not e.is_user_annotation]
        gpu_us = sum(e.self_device_time_total for e in kernels)
        launches = sum(
            e.count for e in events if e.key in ("cudaLaunchKernel", "cudaLaunchKernelExC", "cudaGraphLaunch")
        )
        per = max(steps, 1)
        return {"steps": steps, "wall_ms": round(1000 * wall / per, 3),
                "cpu_op_ms": round(cpu_us / 1000 / per, 3), "gpu_kernel_ms": round(gpu_us / 1000 / per, 3),
                "launches": round(launches / per, 1)}  # fmt: skip


class EpochTimer(Callback):
    """Times the epochs before ``timed``; profiles the one after them, if given a :class:`StepProfile`."""

    def __init__(self, timer: Timer, timed: int, profile: StepProfile | None = None) -> None:
        self.timer, self.timed, self.profile, self.images, self.steps = timer, timed, profile, 0, 0
        self.profiled: dict = {}

    def on_train_epoch_start(self, trainer, pl_module) -> None:
        self.images = self.steps = 0
        if trainer.current_epoch < self.timed:
            self.timer.start()
        elif self.profile:
            self.profile.start()

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        self.images += batch[0].shape[0]  # a shape: no read from the device
        self.steps += 1

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        if trainer.current_epoch < self.timed:
            self.timer.stop(self.images)
        elif self.profile:
            self.profiled = self.profile.stop(self.steps)


def cli_args(
    args: argparse.Namespace, data_args: list[str], in_memory: bool, log_dir: str, epochs: int, mode: str
) -> list[str]:
    """The command line of one Lightning run, as a user would type it."""
    options = [
        f"--config={args.config}", *data_args, f"--trainer.max_epochs={epochs}",
        f"--trainer.accelerator={'gpu' if args.device == 'cuda' else 'cpu'}", "--trainer.devices=1",
        f"--trainer.logger.save_dir={log_dir}", "--trainer.enable_checkpointing=false",
        "--trainer.enable_progress_bar=false", "--test_after_fit=false", f"--seed_everything={SEED}",
        f"--data.in_memory={str(in_memory).lower()}", "--data.val_size=0",
        f"--data.augment={str(args.augment).lower()}", f"--data.num_workers={args.num_workers}",
        f"--model.compile={mode}",
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
    args: argparse.Namespace, data_args: list[str], in_memory: bool, profile: Path | None, mode: str = "false"
) -> tuple[dict, LitvisionCLI]:
    device = torch.device(args.device)
    timer = Timer(device)
    epoch_timer = EpochTimer(timer, args.epochs, profile and StepProfile(device, profile))
    with tempfile.TemporaryDirectory() as log_dir:
        options = ["fit", *cli_args(args, data_args, in_memory, log_dir, args.epochs + bool(profile), mode)]
        cli = LitvisionCLI(args=options, trainer_defaults={"callbacks": [epoch_timer]})
    result = {**timer.result(), "precision": str(cli.trainer.precision)}
    return ({**result, "profile": epoch_timer.profiled} if profile else result), cli


def run_plain(
    args: argparse.Namespace, data_args: list[str], memory: Any, profile: Path | None, mode: str | None = None
) -> dict:
    """The plain loop on the in-memory run's own training loader, from the same initial weights; its
    network compiled in ``mode``, if given, as the Lightning run's (static shapes)."""
    device = torch.device(args.device)
    with tempfile.TemporaryDirectory() as log_dir:
        seed_everything(SEED)
        built = LitvisionCLI(args=cli_args(args, data_args, True, log_dir, args.epochs, "false"), run=False)
    model = built.model
    net = model.net.to(device)
    channels_last = memory.model.uses_channels_last
    if channels_last:
        net = net.to(memory_format=torch.channels_last)
    optimizer = model.optimizer_factory(net.parameters())
    if mode:
        net = torch.compile(net, mode=mode, dynamic=False)
    loader = memory.datamodule.train_dataloader()
    batches = memory.trainer.num_training_batches
    bf16 = str(memory.trainer.precision).startswith("bf16")
    timer = Timer(device)
    for epoch in range(args.epochs):
        timer.start()
        images = train_one_epoch(net, loader, optimizer, device, epoch, batches, bf16, model.label_smoothing,
                                 channels_last)  # fmt: skip
        timer.stop(images)
    if not profile:
        return timer.result()
    step_profile = StepProfile(device, profile)
    step_profile.start()
    train_one_epoch(net, loader, optimizer, device, args.epochs, batches, bf16, model.label_smoothing,
                    channels_last)  # fmt: skip
    return {**timer.result(), "profile": step_profile.stop(batches)}


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
    # --data-dir: a CIFAR-10 image folder, e.g. the GPU check's JPEG copy or a subset (no ../shared there)
    stats = f"--data.mean={list(CIFAR10DataModule.mean)}", f"--data.std={list(CIFAR10DataModule.std)}"
    data_args = [f"--data={FOLDER}", f"--data.data_dir={args.data_dir}", *stats]
    if not args.data_dir:
        scale = load_scale(args.scale, ROOT / "configs" / "experiments" / "scales")
        source = DataSource(args.data_source, scale, ROOT / "data", ROOT.parent / "shared" / "data")
        data = source.arguments(yaml.safe_load(args.config.read_text()))[0]
        data_args = [f"--{key}={format_value(value)}" for key, value in data.items()]
        if args.data_source == "synthetic":
            data_args.append(f"--data.train_size={args.synthetic_size}")
    paths = set(args.paths)
    if not paths or paths - set(RUNS) or any(x in paths and y not in paths for x, y in ("cb", "hg")):
        parser.error(f"--paths {args.paths!r}: give some of a, b, c, g, h; c runs on b's loader, h on g's")
    ratios = {"b/a": ("b", "a", "images_per_s"), "b/c": ("b", "c", "images_per_s"),
              "g/b": ("g", "b", "images_per_s"), "g/h": ("g", "h", "images_per_s"),
              "cpu a/b": ("a", "b", "cpu_s_per_1000")}  # fmt: skip
    ratios = {k: v for k, v in ratios.items() if {v[0], v[1]} <= paths}
    profile = {key: args.profile / f"{key}.txt" if args.profile else None for key in "bcgh"}
    rounds = []
    for _ in range(args.rounds):
        result = {}
        if "a" in paths:
            result["a"], _ = run_lightning(args, data_args, in_memory=False)
        if "b" in paths:
            result["b"], memory = run_lightning(args, data_args, True, profile["b"])
        if "c" in paths:
            result["c"] = run_plain(args, data_args, memory, profile["c"])
        if "g" in paths:
            result["g"], compiled = run_lightning(args, data_args, True, profile["g"], args.compile)
        if "h" in paths:
            result["h"] = run_plain(args, data_args, compiled, profile["h"], args.compile)
        result.update({k: result[x][m] / result[y][m] for k, (x, y, m) in ratios.items()})
        rounds.append(result)
    device = (
        torch.cuda.get_device_name() if args.device == "cuda" else f"CPU, {torch.get_num_threads()} threads"
    )
    first = rounds[0]
    precision = next(first[k]["precision"] for k in "bag" if k in first)
    print(f"\n{args.config.name}, {args.data_dir or args.data_source} data, {device}, precision {precision}, "
          f"augment {args.augment}, {args.epochs} epochs per run (the first untimed)")  # fmt: skip
    print(f"{'':32} {'images/s':>10} {'CPU s/1k img':>12} {'epochs (s)':>24}")
    for number, result in enumerate(rounds, 1):
        for key, name in RUNS.items():
            if key in result:
                r = result[key]
                epochs = str(r["epoch_s"])
                print(f"{name:32} {r['images_per_s']:10.0f} {r['cpu_s_per_1000']:12.2f} {epochs:>24}")
        print(f"  round {number}: " + "  ".join(f"{k} {result[k]:.2f}" for k in ratios))
    medians = {k: statistics.median(r[k] for r in rounds) for k in ratios}
    print("medians: " + "  ".join(f"{k} {v:.2f}" for k, v in medians.items()))
    # A graph torch.compile could not capture runs eagerly; it says why with TORCH_LOGS=perf_hints.
    skips = counters["inductor"]["cudagraph_skips"]
    if paths & {"g", "h"}:
        print(f"CUDA graphs that torch.compile skipped (0 on a GPU when every graph is captured): {skips}")
    if args.profile:
        print(f"\nper training step, one more epoch under torch's profiler (tables in {args.profile}/):")
        print(f"{'':32} {'wall ms':>8} {'CPU in ops ms':>14} {'GPU kernels ms':>15} {'launches':>9}")
        for key in "bcgh":
            if key in first:
                p = first[key]["profile"]
                print(f"{RUNS[key]:32} {p['wall_ms']:8.2f} {p['cpu_op_ms']:14.2f} "
                      f"{p['gpu_kernel_ms']:15.2f} {p['launches']:9.1f}")  # fmt: skip
    if args.json:
        setup = {**{k: str(v) for k, v in vars(args).items()}, "device_name": device}
        record = {"setup": setup, "rounds": rounds, "medians": medians, "cudagraph_skips": skips}
        args.json.write_text(json.dumps(record, indent=2))


if __name__ == "__main__":
    main()
