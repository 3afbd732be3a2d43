"""litvision against a hand-written PyTorch loop: report 000's simple CNN on the CIFAR-10 JPEG copy.

Both train the same model (same seed, same initial weights) with the same optimizer, batch size,
data and loader settings for the same number of epochs, one after the other in this process; then
both are tested on the 10,000 test images. It prints the images per second of each, their ratio,
and the two test accuracies. litvision runs exactly as a user would: ``configs/cnn_cifar.yaml``
through the CLI, with the data swapped for the image-folder datamodule.

    python benchmarks/cnn_cifar_vs_plain.py --epochs 5

The data comes from ``../shared/data/cifar10-jpeg.tar.xz`` (extracted once into ``.offline/``); the
script exits with a message when it is absent, as on a user's machine.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from lightning.pytorch import Callback, seed_everything
from offline_data import CIFAR10_MEAN, CIFAR10_STD, ROOT, cifar10_jpeg
from torch.utils.data import DataLoader

from litvision.cli import LitvisionCLI
from litvision.data import ImageFolderDataModule
from litvision.models import SimpleCNN

CONFIG = ROOT / "configs" / "cnn_cifar.yaml"
SEED = 42


class TrainTimer(Callback):
    """Wall time of the training loop alone (from its first batch to its end), like the plain loop's."""

    def on_train_start(self, trainer, pl_module) -> None:
        self.start = time.perf_counter()

    def on_train_end(self, trainer, pl_module) -> None:
        self.seconds = time.perf_counter() - self.start


def run_litvision(data_root: Path, epochs: int, batch_size: int, num_workers: int, log_dir: Path) -> dict:
    timer = TrainTimer()
    cli = LitvisionCLI(
        args=[
            "fit",
            f"--config={CONFIG}",
            "--data=litvision.data.ImageFolderDataModule",
            f"--data.data_dir={data_root}",
            f"--data.mean={list(CIFAR10_MEAN)}",
            f"--data.std={list(CIFAR10_STD)}",
            "--data.augment=false",
            "--data.val_size=0",
            "--data.in_memory=false",  # the DataLoader path; benchmarks/throughput.py times the in-memory one
            f"--data.batch_size={batch_size}",
            f"--data.num_workers={num_workers}",
            f"--trainer.max_epochs={epochs}",
            f"--trainer.logger.save_dir={log_dir}",
            "--trainer.enable_progress_bar=false",
            f"--seed_everything={SEED}",
        ],
        trainer_defaults={"callbacks": [timer]},
    )
    images = len(cli.datamodule.train_set) * epochs
    return {
        "images_per_s": images / timer.seconds,
        "train_s": timer.seconds,
        "test_acc": float(cli.trainer.callback_metrics["test/acc"]),
    }


def run_plain(data_root: Path, epochs: int, batch_size: int, num_workers: int) -> dict:
    """The loop a user would write by hand, on the same datasets and transforms."""
    seed_everything(SEED)
    data = ImageFolderDataModule(
        data_root,
        mean=CIFAR10_MEAN,
        std=CIFAR10_STD,
        augment=False,
        val_size=0,
        in_memory=False,
    )
    model = SimpleCNN(data.num_classes, data.input_shape, channels=(32, 64, 128), hidden=(256, 128))
    data.setup("fit")
    data.setup("test")
    loader_args = dict(batch_size=batch_size, num_workers=num_workers, persistent_workers=num_workers > 0)
    train = DataLoader(data.train_set, shuffle=True, **loader_args)
    test = DataLoader(data.test_set, **loader_args)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    start = time.perf_counter()
    for _ in range(epochs):
        model.train()
        for x, y in train:
            loss = F.cross_entropy(model(x), y)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
    seconds = time.perf_counter() - start
    model.eval()
    correct = 0
    with torch.inference_mode():
        for x, y in test:
            correct += (model(x).argmax(1) == y).sum().item()
    return {
        "images_per_s": len(data.train_set) * epochs / seconds,
        "train_s": seconds,
        "test_acc": correct / len(data.test_set),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--batch-size", type=int, default=1024)
    parser.add_argument("--num-workers", type=int, default=2)
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args()
    data_root = cifar10_jpeg()
    with tempfile.TemporaryDirectory() as log_dir:
        lit = run_litvision(data_root, args.epochs, args.batch_size, args.num_workers, Path(log_dir))
    plain = run_plain(data_root, args.epochs, args.batch_size, args.num_workers)
    results = {
        "setup": {
            **vars(args),
            "json": None,
            "torch_threads": torch.get_num_threads(),
            "data": "CIFAR-10 (JPEG copy)",
        },
        "litvision": lit,
        "plain_loop": plain,
        "speed_ratio": lit["images_per_s"] / plain["images_per_s"],
        "test_acc_diff_pp": 100 * (lit["test_acc"] - plain["test_acc"]),
    }
    print(f"\nSimpleCNN on CIFAR-10 (JPEG copy), {args.epochs} epochs, batch {args.batch_size}, Adam 1e-3")
    print(f"{'':12} {'images/s':>10} {'train s':>9} {'test acc':>9}")
    for name, r in (("litvision", lit), ("plain loop", plain)):
        print(f"{name:12} {r['images_per_s']:10.0f} {r['train_s']:9.1f} {100 * r['test_acc']:8.2f}%")
    print(f"speed ratio litvision / plain: {results['speed_ratio']:.3f} (target >= 0.8)")
    print(f"test accuracy difference: {results['test_acc_diff_pp']:+.2f} pp (target within 2)")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
