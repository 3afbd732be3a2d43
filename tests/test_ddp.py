"""DDP on the CPU: two gloo processes train, validate and test through the CLI."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest
import torch
from conftest import ROOT
from helpers.record import image_digest

from litvision.data import DigitsDataModule, StepImbalance
from litvision.utils import read_scalars

# The installed script, with tests/ on the path for the recording callback.
ENV = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), str(ROOT / "tests")])}


def assert_ranks_trained_on_their_shares(cwd: Path, data: DigitsDataModule, epochs: int = 2) -> list[Counter]:
    """What the ranks of the real run trained on (recorded by ``RecordTrainingImages``) is, per epoch, the
    epoch's seeded draws shared out: each draw on one rank, plus the one repeat with which Lightning's
    ``DistributedSamplerWrapper`` evens out an odd count (it also shuffles which rank gets which draw)."""
    os.environ["PL_GLOBAL_SEED"] = "42"  # the run's seed, as seed_everything leaves it
    try:
        data.setup("fit")
        loader = data.train_dataloader()
    finally:
        del os.environ["PL_GLOBAL_SEED"]
    sampler = loader.sampler if loader.batch_sampler is None else loader.batch_sampler.sampler
    records = [json.loads((cwd / f"trained-rank{rank}.json").read_text()) for rank in (0, 1)]
    trained = []
    for epoch in range(epochs):
        sampler.set_epoch(epoch)
        draws = Counter(image_digest(data.train_set[item][0]) for item in sampler)
        both = Counter(records[0][epoch] + records[1][epoch])
        assert len(records[0][epoch]) == len(records[1][epoch]) == (sampler.num_samples + 1) // 2
        assert not draws - both and sum((both - draws).values()) == sampler.num_samples % 2, epoch
        trained.append(draws)  # what the ranks trained on, the padding repeat left out
    return trained


@pytest.mark.parametrize(
    "in_memory",
    [pytest.param("true", id="in_memory", marks=pytest.mark.slow), pytest.param("false", id="pil")],
)
def test_ddp_two_processes_fit_and_report_once(in_memory, in_tmp):
    result = subprocess.run(
        [
            str(Path(sys.executable).parent / "litvision"), "fit",
            f"--config={ROOT / 'configs/digits_lstm.yaml'}",
            "--trainer.max_epochs=2", "--trainer.accelerator=cpu", "--trainer.devices=2",
            "--trainer.strategy=ddp", "--trainer.enable_progress_bar=false", f"--data.in_memory={in_memory}",
            "--trainer.callbacks+=helpers.record.RecordTrainingImages",
        ],
        cwd=in_tmp, env=ENV, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    data = DigitsDataModule(batch_size=64, val_size=0.1, in_memory=in_memory == "true")
    assert_ranks_trained_on_their_shares(in_tmp, data)
    runs = list((in_tmp / "lightning_logs" / "digits_lstm").iterdir())
    assert len(runs) == 1, "both ranks must log to one run"
    results = json.loads((runs[0] / "test_results.json").read_text())
    assert results["num_samples"] == 360, "every test image counted once across the two ranks"
    assert result.stdout.count("Test accuracy per class") == 1
    assert_quiet(result)


# What Lightning prints that a user cannot act on, and what once read as a broken model summary.
NOT_ACTIONABLE = (
    "sync_dist=True", "Total FLOPs: 0", "already configured with model summary", "💡 Tip",
    "dirpath has changed", "GPU available: False", "TPU available", "log_every_n_steps",
    "ClassificationCounts", "MeanMetric", "Seed set to",
)  # fmt: skip


def assert_quiet(result: subprocess.CompletedProcess) -> None:
    printed = result.stdout + result.stderr
    assert not [s for s in NOT_ACTIONABLE if s in printed], printed[-3000:]


def test_ddp_oversampled_run_reports_what_one_process_measures(in_tmp):
    """Per-class test accuracy logged by a 2-process run with oversampling equals a single-process
    evaluation of the same checkpoint."""
    litvision = str(Path(sys.executable).parent / "litvision")
    config = f"--config={ROOT / 'configs/digits_lstm.yaml'}"
    fit = subprocess.run(
        [
            litvision, "fit", config, "--trainer.max_epochs=2", "--trainer.accelerator=cpu",
            "--trainer.devices=2", "--trainer.strategy=ddp", "--trainer.enable_progress_bar=false",
            "--data.imbalance=StepImbalance", "--data.imbalance.fraction=0.2", "--data.oversample=true",
            "--trainer.callbacks+=helpers.record.RecordTrainingImages",
        ],
        cwd=in_tmp, env=ENV, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert fit.returncode == 0, fit.stderr[-3000:]
    data = DigitsDataModule(
        batch_size=64, val_size=0.1, imbalance=StepImbalance(fraction=0.2), oversample=True
    )
    first, second = assert_ranks_trained_on_their_shares(in_tmp, data)
    assert first != second, "the same draws in both epochs: the sampler's epoch did not advance"
    distributed = json.loads((in_tmp / "lightning_logs/digits_lstm/version_0/test_results.json").read_text())
    single = subprocess.run(
        [litvision, "test", config, f"--ckpt_path={distributed['checkpoint']}",
         "--trainer.enable_progress_bar=false"],
        cwd=in_tmp, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert single.returncode == 0, single.stderr[-3000:]
    assert_quiet(single)
    alone = json.loads((in_tmp / "lightning_logs/digits_lstm/version_1/test_results.json").read_text())
    assert distributed["confusion_matrix"] == alone["confusion_matrix"]
    assert distributed["per_class"].keys() == alone["per_class"].keys()
    for name, result in alone["per_class"].items():
        assert distributed["per_class"][name]["acc"] == result["acc"]


def test_ddp_epochs_draw_new_samples(in_tmp):
    """Under DDP Lightning wraps the datamodule's seeded sampler; the wrapper must pass each epoch on to
    it (Lightning >= 2.6.1), or every epoch repeats epoch 0's draws: the same oversampled images and
    augmentation, only dealt out to the ranks in another order."""
    result = subprocess.run(
        [
            sys.executable, "-m", "litvision", "fit", "--model.backbone=litvision.models.SimpleCNN",
            "--data=litvision.data.SyntheticDataModule", "--data.input_shape=[1,8,8]", "--data.train_size=64",
            "--data.val_size=0", "--data.batch_size=8", "--data.imbalance=LongTailImbalance",
            "--data.imbalance.ratio=4", "--data.oversample=true", "--trainer.max_epochs=2",
            "--trainer.accelerator=cpu", "--trainer.devices=2", "--trainer.strategy=ddp",
            "--trainer.enable_progress_bar=false", "--trainer.enable_model_summary=false",
            "--test_after_fit=false", "--trainer.callbacks+=helpers.record.RecordTrainingImages",
        ],
        cwd=in_tmp, env=ENV, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    ranks = [json.loads((in_tmp / f"trained-rank{r}.json").read_text()) for r in (0, 1)]
    for seen in ranks:
        assert len(seen[0]) == len(seen[1]) > 0 and seen[0] != seen[1]
    # Drawn with replacement, a new epoch draws other images. (Not the multiset: the wrapper pads the
    # ranks' shares with images of its own shuffle, which changes every epoch whatever the sampler does.)
    drawn = [set(ranks[0][epoch] + ranks[1][epoch]) for epoch in (0, 1)]
    assert drawn[0] != drawn[1], "epoch 1 repeats epoch 0's draws"


# Each class-count-aware loss (given to fit and test) with a sampling schedule or mixup (fit only).
LONG_TAIL_METHODS = {
    "ldam_drw-progressive-mixup": (
        ["--model.loss=litvision.objectives.LDAMLoss", "--model.loss.s=5",
         "--model.loss.class_balanced_beta=0.999", "--model.loss.reweight_from_epoch=1"],
        ["--data.sampling=progressive", "--data.mixup_alpha=0.4", "--data.cutmix_alpha=1.0"],
    ),
    "logit_adjusted-class_balanced": (
        ["--model.loss=litvision.objectives.LogitAdjustedLoss", "--model.loss.tau=1.0"],
        ["--data.sampling=class_balanced"],
    ),
    "balanced_softmax-square_root": (
        ["--model.loss=litvision.objectives.BalancedSoftmax"], ["--data.sampling=square_root"]
    ),
    "class_balanced_focal": (
        ["--model.loss=litvision.objectives.FocalLoss", "--model.loss.gamma=1.0",
         "--model.loss.class_balanced_beta=0.999"],
        [],
    ),
}  # fmt: skip


@pytest.mark.slow
@pytest.mark.parametrize("method", list(LONG_TAIL_METHODS))
def test_ddp_run_of_each_long_tail_method_reports_what_one_process_measures(method, in_tmp):
    """Each count-aware loss with a sampling schedule (LDAM-DRW also with mixup and CutMix) on two gloo
    processes: both ranks hand the loss the same counts (the datamodule's), each rank mixes its own
    training batches (seeded by its rank), and the logged test metrics (and the loss, where unweighted),
    never mixed, equal a single-process test of the checkpoint."""
    loss_args, data_args = LONG_TAIL_METHODS[method]
    litvision = str(Path(sys.executable).parent / "litvision")
    config = f"--config={ROOT / 'configs/digits_lstm.yaml'}"
    imbalance = ["--data.imbalance=LongTailImbalance", "--data.imbalance.ratio=10"]
    fit = subprocess.run(
        [
            litvision, "fit", config, "--trainer.max_epochs=2", "--trainer.accelerator=cpu",
            "--trainer.devices=2", "--trainer.strategy=ddp", "--trainer.enable_progress_bar=false",
            *imbalance, *loss_args, *data_args,
        ],
        cwd=in_tmp, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert fit.returncode == 0, fit.stderr[-3000:]
    distributed = json.loads((in_tmp / "lightning_logs/digits_lstm/version_0/test_results.json").read_text())
    checkpoint = torch.load(distributed["checkpoint"], weights_only=True)
    trained_on = [v["train_images"] for v in distributed["per_class"].values()]
    assert checkpoint["state_dict"]["loss.class_counts"].tolist() == trained_on
    single = subprocess.run(
        [litvision, "test", config, f"--ckpt_path={distributed['checkpoint']}",
         "--trainer.enable_progress_bar=false", *imbalance, *loss_args],
        cwd=in_tmp, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert single.returncode == 0, single.stderr[-3000:]
    alone = json.loads((in_tmp / "lightning_logs/digits_lstm/version_1/test_results.json").read_text())
    assert distributed["confusion_matrix"] == alone["confusion_matrix"]
    # The test loss too, where it is a mean over images; a class-weighted batch loss (sum w l / sum w per
    # batch, as in Cao et al.'s code) depends on how the images are cut into batches.
    if not any("class_balanced_beta" in arg for arg in loss_args):
        losses = [read_scalars(in_tmp / f"lightning_logs/digits_lstm/version_{v}")["test/loss"][-1].value
                  for v in (0, 1)]  # fmt: skip
        assert losses[0] == pytest.approx(losses[1], rel=1e-5)  # the count-aware loss, same counts
    for name, result in alone["per_class"].items():
        assert distributed["per_class"][name]["acc"] == result["acc"]
