"""Parameter count and training speed (forward + backward images/s) of every config's architecture.

Each network is built exactly as its config builds it (at its dataset's image shape, random weights)
and timed on random batches, in this one process; the last column is the speed relative to the first
config timed, so the ratios hold on a noisy machine. On a GPU it also times bf16 autocast.

    python benchmarks/models.py                      # every config, CPU (and GPU when present)
    python benchmarks/models.py --batch-size 64 --steps 3 configs/vgg16_cifar.yaml
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch
import torch.nn.functional as F
import yaml

from litvision.cli import LitvisionCLI

ROOT = Path(__file__).resolve().parents[1]


def build(config: Path) -> tuple[torch.nn.Module, tuple[int, int, int]]:
    args = [f"--config={config}", "--trainer.logger=false"]
    backbone = yaml.safe_load(config.read_text())["model"]["backbone"]
    if backbone.get("init_args", {}).get("pretrained"):
        args.append("--model.backbone.init_args.pretrained=false")
    cli = LitvisionCLI(args=args, run=False)
    return cli.model.net, tuple(cli.datamodule.input_shape)


def images_per_second(
    model: torch.nn.Module, shape, batch: int, steps: int, device: str, bf16: bool
) -> float:
    model = model.to(device).train()
    x = torch.randn(batch, *shape, device=device)
    y = torch.randint(0, 10, (batch,), device=device) % model.head.out_features
    optimizer = torch.optim.SGD(model.parameters(), lr=1e-3)

    def step() -> None:
        with torch.autocast(device_type=device, dtype=torch.bfloat16, enabled=bf16):
            loss = F.cross_entropy(model(x), y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    step()  # warm-up: allocations, cuDNN algorithm choice
    if device == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(steps):
        step()
    if device == "cuda":
        torch.cuda.synchronize()
    return batch * steps / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("configs", nargs="*", type=Path, help="default: every config in configs/")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--steps", type=int, default=3)
    args = parser.parse_args()
    configs = args.configs or sorted((ROOT / "configs").glob("*.yaml"))
    devices = [("cpu", False)] + ([("cuda", False), ("cuda", True)] if torch.cuda.is_available() else [])
    header = f"{'config':34} {'input':>9} {'params':>9}"
    for device, bf16 in devices:
        header += f" {device + (' bf16' if bf16 else ''):>12} {'ratio':>6}"
    print(f"forward+backward images/s at batch {args.batch_size}, {args.steps} steps, torch threads "
          f"{torch.get_num_threads()}")  # fmt: skip
    print(header)
    baseline: dict[tuple[str, bool], float] = {}
    for config in configs:
        model, shape = build(config)
        params = sum(p.numel() for p in model.parameters())
        row = f"{config.stem:34} {'x'.join(map(str, shape)):>9} {params / 1e6:8.2f}M"
        for device, bf16 in devices:
            speed = images_per_second(model, shape, args.batch_size, args.steps, device, bf16)
            baseline.setdefault((device, bf16), speed)
            row += f" {speed:12.0f} {speed / baseline[(device, bf16)]:6.2f}"
        print(row, flush=True)


if __name__ == "__main__":
    main()
