"""The command line as users run it: configs, installed scripts, TensorBoard output, errors, resume."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml
from conftest import CONFIGS, ROOT, run_litvision
from lightning.pytorch import Callback
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from tensorboard.plugins.hparams import api_pb2
from tensorboard.plugins.hparams.plugin_data_pb2 import HParamsPluginData
from test_ddp import assert_quiet

from litvision.analysis.cli import build_parser as analysis_parser
from litvision.cli import LitvisionCLI, main
from litvision.commands import COMMANDS
from litvision.loggers import HEADLINE_HPARAMS, HPARAMS_COLUMNS
from litvision.models import SimpleCNN
from litvision.module import ImageClassifier
from litvision.parsing import OneLineErrors
from litvision.reproduce.cli import build_parser as reproduce_parser
from litvision.utils import read_scalars

BIN = Path(sys.executable).parent
SYNTHETIC = "--data=litvision.data.SyntheticDataModule"
SMALL_DATA = (SYNTHETIC, "--data.input_shape=[1,8,8]", "--data.train_size=80", "--data.val_size=16",
              "--data.batch_size=16")  # fmt: skip


def quiet(*args: str) -> list[str]:
    return [*args, "--trainer.enable_progress_bar=false", "--trainer.enable_model_summary=false"]


@pytest.mark.parametrize("config", CONFIGS, ids=lambda p: p.stem)
def test_config_prints_a_full_config(config, capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["fit", f"--config={config}", "--print_config"])
    assert exit_.value.code == 0
    printed = yaml.safe_load(capsys.readouterr().out)
    assert printed["model"]["backbone"]["class_path"].startswith("litvision.models.")
    assert {"trainer", "data", "checkpoint", "seed_everything"} <= printed.keys()


def offline_overrides(config: Path) -> list[str]:
    """Random weights instead of pretrained ones, which the tests must not download."""
    backbone = yaml.safe_load(config.read_text())["model"]["backbone"]
    if backbone.get("init_args", {}).get("pretrained"):
        return ["--model.backbone.init_args.pretrained=false"]
    return []


@pytest.mark.parametrize("config", CONFIGS, ids=lambda p: p.stem)
def test_config_trains_one_batch_on_synthetic_data_of_its_shape(config, in_tmp):
    """Each config, with its data swapped for synthetic data of the same shape, fits on the CPU."""
    offline = offline_overrides(config)
    declared = LitvisionCLI(args=[f"--config={config}", *offline], run=False).datamodule
    cli = LitvisionCLI(
        args=quiet(
            "fit",
            f"--config={config}",
            *offline,
            SYNTHETIC,
            f"--data.input_shape={list(declared.input_shape)}",
            f"--data.num_classes={declared.num_classes}",
            "--data.train_size=2000",
            "--data.val_size=10",
            "--data.test_size=20",
            "--data.batch_size=8",
            "--data.num_workers=0",
            "--trainer.fast_dev_run=true",
            "--trainer.accelerator=cpu",
        )
    )
    assert cli.trainer.global_step == 1
    assert torch.isfinite(cli.trainer.callback_metrics["test/loss"])  # tested after fit


def run_script(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(args, cwd=cwd, capture_output=True, text=True, timeout=300)


def test_lightning_script_trains_the_demo_and_logs_to_tensorboard(in_tmp):
    result = run_script(
        str(BIN / "lightning"), "fit", f"--config={ROOT / 'configs/digits_lstm.yaml'}",
        "--trainer.max_epochs=2", cwd=in_tmp,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    run = in_tmp / "lightning_logs" / "digits_lstm" / "version_0"
    results = json.loads((run / "test_results.json").read_text())
    assert len(results["per_class"]) == 10 and results["num_samples"] == 360
    assert results["checkpoint"].endswith(".ckpt") and "best-epoch" in results["checkpoint"]
    assert "Test accuracy per class" in result.stdout
    assert (run / "checkpoints" / "last.ckpt").exists() and (run / "config.yaml").exists()
    assert_quiet(result)

    events = EventAccumulator(str(run), size_guidance={"images": 0, "scalars": 0, "tensors": 0}).Reload()
    scalars = set(events.Tags()["scalars"])
    assert {"val/acc", "val/loss", "train/loss", "train/acc", "test/acc", "val/acc_best"} <= scalars
    per_class = {t for t in scalars if t.startswith("val/acc_class/")}
    assert per_class == {f"val/acc_class/{d}" for d in range(10)}
    assert {"val/confusion_matrix", "test/confusion_matrix"} <= set(events.Tags()["images"])
    assert len(events.Scalars("val/acc")) == 2  # one point per epoch
    val_acc = [e.value for e in events.Scalars("val/acc")]
    best = [e.value for e in events.Scalars("val/acc_best")]
    assert best[-2:] == [val_acc[0], max(val_acc)], "val/acc_best is the best val/acc so far"
    hparams = events.PluginTagToContent("hparams")
    session = HParamsPluginData.FromString(hparams["_hparams_/session_start_info"]).session_start_info
    # What a user varies, readable: classes with the options given, numbers as numbers.
    shown = {k: v.WhichOneof("kind") and getattr(v, v.WhichOneof("kind")) for k, v in session.hparams.items()}
    assert {"data": "digits", "model": "RowRNN", "model_options": "defaults", "optimizer": "Adam",
            "lr": 0.003, "epochs": 2.0, "batch_size": 64.0, "sampling": "instance", "augmentation": "off",
            "seed": 42.0, "label_smoothing": 0.0}.items() <= shown.items()  # fmt: skip
    # Every run writes every column (TensorBoard takes the columns from whichever run it reads first).
    experiment = HParamsPluginData.FromString(hparams["_hparams_/experiment"]).experiment
    assert set(shown) == {i.name for i in experiment.hparam_infos} == set(HPARAMS_COLUMNS)
    assert [m.name.tag for m in experiment.metric_infos] == ["val/acc_best", "test/acc", "test/acc_macro"]
    # TensorBoard shows five columns at first, those marked as differing first: the headline ones.
    assert {i.name for i in experiment.hparam_infos if i.differs} == set(HEADLINE_HPARAMS)
    end = HParamsPluginData.FromString(hparams["_hparams_/session_end_info"]).session_end_info
    assert end.status == api_pb2.STATUS_SUCCESS
    # Epochs counted from 1 in the figures; each class's accuracy over the epochs, a colour per class.
    images = events.Tags()["images"]
    assert [e.step for e in events.Images("val/confusion_matrix")] == [1, 2]
    assert [e.step for e in events.Images("accuracy_per_class")] == [1, 2]
    assert [e.step for e in events.Images("test/confusion_matrix")] == [results["epoch"]]
    assert results["checkpoint"].split("best-epoch")[1].startswith(f"{results['epoch']:03d}")
    # SCALARS opens on the metrics, not on one-point charts of the class counts.
    assert not [t for t in scalars if t.startswith("data/")]
    assert "custom_scalars__config__" not in events.Tags()["tensors"] and "accuracy_per_class" in images


def test_litvision_script_and_module_entry_point(in_tmp):
    result = run_script(
        str(BIN / "litvision"), "fit", f"--config={ROOT / 'configs/digits_lstm.yaml'}",
        "--trainer.max_epochs=1", "--data.val_size=0", cwd=in_tmp,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    results = json.loads((in_tmp / "lightning_logs/digits_lstm/version_0/test_results.json").read_text())
    assert results["checkpoint"] is None  # no validation split: the last weights are tested
    help_ = run_script(sys.executable, "-m", "litvision", "--help", cwd=in_tmp)
    assert help_.returncode == 0
    # Every command on one line of its own with what it does, analyze and reproduce beside training.
    for name, summary in COMMANDS.items():
        assert any(line.split() == [name, *summary.split()] for line in help_.stdout.splitlines()), name
    reproduce = run_script(sys.executable, "-m", "litvision", "reproduce", "--help", cwd=in_tmp)
    assert reproduce.returncode == 0
    assert [line.split()[0] for line in reproduce.stdout.splitlines()[-5:]] == [
        "run",
        "queue",
        "report",
        "sweep",
        "plain",
    ]


def test_every_command_parses_alike(in_tmp):
    """fit, analyze and reproduce come from one parser family: each takes --config and --print_config,
    and an unknown option or a value of the wrong type ends in the same one-line form, status 2."""
    fit = LitvisionCLI(
        args=[f"--config={ROOT / 'configs/digits_lstm.yaml'}", "--trainer.logger=false"], run=False
    )
    assert isinstance(fit.parser, OneLineErrors)
    assert isinstance(analysis_parser(), OneLineErrors) and isinstance(reproduce_parser(), OneLineErrors)
    commands = {
        "fit": (["fit", f"--config={ROOT / 'configs/digits_lstm.yaml'}"], "checkpoint_every_n_steps"),
        "analyze confusion": (["analyze", "confusion", str(in_tmp)], "pairs"),
        "reproduce run": (["reproduce", "run", "002"], "gpus_per_run"),
    }
    for prog, (args, key) in commands.items():
        help_ = run_litvision([*args[:-1], "--help"], in_tmp)
        assert (
            help_.returncode == 0 and "--config CONFIG" in help_.stdout and "--print_config" in help_.stdout
        )
        for bad, message in (
            (["--nope=1"], f"unknown option --nope; 'litvision {prog} --help' lists the options"),
            ([f"--{key}=ten"], f"--{key}: 'ten' is not an int"),
        ):
            done = run_litvision([*args, *bad], in_tmp)
            assert done.returncode == 2 and done.stderr == f"litvision {prog}: error: {message}\n", (
                done.stderr
            )
    printed = run_litvision(["reproduce", "run", "002", "--dry_run", "--print_config"], in_tmp)
    assert (
        yaml.safe_load(printed.stdout)["reports"] == ["002"]
        and yaml.safe_load(printed.stdout)["dry_run"] is True
    )
    (in_tmp / "tsne.yaml").write_text("samples: 30\nsplit: val\n")
    printed = run_litvision(
        ["analyze", "tsne", str(in_tmp), "--config", "tsne.yaml", "--print_config"], in_tmp
    )
    assert {"samples": 30, "split": "val"}.items() <= yaml.safe_load(printed.stdout).items()


def test_missing_data_is_one_line_and_leaves_nothing(in_tmp):
    result = run_script(
        str(BIN / "litvision"), "fit", f"--config={ROOT / 'configs/cnn_cifar.yaml'}",
        "--data.data_dir=nowhere", "--data.download=false", cwd=in_tmp,
    )  # fmt: skip
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("litvision: error: CIFAR-10 not found in 'nowhere'")
    assert "cifar-10-python.tar.gz" in last
    assert not (in_tmp / "lightning_logs").exists() and not (in_tmp / "nowhere").exists()


class EpochRecorder(Callback):
    def __init__(self) -> None:
        self.epochs: list[int] = []

    def on_train_epoch_start(self, trainer, pl_module) -> None:
        self.epochs.append(trainer.current_epoch)


def test_fit_resumes_from_a_checkpoint(in_tmp):
    common = quiet("fit", *SMALL_DATA, "--model.backbone=litvision.models.SimpleCNN")
    first = LitvisionCLI(args=[*common, "--trainer.max_epochs=2"])
    steps_per_epoch = first.trainer.global_step // 2
    last = Path(first.trainer.log_dir) / "checkpoints/last.ckpt"
    recorder = EpochRecorder()
    resumed = LitvisionCLI(
        args=[*common, "--trainer.max_epochs=3", f"--ckpt_path={last}"],
        trainer_defaults={"callbacks": [recorder]},
    )
    assert recorder.epochs == [2]
    assert resumed.trainer.global_step == 3 * steps_per_epoch
    assert last.exists(), "the first run's checkpoint is kept"
    # Another run's checkpoint continues that run, in its directory; a checkpoint from elsewhere (no
    # run directory around it) starts a new run from its weights and state.
    runs = in_tmp / "lightning_logs/synthetic-SimpleCNN"  # named after its data and network
    assert resumed.trainer.log_dir == first.trainer.log_dir
    assert (runs / "version_0/config.resume-1.yaml").is_file()
    foreign = in_tmp / "elsewhere/copy.ckpt"
    foreign.parent.mkdir()
    shutil.copy(last, foreign)
    fresh = LitvisionCLI(args=[*common, "--trainer.max_epochs=4", f"--ckpt_path={foreign}"])
    assert Path(fresh.trainer.log_dir).resolve() == runs / "version_1"
    assert fresh.trainer.global_step == 4 * steps_per_epoch
    assert not (runs / "version_1/config.resume-1.yaml").exists()


def test_dataset_shape_and_classes_reach_the_model(in_tmp):
    cli = LitvisionCLI(
        args=[
            SYNTHETIC,
            "--data.num_classes=7",
            "--data.input_shape=[2,12,10]",
            "--model.backbone=litvision.models.SimpleCNN",
        ],  # fmt: skip
        run=False,
    )
    assert cli.model.num_classes == 7 and cli.model.net.head.out_features == 7
    assert cli.model.class_names == [f"class_{i}" for i in range(7)]
    assert cli.model.net.conv[0].in_channels == 2


OPTIMIZERS = {"SGD": {"lr": 0.05, "momentum": 0.9}, "Adam": {"lr": 0.001}, "Adagrad": {"lr": 0.01},
              "RMSprop": {"lr": 0.001}}  # fmt: skip


@pytest.mark.parametrize("name", OPTIMIZERS)
def test_optimizers_from_yaml(name, in_tmp):
    config = {"model": {"optimizer": {"class_path": f"torch.optim.{name}", "init_args": OPTIMIZERS[name]}}}
    cli = fit_small(config, in_tmp)
    optimizer = cli.trainer.optimizers[0]
    assert type(optimizer).__name__ == name
    assert optimizer.param_groups[0]["lr"] == OPTIMIZERS[name]["lr"]


def fit_small(config: dict, tmp: Path, epochs: int = 2) -> LitvisionCLI:
    path = tmp / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    return LitvisionCLI(
        args=quiet(
            "fit",
            f"--config={path}",
            SYNTHETIC,
            "--data.input_shape=[1,8,8]",
            "--data.train_size=80",
            "--data.val_size=16",
            "--data.batch_size=16",
            "--model.backbone=litvision.models.SimpleCNN",
            f"--trainer.max_epochs={epochs}",
        )  # fmt: skip
    )


def test_cosine_schedule_steps_per_epoch(in_tmp):
    cli = fit_small(
        {"model": {"optimizer": {"class_path": "torch.optim.SGD", "init_args": {"lr": 0.1}},
                   "lr_scheduler": {"class_path": "torch.optim.lr_scheduler.CosineAnnealingLR",
                                    "init_args": {"T_max": 4}}}}, in_tmp)  # fmt: skip
    config = cli.trainer.lr_scheduler_configs[0]
    assert config.interval == "epoch"
    assert cli.trainer.optimizers[0].param_groups[0]["lr"] == pytest.approx(0.05)  # half way after 2 of 4


def test_one_cycle_spans_the_whole_fit_per_step(in_tmp):
    cli = fit_small(
        {"model": {"optimizer": {"class_path": "torch.optim.SGD", "init_args": {"lr": 0.1}},
                   "lr_scheduler": {"class_path": "torch.optim.lr_scheduler.OneCycleLR",
                                    "init_args": {"max_lr": 0.1}}}}, in_tmp)  # fmt: skip
    config = cli.trainer.lr_scheduler_configs[0]
    assert config.interval == "step"
    assert config.scheduler.total_steps == cli.trainer.global_step
    assert config.scheduler.last_epoch == cli.trainer.global_step


def test_one_cycle_keeps_a_given_total_steps_even_a_bad_one():
    """The fit's length fills in total_steps only where none was given: a bad value reaches PyTorch's
    check instead of being replaced because the error's text mentions total_steps."""
    from functools import partial

    from torch.optim.lr_scheduler import OneCycleLR

    given = ImageClassifier(SimpleCNN, lr_scheduler=partial(OneCycleLR, max_lr=0.1, total_steps=0))
    with pytest.raises(ValueError, match="total_steps"):
        given.configure_optimizers()


