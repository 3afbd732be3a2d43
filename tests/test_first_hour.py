"""A newcomer's first hour: the README's own-images command with no config, what the console and the
help show, the errors of a misspelt option, and what a run is named and counts epochs by."""

from __future__ import annotations

import json
import re

import pytest
import yaml
from conftest import run_litvision
from test_data import write_images

from litvision.cli import LitvisionCLI, main
from litvision.loggers import HPARAMS_COLUMNS, run_name, user_hparams
from litvision.models import ARCHITECTURES
from litvision.parsing import Parser

FOLDER = ["fit", "--data=litvision.data.ImageFolderDataModule", "--data.data_dir=photos"]
QUIET = ["--trainer.enable_progress_bar=false", "--trainer.enable_model_summary=false"]
SYNTHETIC = ["--data=litvision.data.SyntheticDataModule", "--data.input_shape=[1,8,8]",
             "--data.num_classes=2", "--data.train_size=32", "--data.val_size=8", "--data.batch_size=8",
             "--model.backbone=litvision.models.SimpleCNN"]  # fmt: skip


def test_the_readme_one_liner_trains_the_default_network_and_says_what_it_found(tmp_path):
    """``litvision fit --data=litvision.data.ImageFolderDataModule --data.data_dir=photos``, as the README
    has it (two epochs instead of 20): a run named after the folder and the network, epochs counted from
    1 everywhere, and a console that starts with what matters."""
    write_images(tmp_path / "photos", {"cat": 15, "dog": 15, "emu": 15}, (16, 16))
    done = run_litvision([*FOLDER, "--trainer.max_epochs=2", "--data.num_workers=0"], tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    run = tmp_path / "lightning_logs/photos-CifarResNet/version_0"
    config = yaml.safe_load((run / "config.yaml").read_text())
    assert config["model"]["backbone"]["class_path"] == "litvision.models.CifarResNet"
    assert config["model"]["backbone"]["init_args"]["stem"] == "auto"
    results = json.loads((run / "test_results.json").read_text())
    assert 1 <= results["epoch"] <= 2 and f"best-epoch{results['epoch']:03d}-" in results["checkpoint"]
    lines = done.stdout.splitlines()
    first_bar = next(i for i, line in enumerate(lines) if line.startswith("Epoch "))
    assert lines[first_bar].startswith("Epoch 2/2 "), "the last of two epochs is epoch 2"
    assert first_bar <= 25
    before = "\n".join(lines[:first_bar])
    assert "image folder in 'photos': 45 images in 3 classes: 32 train, 4 validation, 9 test" in before
    assert f"Run {run.relative_to(tmp_path)} (seed 42)" in before
    for noise in ("GPU available", "TPU available", "ClassificationCounts", "MeanMetric", "Seed set"):
        assert noise not in done.stdout + done.stderr
    assert done.stderr == "", "no warning, no line of Lightning's about restoring the best checkpoint"


def help_of(args: list[str], capsys: pytest.CaptureFixture, monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv("COLUMNS", "80")
    with pytest.raises(SystemExit) as exit_:
        main(args)
    assert exit_.value.code == 0
    return capsys.readouterr().out


def test_fit_help_is_short_names_the_zoo_and_leads_with_the_model_and_the_data(capsys, monkeypatch):
    text = help_of(["fit", "--help"], capsys, monkeypatch)
    assert len(text.splitlines()) <= 400
    for arch in ARCHITECTURES:
        assert f"litvision.models.{arch.__name__}" in text
    assert "torch.nn.ReLU" not in text, "the network is a litvision architecture, not any torch.nn module"
    assert text.index("\nModel:") < text.index("\nData:") < text.index("\nTrainer:")
    assert "ImageFolderDataModule" in text and "image_size" in text


def test_predict_help_shows_the_run_dir_form_first(capsys, monkeypatch):
    text = help_of(["predict", "--help"], capsys, monkeypatch)
    assert text.startswith("usage: litvision predict RUN_DIR [--images DIR]")


def test_every_image_folder_option_is_described(capsys, monkeypatch):
    text = help_of(["fit", "--data.help", "ImageFolderDataModule"], capsys, monkeypatch)
    entries = re.split(r"\n  (?=--data\.)", text)[1:]
    assert len(entries) >= 20
    for entry in entries:
        option, _, description = entry.partition("\n")
        described = " ".join(description.split()).split("(type:")[0].strip()
        if not described:  # a short option name has its description on its own line
            described = " ".join(option.split()[2:]).split("(type:")[0]
        assert described, f"{option.split()[0]} has no description"


def test_a_litvision_parser_errs_in_one_line_with_a_suggestion_and_no_abbreviation(capsys):
    parser = Parser(prog="litvision tool")
    parser.add_argument("--batch_size", type=int, default=1)
    parser.add_argument("--epochs", type=int, default=1)
    for args, expected in (
        (["--batch_sise=3"], "unknown option --batch_sise; did you mean --batch_size?"),
        (["--epoch=3"], "unknown option --epoch; did you mean --epochs?"),
        (["--epochs=three"], "--epochs: 'three' is not an int"),
    ):
        with pytest.raises(SystemExit) as exit_:
            parser.parse_args(args)
        assert exit_.value.code == 2
        assert capsys.readouterr().err == f"litvision tool: error: {expected}\n"


def test_hparams_columns_are_the_same_for_any_config():
    lstm = {
        "backbone": {"class_path": "litvision.models.RowRNN", "init_args": {"cell": "elman"}},
        "optimizer": {"class_path": "torch.optim.Adam", "init_args": {"lr": 0.003}},
        "batch_size": 64,
    }
    resnet = {"backbone": {"class_path": "litvision.models.CifarResNet", "init_args": {"width": 16}},
              "optimizer": {"class_path": "torch.optim.SGD", "init_args": {"lr": 0.1, "momentum": 0.9}},
              "policy": [{"class_path": "albumentations.HorizontalFlip"}], "mixup_alpha": 0.2}  # fmt: skip
    shown = [user_hparams(params) for params in (lstm, resnet)]
    assert list(shown[0]) == list(shown[1]) == list(HPARAMS_COLUMNS)
    assert shown[0]["model_options"] == "cell=elman" and shown[1]["model_options"] == "width=16"
    assert shown[1]["optimizer"] == "SGD(momentum=0.9)" and shown[1]["lr"] == 0.1
    assert shown[1]["augmentation"] == "HorizontalFlip + mixup 0.2"


def test_a_run_without_config_is_named_after_its_data_and_network():
    folder = {"class_path": "litvision.data.ImageFolderDataModule", "init_args": {"data_dir": "my photos"}}
    resnet18 = {"class_path": "litvision.models.TorchvisionNet", "init_args": {"name": "resnet18"}}
    assert run_name(folder, resnet18) == "my_photos-resnet18"
    assert (
        run_name({"class_path": "litvision.data.CIFAR10DataModule"}, "litvision.models.VGG") == "cifar10-VGG"
    )


def test_a_one_class_dataset_trains_without_a_0d_tensor_error(in_tmp):
    cli = LitvisionCLI(args=["fit", *SYNTHETIC, "--data.num_classes=1", "--trainer.max_epochs=1", *QUIET])
    assert cli.model.num_classes == 1
    assert cli.model.confusion["test"].shape == (1, 1)


def test_endless_epochs_need_a_step_or_time_limit_and_the_bar_has_no_total(in_tmp):
    cli = LitvisionCLI(
        args=["fit", *SYNTHETIC, "--trainer.max_epochs=-1", "--trainer.max_steps=6", *QUIET[1:]]
    )
    assert cli.trainer.global_step == 6
    assert cli.trainer.progress_bar_callback.train_description(1) == "Epoch 2"


def test_a_second_prediction_keeps_the_first(tmp_path):
    write_images(tmp_path / "photos", {"cat": 8, "dog": 8}, (8, 8))
    fit = [*FOLDER, "--trainer.max_epochs=1", "--data.num_workers=0", "--model.backbone.init_args.width=4"]
    assert run_litvision([*fit, *QUIET], tmp_path).returncode == 0
    run = tmp_path / "lightning_logs/photos-CifarResNet/version_0"
    first = run_litvision(["predict", str(run)], tmp_path)
    assert first.returncode == 0, first.stderr[-3000:]
    written = (run / "predictions.csv").read_text()
    second = run_litvision(["predict", str(run), "--images=photos/cat"], tmp_path)
    assert second.returncode == 0, second.stderr[-3000:]
    assert f"saved to {run}/predictions-2.csv" in " ".join(second.stdout.split())
    assert (run / "predictions.csv").read_text() == written and (run / "predictions-2.json").is_file()
    assert len((run / "predictions-2.csv").read_text().splitlines()) == 1 + 8
