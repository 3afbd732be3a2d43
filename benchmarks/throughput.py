"""Training throughput of one config, in one process, with the same network, initial weights, optimizer,
precision and memory format: (a) Lightning with the torchvision/PIL DataLoader, (b) Lightning in memory,
(c) the plain loop (``litvision/plain.py``) over (b)'s loader; (g), (h): (b), (c) compiled in
``--compile``'s mode (default ``reduce-overhead``: CUDA graphs). Images/s of the epochs after the first
(start-up, compilation), CPU time per image (loader workers included) and the ratios, medians over
``--rounds``. ``--profile DIR``: one more epoch of each under torch's profiler. Commands and figures:
docs/performance.md ("Measured (CPU)", "On a GPU"); no data: ``--data-source synthetic --scale smoke``."""

from __future__ import annotations

import argparse
import contextlib
import os
import shlex
import statistics
import tempfile
import time
import warnings
from pathlib import Path

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
from litvision.utils import markdown_table, write_json, write_text

ROOT = Path(__file__).resolve().parents[1]
SEED = 42
RUNS = {"a": "(a) Lightning, DataLoader", "b": "(b) Lightning, in memory", "c": "(c) plain loop, in memory"}
RUNS.update(g="(g) Lightning, compiled", h="(h) plain loop, compiled")
RATIOS = {"b/a": ("b", "a"), "b/c": ("b", "c"), "g/b": ("g", "b"), "g/h": ("g", "h"), "cpu a/b": ("a", "b")}
FIXED = "--trainer.devices=1 --trainer.enable_checkpointing=false --trainer.enable_progress_bar=false"
FIXED += f" --test_after_fit=false --seed_everything={SEED} --data.val_size=0"
LAUNCHES = ("cudaLaunchKernel", "cudaLaunchKernelExC", "cudaGraphLaunch")  # of kernels and CUDA graphs


def cpu_seconds() -> float:
    """CPU time of this process and its live children (the loader workers, read from /proc on Linux)."""
    total = sum(os.times()[:2])  # user and system
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError):  # the process ended meanwhile
            fields = stat.read_text().rsplit(")", 1)[1].split()
            if int(fields[1]) == os.getpid():  # [1]: the parent's id; [11], [12]: user and system ticks
                total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return total


class Timer(Callback):
    """Wall time, CPU time and images of each epoch of path ``key`` (the GPU drained at both ends); with
    ``--profile``, one more epoch under torch's profiler, its operator table written there."""

    def __init__(self, args: argparse.Namespace, key: str) -> None:
        self.profile = args.profile / f"{key}.txt" if args.profile and key != "a" else None
        self.device, self.timed, self.times, self.profiled = torch.device(args.device), args.epochs, [], {}
        self.epochs = args.epochs + bool(self.profile)  # the last one profiled

    def on_train_epoch_start(self, trainer, pl_module) -> None:
        self.start(trainer.current_epoch)

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        self.images += batch[0].shape[0]  # a shape: no read from the device
        self.steps += 1

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        self.stop(self.images, self.steps)

    def start(self, epoch: int) -> None:
        self.images = self.steps = 0
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        self.t0, self.cpu0, self.profiler = time.perf_counter(), cpu_seconds(), None
        if self.profile and epoch >= self.timed:
            cuda = [torch.profiler.ProfilerActivity.CUDA] if self.device.type == "cuda" else []
            self.profiler = torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU, *cuda])
            self.profiler.start()

    def stop(self, images: int, steps: int) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        if self.profiler is None:
            self.times.append((time.perf_counter() - self.t0, cpu_seconds() - self.cpu0, images))
            return
        self.profiler.stop()
        wall, events = time.perf_counter() - self.t0, self.profiler.key_averages()
        write_text(self.profile, events.table(sort_by="self_cpu_time_total", row_limit=40))
        # CPU: torch's operators and CUDA runtime calls (the rest of the wall time is Python and waiting);
        # GPU: the kernels, not annotations' spans (Lightning's Optimizer.step covers forward and backward).
        cpu = sum(e.self_cpu_time_total for e in events if e.key.startswith(("aten::", "cuda")))  # us
        on_gpu = [e for e in events if e.device_type == torch.autograd.DeviceType.CUDA]
        gpu = sum(e.self_device_time_total for e in on_gpu if not e.is_user_annotation)
        launches, per = sum(e.count for e in events if e.key in LAUNCHES), max(steps, 1)
        ms = {"wall_ms": 1000 * wall, "cpu_op_ms": cpu / 1000, "gpu_kernel_ms": gpu / 1000}
        self.profiled = {"steps": steps, **{k: round(v / per, 3) for k, v in ms.items()}}
        self.profiled["launches"] = round(launches / per, 1)

    def result(self) -> dict:
        wall, cpu, images = map(sum, zip(*(self.times[1:] or self.times)))  # the first epoch untimed
        result = {"images_per_s": images / wall, "cpu_s_per_1000": 1000 * cpu / images}
        result["epoch_s"] = [round(s, 2) for s, *_ in self.times]
        return {**result, "profile": self.profiled} if self.profile else result


def cli_args(args: argparse.Namespace, data: list[str], key: str, log_dir: str) -> list[str]:
    """The command line of path ``key``'s Lightning run (of (c)'s, (h)'s network), as a user would type it."""
    given = {
        "trainer.accelerator": "gpu" if args.device == "cuda" else "cpu",
        "trainer.logger.save_dir": log_dir,
        "data.in_memory": key != "a",
        "data.augment": args.augment,
        "data.num_workers": args.num_workers,
        "model.compile": args.compile if key == "g" else "false",
        "data.batch_size": args.batch_size,
        "trainer.precision": args.precision,
        "trainer.limit_train_batches": args.limit_batches or None,
        "model.channels_last": args.channels_last,
    }
    given = {k: v for k, v in given.items() if v is not None}
    return [f"--config={args.config}", *data, *shlex.split(FIXED), *options(given)]


