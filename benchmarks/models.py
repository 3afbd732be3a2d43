"""Parameter count and training speed (forward, backward, SGD step; images/s) of every config's network,
built as its config builds it (its dataset's image shape, random weights) and timed on random batches by
the reproduction estimate's step timer (``estimate.time_step``); the ratio column is the speed relative
to the first config, which holds on a noisy machine. On a GPU, bf16 autocast too. Measured:
docs/measurements.md, "Every architecture"."""

from __future__ import annotations

import argparse
from pathlib import Path

import torch
import yaml

from litvision.cli import LitvisionCLI
from litvision.reproduce.estimate import time_step
from litvision.utils import lookup

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("configs", nargs="*", type=Path, help="default: every config in configs/")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--steps", type=int, default=3, help="timed steps after a warm-up (the fastest)")
    args = parser.parse_args()
    devices = [("cpu", False)] + ([("cuda", False), ("cuda", True)] if torch.cuda.is_available() else [])
    print(f"training images/s at batch {args.batch_size}, the fastest of {args.steps} steps, torch threads "
          f"{torch.get_num_threads()}")  # fmt: skip
    columns = "".join(f" {d + ' bf16' * b:>12} {'ratio':>6}" for d, b in devices)
    print(f"{'config':34} {'input':>9} {'params':>9}{columns}")
    baseline: dict[tuple[str, bool], float] = {}
    for config in args.configs or sorted((ROOT / "configs").glob("*.yaml")):
        pretrained = lookup(yaml.safe_load(config.read_text()), "model.backbone.init_args.pretrained")[1]
        random = ["--model.backbone.init_args.pretrained=false"] if pretrained else []  # no download
        cli = LitvisionCLI(args=[f"--config={config}", "--trainer.logger=false", *random], run=False)
        net, shape = cli.model.net, tuple(cli.datamodule.input_shape)
        params = sum(p.numel() for p in net.parameters()) / 1e6
        row = f"{config.stem:34} {'x'.join(map(str, shape)):>9} {params:8.2f}M"
        for device, bf16 in devices:
            speed = 1 / time_step(net, shape, args.batch_size, device, args.steps, bf16)
            row += f" {speed:12.0f} {speed / baseline.setdefault((device, bf16), speed):6.2f}"
        print(row, flush=True)


if __name__ == "__main__":
    main()
