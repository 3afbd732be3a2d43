"""Every config trained for one real epoch through the CLI, then tested, on a reproduction's data source
(``--data-source``, as ``litvision reproduce``'s; default the offline copies in ../shared/data), or on N
synthetic images of its datamodule's shape and classes (``--synthetic N``); ImageNet weights that cannot
be had start random. Per config: the data, the seconds and the test accuracy (a check, not a result).

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
from litvision.reproduce.data_sources import SOURCES, DataSource, weights_cached
from litvision.reproduce.plan import format_value, load_scale, lookup

ROOT = Path(__file__).resolve().parents[1]


def synthetic_args(config: Path, spec: dict, size: int) -> tuple[list[str], str]:
    pretrained = lookup(spec, "model.backbone.init_args.pretrained")[1] and not weights_cached(spec)
    random = ["--model.backbone.init_args.pretrained=false"] if pretrained else []
    dm = LitvisionCLI(args=[f"--config={config}", *random, "--trainer.logger=false"], run=False).datamodule
    shape = list(dm.input_shape)
    return [*random, "--data=litvision.data.SyntheticDataModule", f"--data.input_shape={shape}",
            f"--data.num_classes={dm.num_classes}", f"--data.train_size={size}", "--data.val_size=0.05",
            f"--data.test_size={max(size // 20, 20)}"], f"synthetic {'x'.join(map(str, shape))}"  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("configs", nargs="*", type=Path, help="default: every config in configs/")
    parser.add_argument("--data-source", choices=SOURCES, default="offline", help="as litvision reproduce")
    parser.add_argument("--scale", default="full", help="as litvision reproduce: full, quick or smoke")
    parser.add_argument("--synthetic", type=int, metavar="N", help="N synthetic images of its shape")
    parser.add_argument("--limit-train-batches", type=float, default=1.0, help="1.0: the whole epoch")
    parser.add_argument("--batch-size", type=int, help="default: each config's")
    parser.add_argument("--num-workers", type=int, default=2)
    parser.add_argument("--log-dir", type=Path, default=ROOT / "lightning_logs" / "one_epoch")
    parser.add_argument("--json", type=Path, help="also write the results here (after each config)")
    args = parser.parse_args()
    if not args.synthetic:
        scale = load_scale(args.scale, ROOT / "configs" / "experiments" / "scales")
        source = DataSource(args.data_source, scale, ROOT / "data", ROOT.parent / "shared" / "data")
    rows = []
    for config in args.configs or sorted((ROOT / "configs").glob("*.yaml")):
        row, start = {"config": config.stem, "data": "?"}, time.perf_counter()
        try:
            spec = yaml.safe_load(config.read_text())
            if args.synthetic:
                data_args, row["data"] = synthetic_args(config, spec, args.synthetic)
            else:
                data, dataset = source.arguments(spec)
                data_args = [f"--{key}={format_value(value)}" for key, value in data.items()]
                row["data"] = source.describe(dataset) if dataset else "its own"
            data_args += [f"--data.batch_size={args.batch_size}"] if args.batch_size else []
            cli = LitvisionCLI(args=[
                "fit", f"--config={config}", *data_args, f"--data.num_workers={args.num_workers}",
                "--trainer.max_epochs=1", f"--trainer.limit_train_batches={args.limit_train_batches}",
                f"--trainer.logger.save_dir={args.log_dir}", "--trainer.enable_progress_bar=false",
            ])  # fmt: skip
            row.update(test_acc=float(cli.trainer.callback_metrics["test/acc"]),
                       train_images=len(cli.datamodule.train_set))  # fmt: skip
        except (Exception, SystemExit) as err:  # report every config, even after one fails (or exits)
            row["error"] = f"{type(err).__name__}: {err}"
        rows.append({**row, "seconds": round(time.perf_counter() - start, 1)})
        print(json.dumps(rows[-1]), flush=True)
        if args.json:  # after each config, so that a run cut short still leaves its rows
            args.json.write_text(json.dumps(rows, indent=2) + "\n")
    print("\n| config | data | training images | seconds | test accuracy |\n| --- | --- | --- | --- | --- |")
    for r in rows:
        outcome = f"{100 * r['test_acc']:.2f}%" if "test_acc" in r else "FAILED: " + r["error"]
        images = r.get("train_images", "")
        print(f"| `{r['config']}` | {r['data']} | {images} | {r['seconds']:.0f} | {outcome} |")


if __name__ == "__main__":
    main()