def run(args: argparse.Namespace, data: list[str], key: str, built: dict[str, LitvisionCLI]) -> dict:
    """Path ``key``: a Lightning run, kept in ``built``; or the plain loop, (c) on (b)'s own training loader,
    (h) on (g)'s, from the same initial weights, (h)'s network compiled as (g)'s (static shapes)."""
    timer, device = Timer(args, key), torch.device(args.device)
    with tempfile.TemporaryDirectory() as log_dir:
        if key not in "ch":
            fit = ["fit", *cli_args(args, data, key, log_dir), f"--trainer.max_epochs={timer.epochs}"]
            built[key] = LitvisionCLI(args=fit, trainer_defaults={"callbacks": [timer]})
            return {**timer.result(), "precision": str(built[key].trainer.precision)}
        seed_everything(SEED)
        model = LitvisionCLI(args=cli_args(args, data, key, log_dir), run=False).model
    memory = built["b" if key == "c" else "g"]
    net, channels_last = model.net.to(device), memory.model.uses_channels_last
    net = net.to(memory_format=torch.channels_last) if channels_last else net
    optimizer = model.optimizer_factory(net.parameters())
    net = torch.compile(net, mode=args.compile, dynamic=False) if key == "h" else net
    loader, batches = memory.datamodule.train_dataloader(), memory.trainer.num_training_batches
    bf16, smoothing = str(memory.trainer.precision).startswith("bf16"), model.label_smoothing
    for epoch in range(timer.epochs):
        timer.start(epoch)
        seen = train_one_epoch(net, loader, optimizer, device, epoch, batches, bf16, smoothing, channels_last)
        timer.stop(seen, batches)
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
    parser.add_argument("--profile", type=Path, help="profile one more epoch of all but (a), tables here")
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args()
    paths = set(args.paths)
    if not paths or paths - set(RUNS) or any(x in paths and y not in paths for x, y in ("cb", "hg")):
        parser.error(f"--paths {args.paths!r}: give some of a, b, c, g, h; c runs on b's loader, h on g's")
    stats = {"data.mean": list(CIFAR10DataModule.mean), "data.std": list(CIFAR10DataModule.std)}
    data = {"data": FOLDER, "data.data_dir": args.data_dir, **stats}
    if not args.data_dir:
        scale = load_scale(args.scale, ROOT / "configs" / "experiments" / "scales")
        source = DataSource(args.data_source, scale, ROOT / "data", ROOT.parent / "shared" / "data")
        data = source.arguments(yaml.safe_load(args.config.read_text()))[0]
        data.update({"data.train_size": args.synthetic_size} if args.data_source == "synthetic" else {})
    ratios = {k: (x, y) for k, (x, y) in RATIOS.items() if {x, y} <= paths}
    rounds = []
    for _ in range(args.rounds):
        result, built = {}, {}
        for key in [k for k in RUNS if k in paths]:
            result[key] = run(args, options(data), key, built)
        for k, (x, y) in ratios.items():
            metric = "cpu_s_per_1000" if k.startswith("cpu") else "images_per_s"
            result[k] = result[x][metric] / result[y][metric]
        rounds.append(result)
    cpu = f"CPU, {torch.get_num_threads()} threads"
    device = torch.cuda.get_device_name() if args.device == "cuda" else cpu
    precision = next(rounds[0][k]["precision"] for k in "bag" if k in rounds[0])
    setup = f"{args.config.name}, {args.data_dir or args.data_source} data, {device}, precision {precision}"
    print(f"\n{setup}, augment {args.augment}, {args.epochs} epochs per run (the first untimed)\n")
    rows = [["path", "round", "images/s", "CPU s/1k img", "epochs (s)"]]
    for n, result in enumerate(rounds, 1):
        for k, r in [(k, result[k]) for k in RUNS if k in result]:
            rows.append([RUNS[k], n, f"{r['images_per_s']:.0f}", f"{r['cpu_s_per_1000']:.2f}", r["epoch_s"]])
    print(markdown_table(rows))
    medians = {k: statistics.median(r[k] for r in rounds) for k in ratios}
    for name, values in [*((f"round {n}", r) for n, r in enumerate(rounds, 1)), ("medians", medians)]:
        print(f"{name}: " + "  ".join(f"{k} {values[k]:.2f}" for k in ratios))
    # A graph torch.compile could not capture runs eagerly; it says why with TORCH_LOGS=perf_hints.
    skips = counters["inductor"]["cudagraph_skips"]
    if paths & {"g", "h"}:
        print(f"CUDA graphs that torch.compile skipped (0 on a GPU when every graph is captured): {skips}")
    if args.profile:
        print(f"\nPer training step, one more epoch under torch's profiler (tables in {args.profile}/):\n")
        rows = [["path", "wall ms", "CPU in ops ms", "GPU kernels ms", "launches"]]
        metrics = ("wall_ms", "cpu_op_ms", "gpu_kernel_ms", "launches")
        rows += [[RUNS[k], *(rounds[0][k]["profile"][m] for m in metrics)] for k in "bcgh" if k in rounds[0]]
        print(markdown_table(rows))
    if args.json:
        opts = {**{k: str(v) for k, v in vars(args).items()}, "device_name": device}
        write_json(args.json, {"setup": opts, "rounds": rounds, "medians": medians, "cudagraph_skips": skips})


if __name__ == "__main__":
    main()
