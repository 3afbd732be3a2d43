"""``litvision predict`` measured on real data, as a user runs it (a script, not a test).

CIFAR-10 (JPEG copy): report 000's simple CNN is trained briefly through the CLI on the image folder,
then ``litvision predict RUN_DIR`` writes predictions for the 10,000 test images, in one process and in
two DDP processes. Each written predicted class is compared with the argmax of the model's logits
computed here independently (the model rebuilt from the run's config, a plain loop over the test
images), and each row's probabilities are summed.

EuroSAT (real RGB images, every ``--eurosat-every``-th of each class, as a flat ``<Class>/*.jpg`` folder):
the same simple CNN trains through ImageFolderDataModule with report 001's albumentations policy (the
tricks config's), and the test split's class counts are compared with the folder's proportions.

    python benchmarks/predictions.py --epochs 1 --eurosat-every 10

The data comes from ``../shared/data`` through the reproduction's offline data source (extracted once
into ``data/reproduce/``); the script exits with a message when it is absent.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections import Counter
from pathlib import Path

import torch
import yaml
from torch.utils.data import DataLoader

from litvision.errors import LitvisionError
from litvision.reproduce.data_sources import CIFAR10_MEAN, CIFAR10_STD, DataSource
from litvision.reproduce.plan import Scale
from litvision.runs import load_run

ROOT = Path(__file__).resolve().parents[1]
LITVISION = [sys.executable, "-m", "litvision"]
QUIET = ["--trainer.enable_progress_bar=false", "--trainer.accelerator=cpu"]


def offline_copy(dataset: str) -> Path:
    """The folder of the offline copy of ``dataset`` as it comes (extracted once), or exit saying why."""
    try:
        source = DataSource("offline", Scale("full"), ROOT / "data", ROOT.parent / "shared" / "data")
        return source.prepare(dataset)
    except LitvisionError as err:
        sys.exit(f"skipped: {err}")


def eurosat_rgb(every: int = 1) -> Path:
    """The real EuroSAT RGB images as they come, one flat folder per class (``<Class>/<Class>_<n>.jpg``);
    with ``every`` > 1, every ``every``-th image of each class (by file number): a subset in which the
    classes keep their proportions (2,000 to 3,000 images each in the whole set)."""
    images = offline_copy("eurosat") / "2750"
    if every == 1:
        return images
    root = ROOT / "data" / "reproduce" / f"offline-eurosat-every-{every}"
    if root.is_dir():
        return root
    partial = root.with_name(root.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    for folder in sorted(p for p in images.iterdir() if p.is_dir()):
        (partial / folder.name).mkdir(parents=True)
        for f in folder.glob("*.jpg"):
            if int(f.stem.rsplit("_", 1)[-1]) % every == 0:
                os.link(f, partial / folder.name / f.name)
    partial.rename(root)
    return root


def litvision(cwd: Path, *args: str) -> None:
    done = subprocess.run([*LITVISION, *args], cwd=cwd, capture_output=True, text=True)
    if done.returncode != 0:
        sys.exit(f"litvision {args[0]} failed:\n{done.stderr[-3000:]}")


def independent_argmax(run_dir: Path, data_dir: Path) -> tuple[list[str], list[str]]:
    """Predicted class names of the test split by a plain loop over the model, and the files."""
    run = load_run(run_dir, data_args={"data_dir": str(data_dir), "in_memory": False})
    run.datamodule.setup("test")
    names = run.datamodule.class_names
    predicted = []
    with torch.no_grad():
        for x, _ in DataLoader(run.datamodule.test_set, batch_size=500):
            predicted += [names[i] for i in run.model(x).argmax(1).tolist()]
    return predicted, run.datamodule.predict_files


def check(csv_path: Path, predicted: list[str], files: list[str], cwd: Path) -> dict[str, object]:
    with csv_path.open(newline="") as f:
        rows = list(csv.DictReader(f))
    full = json.loads(csv_path.with_suffix(".json").read_text())
    sums = [sum(r["probabilities"].values()) for r in full]
    written = [str((cwd / r["image"]).resolve()) for r in rows]
    return {
        "rows": len(rows),
        "distinct_images": len(set(written)),
        "same_images_in_order": written == [str(Path(p).resolve()) for p in files],
        "agree_with_argmax": sum(r["predicted"] == p for r, p in zip(rows, predicted)) / len(predicted),
        "max_abs_probability_sum_error": max(abs(s - 1) for s in sums),
    }


def cifar(work: Path, epochs: int, limit: float) -> dict[str, object]:
    data = offline_copy("cifar10")  # train/<class>/*.jpg, test/<class>/*.jpg
    litvision(
        work, "fit", f"--config={ROOT / 'configs/cnn_cifar.yaml'}",
        "--data=litvision.data.ImageFolderDataModule", f"--data.data_dir={data}",
        f"--data.mean={CIFAR10_MEAN}", f"--data.std={CIFAR10_STD}", "--data.num_workers=2",
        f"--trainer.max_epochs={epochs}", f"--trainer.limit_train_batches={limit}", *QUIET,
    )  # fmt: skip
    run_dir = work / "lightning_logs/cnn_cifar/version_0"
    predicted, files = independent_argmax(run_dir, data)
    litvision(work, "predict", str(run_dir), *QUIET)
    litvision(
        work, "predict", str(run_dir), f"--output={work / 'ddp.csv'}", "--trainer.devices=2",
        "--trainer.strategy=ddp", *QUIET,
    )  # fmt: skip
    results = json.loads((run_dir / "test_results.json").read_text())
    return {
        "test_acc": results["acc"],
        "one_process": check(run_dir / "predictions.csv", predicted, files, work),
        "two_ddp_processes": check(work / "ddp.csv", predicted, files, work),
    }


def eurosat(work: Path, every: int, epochs: int) -> dict[str, object]:
    data = eurosat_rgb(every)
    tricks = yaml.safe_load((ROOT / "configs/densenet121_factorized_tricks_eurosat.yaml").read_text())
    policy = json.dumps(tricks["data"]["init_args"]["policy"])
    litvision(
        work, "fit", "--data=litvision.data.ImageFolderDataModule", f"--data.data_dir={data}",
        "--data.test_size=0.2", "--data.val_size=0.1", "--data.batch_size=64", "--data.num_workers=2",
        f"--data.policy={policy}", "--model.backbone=litvision.models.SimpleCNN",
        f"--trainer.max_epochs={epochs}", *QUIET,
    )  # fmt: skip
    (run_dir,) = (work / "lightning_logs").glob("*-SimpleCNN/version_0")  # named after the folder
    results = json.loads((run_dir / "test_results.json").read_text())
    folder = Counter(p.parent.name for p in data.glob("*/*.jpg"))
    test = {name: v["support"] for name, v in results["per_class"].items()}
    predicted, files = independent_argmax(run_dir, data)
    litvision(work, "predict", str(run_dir), *QUIET)
    return {
        "images_per_class": dict(sorted(folder.items())),
        "test_images_per_class": test,
        "test_share_per_class": {n: round(test[n] / folder[n], 4) for n in sorted(folder)},
        "test_acc": results["acc"],
        "predictions": check(run_dir / "predictions.csv", predicted, files, work),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--limit-train-batches", type=float, default=1.0, help="CIFAR-10 training batches")
    parser.add_argument("--eurosat-every", type=int, default=10, help="EuroSAT: every n-th image per class")
    parser.add_argument("--only", choices=["cifar", "eurosat"])
    args = parser.parse_args()
    out: dict[str, object] = {}
    with tempfile.TemporaryDirectory() as tmp:
        if args.only in (None, "cifar"):
            (Path(tmp) / "cifar").mkdir()
            out["cifar10_jpeg"] = cifar(Path(tmp) / "cifar", args.epochs, args.limit_train_batches)
            print(json.dumps(out, indent=2), flush=True)
        if args.only in (None, "eurosat"):
            (Path(tmp) / "eurosat").mkdir()
            out["eurosat_flat"] = eurosat(Path(tmp) / "eurosat", args.eurosat_every, args.epochs)
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
