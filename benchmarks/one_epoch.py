"""Every config, trained for one real epoch on offline data through the CLI, then tested.

The data each config names is swapped for what this machine has (../shared/data): CIFAR-10 configs
read the CIFAR-10 JPEG copy, MNIST configs the MNIST test split (first 8,000 images to train, last
2,000 to test), EuroSAT configs synthetic EuroSAT-shaped images in the real archive's layout; the
digits need nothing. Pretrained weights cannot be downloaded here, so they start from random ones.
It prints, per config, the data used, the seconds of the run and its test accuracy after one epoch:
a check that every recipe runs end to end, not a reproduction of the reports' numbers. With
``--synthetic N`` every config trains instead on N synthetic images of the shape and class count its own
datamodule declares (no data needed; what the test suite does for one batch, here for a whole epoch on
whatever accelerator is present).

    python benchmarks/one_epoch.py                     # every config
    python benchmarks/one_epoch.py configs/vgga_cifar.yaml --limit-train-batches 20
    python benchmarks/one_epoch.py --synthetic 5000    # every config, synthetic data of its shape
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import yaml
from offline_data import (
    CIFAR10_MEAN,
    CIFAR10_STD,
    MNIST_MEAN,
    MNIST_STD,
    OFFLINE,
    ROOT,
    cifar10_jpeg,
    mnist_test_split_folder,
    synthetic_eurosat,
)

from litvision.cli import LitvisionCLI

FOLDER = "--data=litvision.data.ImageFolderDataModule"


def random_weights_args(config: Path) -> list[str]:
    """Random weights where the config asks for pretrained ones, which cannot be downloaded here."""
    if yaml.safe_load(config.read_text())["model"]["backbone"].get("init_args", {}).get("pretrained"):
        return ["--model.backbone.init_args.pretrained=false"]
    return []


def synthetic_data_args(config: Path, size: int) -> tuple[str, list[str]]:
    """``size`` synthetic training images of the shape and class count of the config's datamodule."""
    args = random_weights_args(config)
    declared = LitvisionCLI(
        args=[f"--config={config}", *args, "--trainer.logger=false"], run=False
    ).datamodule
    shape = list(declared.input_shape)
    return f"synthetic {'x'.join(map(str, shape))}", [
        *args, "--data=litvision.data.SyntheticDataModule", f"--data.input_shape={shape}",
        f"--data.num_classes={declared.num_classes}", f"--data.train_size={size}",
        f"--data.test_size={max(size // 20, 20)}", "--data.val_size=0.05",
    ]  # fmt: skip


def offline_data_args(config: Path, eurosat_per_class: int) -> tuple[str, list[str]]:
    spec = yaml.safe_load(config.read_text())
    data = spec["data"]["class_path"].rsplit(".", 1)[-1]
    args = random_weights_args(config)
    if data == "CIFAR10DataModule":
        return "CIFAR-10 (JPEG copy)", [
            *args, FOLDER, f"--data.data_dir={cifar10_jpeg()}",
            f"--data.mean={list(CIFAR10_MEAN)}", f"--data.std={list(CIFAR10_STD)}",
        ]  # fmt: skip
    if data == "MNISTDataModule":
        return "MNIST test split 8k/2k", [
            *args, FOLDER, f"--data.data_dir={mnist_test_split_folder()}", "--data.grayscale=true",
            "--data.augment=false", "--data.val_size=800",
            f"--data.mean={list(MNIST_MEAN)}", f"--data.std={list(MNIST_STD)}",
        ]  # fmt: skip
    if data == "EuroSATDataModule":
        root = synthetic_eurosat(eurosat_per_class)
        return f"synthetic EuroSAT {10 * eurosat_per_class}", [
            *args,
            f"--data.data_dir={root}",
            "--data.download=false",
        ]
    return data, args


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("configs", nargs="*", type=Path, help="default: every config in configs/")
    parser.add_argument("--limit-train-batches", type=float, default=1.0, help="1.0: the whole epoch")
    parser.add_argument("--num-workers", type=int, default=2)
    parser.add_argument(
        "--eurosat-per-class", type=int, default=60, help="synthetic EuroSAT images per class"
    )
    parser.add_argument(
        "--synthetic", type=int, metavar="N", help="train on N synthetic images of each config's shape"
    )
    parser.add_argument("--batch-size", type=int, help="default: each config's")
    parser.add_argument("--log-dir", type=Path, default=OFFLINE / "one_epoch_logs")
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args()
    rows = []
    for config in args.configs or sorted((ROOT / "configs").glob("*.yaml")):
        start, data = time.perf_counter(), "?"
        try:
            if args.synthetic:
                data, data_args = synthetic_data_args(config, args.synthetic)
            else:
                data, data_args = offline_data_args(config, args.eurosat_per_class)
            if args.batch_size:
                data_args.append(f"--data.batch_size={args.batch_size}")
            cli = LitvisionCLI(
                args=[
                    "fit",
                    f"--config={config}",
                    *data_args,
                    f"--data.num_workers={args.num_workers}",
                    "--trainer.max_epochs=1",
                    f"--trainer.limit_train_batches={args.limit_train_batches}",
                    f"--trainer.logger.save_dir={args.log_dir}",
                    "--trainer.enable_progress_bar=false",
                ]  # fmt: skip
            )
            metrics = cli.trainer.callback_metrics
            result = {"test_acc": float(metrics["test/acc"]), "train_images": len(cli.datamodule.train_set)}
        # Report every config, even after one fails (the CLI exits on a bad argument).
        except (Exception, SystemExit) as err:
            result = {"error": f"{type(err).__name__}: {err}"}
        rows.append({"config": config.stem, "data": data, "seconds": time.perf_counter() - start, **result})
        print(json.dumps(rows[-1]), flush=True)
        if args.json:  # after each config, so that a run cut short still leaves its rows
            args.json.write_text(json.dumps(rows, indent=2) + "\n")
    print(f"\n{'config':34} {'data':24} {'train imgs':>10} {'seconds':>8} {'test acc':>9}")
    for r in rows:
        outcome = f"{100 * r['test_acc']:8.2f}%" if "test_acc" in r else "FAILED " + r["error"]
        print(
            f"{r['config']:34} {r['data']:24} {r.get('train_images', ''):>10} {r['seconds']:8.0f} {outcome}"
        )


if __name__ == "__main__":
    main()