def test_reduce_on_plateau_halves_the_lr_when_validation_loss_stalls(in_tmp):
    """With a learning rate too small to move the validation loss by 5%, every epoch after the first is
    a plateau: patience 0 halves the rate at each of them (2 halvings in 3 epochs)."""
    cli = fit_small(
        {"model": {"optimizer": {"class_path": "torch.optim.SGD", "init_args": {"lr": 1e-4}},
                   "lr_scheduler": {"class_path": "torch.optim.lr_scheduler.ReduceLROnPlateau",
                                    "init_args": {"patience": 0, "factor": 0.5, "threshold": 0.05}}}},
        in_tmp, epochs=3,
    )  # fmt: skip
    config = cli.trainer.lr_scheduler_configs[0]
    assert config.monitor == "val/loss" and config.interval == "epoch"
    assert cli.trainer.optimizers[0].param_groups[0]["lr"] == pytest.approx(0.25e-4)
    # The best it saw is the first epoch's validation loss (never 5% better since), not another metric.
    first_val_loss = read_scalars(Path(cli.trainer.log_dir), ["val/loss"])["val/loss"][0].value
    assert config.scheduler.best == pytest.approx(first_val_loss, rel=1e-6)


def test_trainer_flags_turn_off_the_default_callbacks(in_tmp):
    cli = LitvisionCLI(
        args=[
            "fit", *SMALL_DATA, "--model.backbone=litvision.models.SimpleCNN", "--trainer.max_epochs=1",
            "--trainer.enable_checkpointing=false", "--trainer.enable_progress_bar=false",
            "--trainer.enable_model_summary=false", "--trainer.logger=false",
        ]
    )  # fmt: skip
    assert cli.trainer.checkpoint_callback is None and cli.trainer.progress_bar_callback is None
    assert "test/acc" in cli.trainer.callback_metrics  # the last weights were tested
    # No logger, no run directory: only Lightning's copy of the config lands in default_root_dir.
    assert [p.name for p in in_tmp.iterdir()] == ["config.yaml"]


