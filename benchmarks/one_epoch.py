"""Every config trained for one real epoch through the CLI, then tested, on a reproduction's data source
(``--data-source``, default the offline copies in ../shared/data) or on N synthetic images of its
datamodule's shape and classes (``--synthetic N``). Per config: the data, the seconds and the test
accuracy (a check, not a result). Its uses: docs/measurements.md; the GPU check's ``configs`` step."""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import yaml

from litvision.cli import LitvisionCLI
from litvision.data.sources import SOURCES, DataSource, weights_cached
from litvision.parsing import options
from litvision.reproduce.plan import load_scale
from litvision.utils import lookup, markdown_table, write_json

ROOT = Path(__file__).resolve().parents[1]


def synthetic_args(config: Path, spec: dict, size: int) -> tuple[dict, str]:
    """``size`` synthetic images of the config's datamodule's shape and classes."""
    pretrained = lookup(spec, "model.backbone.init_args.pretrained")[1] and not weights_cached(spec)
    random = {"model.backbone.init_args.pretrained": False} if pretrained else {}
    args = [f"--config={config}", *options(random), "--trainer.logger=false"]
    dm = LitvisionCLI(args=args, run=False).datamodule
    data = {"data": "litvision.data.SyntheticDataModule", "data.input_shape": list(dm.input_shape)}
    data.update({"data.num_classes": dm.num_classes, "data.train_size": size, "data.val_size": 0.05})
    data.update({"data.test_size": max(size // 20, 20)})
    return {**random, **data}, f"synthetic {'x'.join(map(str, dm.input_shape))}"


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
    run = {"trainer.limit_train_batches": args.limit_train_batches, "trainer.enable_progress_bar": False}
    run |= {"data.num_workers": args.num_workers, "trainer.logger.save_dir": args.log_dir}
    run |= {"data.batch_size": args.batch_size} if args.batch_size else {}
    run |= {"trainer.max_epochs": 1}
    rows = []
    for config in args.configs or sorted((ROOT / "configs").glob("*.yaml")):
        row, start = {"config": config.stem, "data": "?"}, time.perf_counter()
        try:
            spec = yaml.safe_load(config.read_text())
            if args.synthetic:
                data, row["data"] = synthetic_args(config, spec, args.synthetic)
            else:
                data, dataset = source.arguments(spec)
                row["data"] = source.describe(dataset) if dataset else "its own"
            cli = LitvisionCLI(args=["fit", f"--config={config}", *options({**data, **run})])
            row["test_acc"] = float(cli.trainer.callback_metrics["test/acc"])
            row["train_images"] = len(cli.datamodule.train_set)
        except (Exception, SystemExit) as err:  # report every config, even after one fails (or exits)
            row["error"] = f"{type(err).__name__}: {err}"
        rows.append({**row, "seconds": round(time.perf_counter() - start, 1)})
        print(json.dumps(rows[-1]), flush=True)
        if args.json:  # after each config, so that a run cut short still leaves its rows
            write_json(args.json, rows)
    table = [["config", "data", "training images", "seconds", "test accuracy"]]
    for r in rows:
        outcome = f"{100 * r['test_acc']:.2f}%" if "test_acc" in r else "FAILED: " + r["error"]
        table.append([f"`{r['config']}`", r["data"], r.get("train_images", ""), round(r["seconds"]), outcome])
    print("\n" + markdown_table(table), end="")


if __name__ == "__main__":
    main()
