"""Report 002's imbalance study, offline and scaled down: the LSTM on MNIST with digits 0-4 kept at 10%,
trained unbalanced, augmented (noise copies), with IRM, and combined; per-class test accuracy side by side.

The runs are the configs ``configs/lstm_mnist_{unbalanced,augmented,irm,combined}.yaml`` through the CLI,
with the data swapped for the MNIST test split kept offline (first 8,000 images to train, of which 800
validate; last 2,000 to test) and a shorter schedule (``--epochs``, ``--batch-size``) for the smaller set.

    python benchmarks/imbalance_study.py --epochs 30
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from offline_data import MNIST_MEAN, MNIST_STD, OFFLINE, ROOT, mnist_test_split_folder

from litvision.cli import LitvisionCLI
from litvision.compare import markdown, table

VARIANTS = ("unbalanced", "augmented", "irm", "combined")
MINORITY = [str(d) for d in range(5)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--output", type=Path, default=OFFLINE / "imbalance_study", help="logs and tables")
    args = parser.parse_args()
    data_root = mnist_test_split_folder()
    results, seconds = [], []
    for variant in VARIANTS:
        start = time.perf_counter()
        cli = LitvisionCLI(
            args=[
                "fit",
                f"--config={ROOT / 'configs' / f'lstm_mnist_{variant}.yaml'}",
                "--data=litvision.data.ImageFolderDataModule",
                f"--data.data_dir={data_root}",
                "--data.grayscale=true",
                "--data.augment=false",
                "--data.val_size=800",
                "--data.num_workers=0",
                f"--data.mean={list(MNIST_MEAN)}",
                f"--data.std={list(MNIST_STD)}",
                f"--data.batch_size={args.batch_size}",
                f"--trainer.max_epochs={args.epochs}",
                f"--trainer.logger.save_dir={args.output}",
                "--trainer.enable_progress_bar=false",
            ]  # fmt: skip
        )
        seconds.append(time.perf_counter() - start)
        results.append(json.loads((Path(cli.trainer.log_dir) / "test_results.json").read_text()))
    rows = table(results, list(VARIANTS))
    minority = {
        v: sum(r["per_class"][c]["acc"] for c in MINORITY) / len(MINORITY) for v, r in zip(VARIANTS, results)
    }
    rows.append(["minority (0-4)", *(f"{100 * minority[v]:.2f}" for v in VARIANTS)])
    rows.append(["seconds", *(f"{s:.0f}" for s in seconds)])
    text = markdown(rows)
    print(
        f"\nLSTM, MNIST test split 8k/2k, digits 0-4 at 10%, {args.epochs} epochs, batch {args.batch_size}:"
    )
    print(text)
    for variant in ("augmented", "combined"):
        better = minority[variant] > minority["unbalanced"]
        print(f"minority accuracy, {variant} vs unbalanced: {100 * minority[variant]:.2f}% vs "
              f"{100 * minority['unbalanced']:.2f}% ({'higher' if better else 'NOT higher'})")  # fmt: skip
    (args.output / "table.md").write_text(text)


if __name__ == "__main__":
    main()