def test_a_checkpoint_of_non_finite_weights_is_never_written(in_tmp, capsys):
    """An update that diverges after a finite loss leaves nan weights; the checkpoint due at that step is
    refused with one line, and the last one on disk holds the last finite weights."""
    with pytest.raises(SystemExit) as exit_:
        main(
            quiet(
                "fit",
                *SMALL_DATA,
                "--model.backbone=litvision.models.SimpleCNN",
                "--trainer.max_epochs=3",
                "--checkpoint_every_n_steps=3",  # 4 steps per epoch: checkpoints at steps 3, 4, then 6
                "--trainer.callbacks+=helpers.crash.NonFiniteWeightsAtStep",
                "--trainer.callbacks.step=6",
            )
        )
    assert exit_.value.code == 1
    error = capsys.readouterr().err.strip().splitlines()[-1].split(": error: ", 1)[1]
    assert error.startswith("the weights became non-finite (nan or inf) at step 6, epoch 2, in 1 of ")
    assert (
        "(first: 'net.conv.0.weight'); no checkpoint of them was written, the last good checkpoint is"
        in error
    )
    saved = torch.load(
        in_tmp / "lightning_logs/synthetic-SimpleCNN/version_0/checkpoints/last.ckpt",
        map_location="cpu",
        weights_only=True,
    )
    assert saved["global_step"] == 4
    assert all(torch.isfinite(v).all() for v in saved["state_dict"].values() if v.is_floating_point())
    info = json.loads((in_tmp / "lightning_logs/synthetic-SimpleCNN/version_0/run_info.json").read_text())
    assert info["sessions"][-1]["status"] == f"failed: {error}"  # a failure, not an interruption
