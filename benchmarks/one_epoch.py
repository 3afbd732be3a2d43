"""Every config, trained for one real epoch through the CLI on the data of a reproduction's data source
(``litvision reproduce``'s ``--data-source``, default the offline copies in ../shared/data), then
tested. ImageNet weights that cannot be had start from random ones. It prints, per config, the data,
the seconds of the run and its test accuracy: a check that every recipe runs end to end, not a result.

    python benchmarks/one_epoch.py                     # every config
    python benchmarks/one_epoch.py configs/vgga_cifar.yaml --limit-train-batches 20
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import yaml

from litvision.cli import LitvisionCLI
from litvision.reproduce.data_sources import SOURCES, DataSource
from litvision.reproduce.plan import load_scale

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("configs", nargs="*", type=Path, help="default: every config in configs/")
    parser.add_argument("--data-source", choices=SOURCES, default="offline", help="as litvision reproduce")
    parser.add_argument("--scale", default="full", help="as litvision reproduce: full, quick or smoke")
    parser.add_argument("--limit-train-batches", type=float, default=1.0, help="1.0: the whole epoch")
    parser.add_argument("--num-workers", type=int, default=2)
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args()
    scale = load_scale(args.scale, ROOT / "configs" / "experiments" / "scales")
    source = DataSource(args.data_source, scale, ROOT / "data", ROOT.parent / "shared" / "data")
    rows = []
    for config in args.configs or sorted((ROOT / "configs").glob("*.yaml")):
        data_args, dataset = source.run_args(yaml.safe_load(config.read_text()))
        row = {"config": config.stem, "data": source.describe(dataset) if dataset else "its own"}
        start = time.perf_counter()
        try:
            cli = LitvisionCLI(args=[
                "fit", f"--config={config}", *data_args, f"--data.num_workers={args.num_workers}",
                "--trainer.max_epochs=1", f"--trainer.limit_train_batches={args.limit_train_batches}",
                f"--trainer.logger.save_dir={ROOT / 'lightning_logs' / 'one_epoch'}",
                "--trainer.enable_progress_bar=false",
            ])  # fmt: skip
            row.update(test_acc=float(cli.trainer.callback_metrics["test/acc"]),
                       train_images=len(cli.datamodule.train_set))  # fmt: skip
        except Exception as err:  # report every config, even after one fails
            row["error"] = f"{type(err).__name__}: {err}"
        rows.append({**row, "seconds": round(time.perf_counter() - start, 1)})
        print(json.dumps(rows[-1]), flush=True)
    print("\n| config | data | training images | seconds | test accuracy |\n| --- | --- | --- | --- | --- |")
    for r in rows:
        outcome = f"{100 * r['test_acc']:.2f}%" if "test_acc" in r else "FAILED: " + r["error"]
        images = r.get("train_images", "")
        print(f"| `{r['config']}` | {r['data']} | {images} | {r['seconds']:.0f} | {outcome} |")
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2) + "\n")


if __name__ == "__main__":
    main()
