"""``litvision predict RUN_DIR``: a user's own folder of images, trained on, then predicted on (the
test split, a new folder, two DDP processes), checked against the model's own argmax."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from PIL import Image
from test_data import write_images

from litvision.runs import load_run

LITVISION = str(Path(sys.executable).parent / "litvision")
# Unusual class names, as users have them; 7 test images, so that two DDP ranks get unequal shares.
CLASSES = {"Sea Lake": 10, "forêt": 8, "3 cats": 10}
QUIET = ["--trainer.enable_progress_bar=false"]


def litvision(cwd: Path, *args: str) -> subprocess.CompletedProcess:
    done = subprocess.run([LITVISION, *args], cwd=cwd, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    return done


def read_csv(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as f:
        return list(csv.DictReader(f))


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A short fit on a flat folder (root/<class>/*.jpg) through ImageFolderDataModule."""
    cwd = tmp_path_factory.mktemp("predict")
    write_images(cwd / "photos", CLASSES, (16, 16), suffix=".jpg")
    litvision(
        cwd, "fit", "--data=litvision.data.ImageFolderDataModule", "--data.data_dir=photos",
        "--data.test_size=7", "--data.val_size=3", "--data.batch_size=4", "--data.num_workers=0",
        "--model.backbone=litvision.models.SimpleCNN", "--model.backbone.init_args.channels=[4,4,4]",
        "--model.backbone.init_args.hidden=[8,8]", "--trainer.max_epochs=1", *QUIET,
    )  # fmt: skip
    return cwd / "lightning_logs/photos-SimpleCNN/version_0"


@pytest.fixture(scope="module")
def test_split_rows(run_dir: Path) -> list[dict[str, str]]:
    done = litvision(run_dir.parents[2], "predict", str(run_dir), *QUIET)
    assert "Predictions for 7 images saved to" in " ".join(done.stdout.split())
    return read_csv(run_dir / "predictions.csv")


def test_test_split_predictions_agree_with_the_models_argmax(run_dir, test_split_rows):
    cwd = run_dir.parents[2]
    # The model and data rebuilt independently, from the run's config.
    run = load_run(run_dir, data_args={"data_dir": str(cwd / "photos")})
    run.datamodule.setup("test")
    images, labels = zip(*(run.datamodule.test_set[i] for i in range(len(run.datamodule.test_set))))
    with torch.no_grad():
        logits = run.model(torch.stack(images))
    names = run.datamodule.class_names
    assert [r["predicted"] for r in test_split_rows] == [names[i] for i in logits.argmax(1).tolist()]
    assert [r["true"] for r in test_split_rows] == [names[y] for y in labels]
    assert [str(cwd / r["image"]) for r in test_split_rows] == run.datamodule.predict_files
    assert all(Path(r["image"]).parent.name in CLASSES for r in test_split_rows)
    rows = json.loads((run_dir / "predictions.json").read_text())
    for row, p in zip(rows, logits.softmax(1).tolist()):
        assert sum(row["probabilities"].values()) == pytest.approx(1.0, abs=1e-5)
        assert list(row["probabilities"].values()) == pytest.approx(p, abs=1e-6)
        assert row["top1"] == row["predicted"] and row["top1_probability"] >= row["top2_probability"]
    # A prediction adds no run (TensorBoard would list it, empty) and writes no config beside it.
    assert [p.name for p in run_dir.parent.iterdir()] == ["version_0"]
    assert not (cwd / "config.yaml").exists()


def test_a_folder_of_new_images_any_layout_and_size(run_dir, tmp_path):
    new = tmp_path / "new photos"
    write_images(new / "2024" / "june", {"beach": 2}, (40, 24), suffix=".PNG")  # nested, another size
    Image.new("L", (16, 16), 128).save(new / "grey.jpg")  # grey, flat
    (new / ".hidden.jpg").write_bytes(b"hidden")
    (new / "notes.txt").write_text("not an image")
    output = tmp_path / "out" / "mine.csv"
    litvision(
        run_dir.parents[2], "predict", str(run_dir), f"--images={new}", f"--output={output}", "--top_k=2",
        *QUIET,
    )  # fmt: skip
    rows = read_csv(output)
    assert [Path(r["image"]).relative_to(new).as_posix() for r in rows] == [
        "2024/june/beach/beach_0.PNG", "2024/june/beach/beach_1.PNG", "grey.jpg",
    ]  # fmt: skip
    assert list(rows[0]) == ["image", "predicted", "probability", "top1", "top1_probability", "top2",
                             "top2_probability"]  # fmt: skip
    assert all(r["predicted"] in CLASSES for r in rows)


@pytest.mark.slow
def test_two_ddp_processes_write_each_image_once_in_order(run_dir, test_split_rows, tmp_path):
    output = tmp_path / "ddp.csv"
    litvision(
        run_dir.parents[2], "predict", str(run_dir), f"--output={output}", "--trainer.accelerator=cpu",
        "--trainer.devices=2", "--trainer.strategy=ddp", *QUIET,
    )  # fmt: skip
    rows = read_csv(output)
    assert [r["image"] for r in rows] == [r["image"] for r in test_split_rows]
    assert [r["predicted"] for r in rows] == [r["predicted"] for r in test_split_rows]
