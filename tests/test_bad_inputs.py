"""Bad input: each case ends with a clear error naming the bad value and what is allowed, a non-zero
exit, and leaves the runs already there intact. ``python tests/test_bad_inputs.py`` writes the table of
messages in docs/bad-inputs.md by running every case."""

from __future__ import annotations

import argparse
import os
import subprocess
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import ROOT, run_litvision
from PIL import Image
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from tensorboard.plugins.hparams import api_pb2
from tensorboard.plugins.hparams.plugin_data_pb2 import HParamsPluginData

DIGITS = f"--config={ROOT / 'configs/digits_lstm.yaml'}"
SYNTHETIC = [
    "--data=litvision.data.SyntheticDataModule",
    "--data.input_shape=[1,8,8]",
    "--data.train_size=80",
    "--data.val_size=16",
    "--data.batch_size=16",
    "--model.backbone=litvision.models.SimpleCNN",
]
IMBALANCE = "--data.imbalance=litvision.data.StepImbalance"
FOLDER = "--data=litvision.data.ImageFolderDataModule"
SEARCH = ["search", DIGITS, "--trainer.max_epochs=1", "--model.backbone.init_args.hidden_size=16"]

# (what is wrong, arguments of `litvision`, a part of the message). {tmp} is a folder prepared by
# prepare(): image folders, checkpoints, a config file.
CASES = [
    (
        "unknown config key",
        ["fit", DIGITS, "--model.nonsense=1"],
        "unknown option --model.nonsense; 'litvision fit --help' lists the options",
    ),
    ("wrong type", ["fit", DIGITS, "--trainer.max_epochs=ten"], "--trainer.max_epochs: 'ten' is not an int"),
    (
        "unknown model class",
        ["fit", DIGITS, "--model.backbone=litvision.models.Nope"],
        "--model.backbone: cannot import 'litvision.models.Nope' (module 'litvision.models' has no "
        "attribute 'Nope')",
    ),
    (
        "misspelt model class",
        ["fit", DIGITS, "--model.backbone=litvision.models.SimpleCNNN"],
        "; did you mean litvision.models.SimpleCNN?",
    ),
    (
        "unknown dataset class",
        ["fit", DIGITS, "--data=litvision.data.Nope"],
        "--data: cannot import 'litvision.data.Nope' (module 'litvision.data' has no attribute 'Nope')",
    ),
    (
        "misspelt data option",
        ["fit", FOLDER, "--data.data_dir={tmp}/corrupt", "--data.batch_sise=32"],
        "--data.batch_sise: ImageFolderDataModule has no option 'batch_sise'; did you mean batch_size?",
    ),
    (
        "misspelt network option",
        ["fit", DIGITS, "--model.backbone.init_args.hiden_size=8"],
        "--model.backbone.hiden_size: RowRNN has no option 'hiden_size'; did you mean hidden_size?",
    ),
    (
        "misspelt key in a config file",
        ["fit", DIGITS, "--config={tmp}/misspelt.yaml"],
        "unknown key trainer.max_epoch in a config file; did you mean trainer.max_epochs?",
    ),
    (
        "abbreviated option",
        ["fit", DIGITS, "--trainer.max_epoch=2"],
        "unknown option --trainer.max_epoch; did you mean --trainer.max_epochs?",
    ),
    (
        "misspelt command",
        ["fitt", DIGITS],
        "'fitt' is not one of fit, validate, test, predict, analyze, reproduce, search; did you mean fit?",
    ),
    (
        "misspelt analyze",
        ["analyse", "confusion", "lightning_logs/x"],
        "'analyse' is not one of fit, validate, test, predict, analyze, reproduce, search; did you mean "
        "analyze?",
    ),
    (
        "num_classes set against the data",
        ["fit", DIGITS, "--model.num_classes=5"],
        'Linked "model.num_classes" must be given via "data.num_classes"',
    ),
    (
        "negative epoch count",
        ["fit", DIGITS, "--trainer.max_epochs=-2"],
        "trainer.max_epochs=-2 is invalid: give the number of epochs to train, 1 or more",
    ),
    (
        "endless epochs with nothing to end them",
        ["fit", DIGITS, "--trainer.max_epochs=-1"],
        "trainer.max_epochs=-1 is invalid",
    ),
    (
        "batch size 0",
        ["fit", DIGITS, "--data.batch_size=0"],
        "batch_size=0 is invalid: it must be at least 1",
    ),
    (
        "validation split out of range",
        ["fit", DIGITS, "--data.val_size=2.5"],
        "val_size 2.5 is invalid: use a fraction in [0, 1) or a count >= 0",
    ),
    (
        "step imbalance fraction 0",
        ["fit", DIGITS, IMBALANCE, "--data.imbalance.fraction=0"],
        "imbalance fraction=0.0 is invalid",
    ),
    (
        "imbalance class id out of range",
        ["fit", DIGITS, IMBALANCE, "--data.imbalance.classes=[3,12]"],
        "imbalance classes [12] do not exist",
    ),
    (
        "long-tail ratio below 1",
        ["fit", DIGITS, "--data.imbalance=litvision.data.LongTailImbalance", "--data.imbalance.ratio=0.5"],
        "imbalance ratio=0.5 is invalid: it must be at least 1",
    ),
    (
        "label smoothing with the focal loss",
        ["fit", DIGITS, "--model.loss=litvision.objectives.FocalLoss", "--model.label_smoothing=0.1"],
        "label_smoothing=0.1 has no meaning with FocalLoss: set one of them only",
    ),
    (
        "IRM with mixup",
        ["fit", DIGITS, "--model.irm_weight=1", "--data.mixup_alpha=0.2"],
        "irm_weight cannot combine with mixup or cutmix",
    ),
    (
        "oversample with another sampling schedule",
        ["fit", DIGITS, "--data.oversample=true", "--data.sampling=square_root"],
        "oversample: true is sampling: class_balanced; it cannot combine with sampling='square_root'",
    ),
    (
        "noise without classes to copy",
        ["fit", DIGITS, "--data.noise_variances=[0.1]"],
        "noise_variances needs the classes to copy",
    ),
    (
        "negative noise variance",
        ["fit", DIGITS, "--data.noise_variances=[-1]", "--data.noise_classes=[1]"],
        "noise variances [-1.0] are negative: a variance must be >= 0",
    ),
    (
        "noise class id out of range",
        ["fit", DIGITS, "--data.noise_variances=[0.1]", "--data.noise_classes=[12]"],
        "noise_classes [12] do not exist: class ids run from 0 to 9",
    ),
    (
        "label smoothing 1.5",
        ["fit", DIGITS, "--model.label_smoothing=1.5"],
        "label_smoothing=1.5 is invalid: it must be in [0, 1)",
    ),
    (
        "CUDA graphs with gradient accumulation",
        ["fit", DIGITS, "--model.compile=reduce-overhead", "--trainer.accumulate_grad_batches=2"],
        "compile='reduce-overhead' (CUDA graphs) cannot combine with accumulate_grad_batches=2",
    ),
    (
        "negative checkpoint interval",
        ["fit", DIGITS, "--checkpoint_every_n_steps=-1"],
        "checkpoint_every_n_steps=-1 is invalid",
    ),
    (
        "image folder missing",
        ["fit", DIGITS, FOLDER, "--data.data_dir={tmp}/nowhere"],
        "image folder '{tmp}/nowhere' not found",
    ),
    (
        "image folder without images",
        ["fit", DIGITS, FOLDER, "--data.data_dir={tmp}/empty"],
        "class folder(s) ['a'] of '{tmp}/empty/train' hold no image files",
    ),
    (
        "image folder with one class",
        ["fit", FOLDER, "--data.data_dir={tmp}/one_class"],
        "'{tmp}/one_class' holds one class folder ('cat'): a classifier needs at least 2 classes",
    ),
    (
        "images of two sizes",
        ["fit", FOLDER, "--data.data_dir={tmp}/two_sizes", "--trainer.max_epochs=1"],
        "like the first: give every image the same size (image_size resizes them)",
    ),
    (
        "test classes that training lacks",
        ["fit", DIGITS, FOLDER, "--data.data_dir={tmp}/unknown"],
        "'{tmp}/unknown/test' has classes ['emu'] that '{tmp}/unknown/train' does not have",
    ),
    (
        "unknown augmentation in a policy",
        ["fit", DIGITS, FOLDER, "--data.data_dir={tmp}/corrupt", "--data.policy=[{class_path: Flipp}]"],
        "policy transform 'Flipp' is not an albumentations transform",
    ),
    (
        "corrupt image",
        [
            "fit",
            DIGITS,
            FOLDER,
            "--data.data_dir={tmp}/corrupt",
            "--data.num_workers=0",
            "--trainer.max_epochs=1",
        ],
        "image '{tmp}/corrupt/train/b/broken.png' cannot be read",
    ),
    (
        "resume with no run to resume",
        ["fit", DIGITS, "--ckpt_path=last"],
        "--ckpt_path last: no run to resume",
    ),
    (
        "truncated checkpoint",
        ["fit", DIGITS, "--ckpt_path={tmp}/truncated.ckpt"],
        "checkpoint '{tmp}/truncated.ckpt' is truncated or not a checkpoint",
    ),
    (
        "checkpoint carrying code",
        ["test", DIGITS, "--ckpt_path={tmp}/foreign.ckpt"],
        "checkpoint '{tmp}/foreign.ckpt' holds a pickled argparse.Namespace object, not only tensors",
    ),
    (
        "misspelt option of predict RUN_DIR",
        ["predict", "lightning_logs/digits_lstm/version_0", "--imagse={tmp}/corrupt"],
        "unknown option --imagse; did you mean --images?",
    ),
    (
        "loss becomes NaN",
        [
            "fit",
            *SYNTHETIC,
            "--trainer.max_epochs=3",
            "--model.optimizer=torch.optim.SGD",
            "--model.optimizer.init_args.lr=0.01",
            "--model.lr_scheduler=torch.optim.lr_scheduler.StepLR",
            "--model.lr_scheduler.init_args.step_size=1",
            "--model.lr_scheduler.init_args.gamma=1e12",
        ],
        "the training loss became non-finite (nan or inf) at step 6, epoch 2, with learning rate 1e+10; "
        "the last good checkpoint is 'lightning_logs/synthetic-SimpleCNN/version_0/checkpoints/last.ckpt'",
    ),
    (
        "unknown key in a search space",
        [*SEARCH, "--space={tmp}/space_typo.yaml"],
        "'model.optimizr.init_args.lr' is not a key of the config; did you mean "
        "'model.optimizer.init_args.lr'?",
    ),
    (
        "empty range in a search space",
        [*SEARCH, "--space={tmp}/space_empty.yaml"],
        "key 'model.optimizer.init_args.lr': the range [0.1, 0.001] is empty: low must be at most high",
    ),
    (
        "search metric the model never logs",
        [*SEARCH, "--space={tmp}/space.yaml", "--metric=val/accuracy"],
        "metric 'val/accuracy' is never logged by the model; it logs",
    ),
    (
        "search direction other than min or max",
        [*SEARCH, "--space={tmp}/space.yaml", "--direction=up"],
        "direction 'up' is invalid: use max or min",
    ),
    (
        "search storage that cannot be reached",
        [*SEARCH, "--space={tmp}/space.yaml", "--storage=sqlite:///{tmp}/nowhere/study.db"],
        "storage 'sqlite:///{tmp}/nowhere/study.db' cannot be opened",
    ),
]


def prepare(tmp: Path) -> None:
    """Inputs the cases point at: image folders, a truncated checkpoint, one that carries an object,
    search spaces."""
    rng = np.random.default_rng(0)
    for split in ("train", "test"):
        (tmp / "empty" / split / "a").mkdir(parents=True)
        for label in ("a", "b"):
            folder = tmp / "corrupt" / split / label
            folder.mkdir(parents=True)
            for i in range(10):
                Image.fromarray(rng.integers(0, 255, (8, 8, 3), dtype=np.uint8)).save(folder / f"{i}.png")
    for split, label in (("train", "cat"), ("train", "dog"), ("test", "emu")):
        (tmp / "unknown" / split / label).mkdir(parents=True)
        Image.fromarray(np.zeros((8, 8, 3), dtype=np.uint8)).save(tmp / "unknown" / split / label / "0.png")
    good = (tmp / "corrupt/train/b/0.png").read_bytes()
    (tmp / "corrupt/train/b/broken.png").write_bytes(good[: len(good) // 2])  # a truncated download
    (tmp / "one_class" / "cat").mkdir(parents=True)
    for i, size in enumerate([(8, 8)] * 4 + [(12, 10)] * 4):  # small images, two sizes
        for label in ("a", "b"):
            (tmp / "two_sizes" / label).mkdir(parents=True, exist_ok=True)
            Image.fromarray(rng.integers(0, 255, (*size, 3), dtype=np.uint8)).save(
                tmp / "two_sizes" / label / f"{i}.png"
            )
    Image.fromarray(np.zeros((8, 8, 3), dtype=np.uint8)).save(tmp / "one_class" / "cat" / "0.png")
    (tmp / "misspelt.yaml").write_text("trainer:\n  max_epoch: 2\n")
    torch.save({"state_dict": {"w": torch.zeros(2)}, "loops": {}}, tmp / "whole.ckpt")
    (tmp / "truncated.ckpt").write_bytes((tmp / "whole.ckpt").read_bytes()[:100])
    # A pickled object, as a malicious checkpoint would carry (its class could run code when loaded).
    torch.save({"state_dict": {}, "payload": argparse.Namespace(x=1)}, tmp / "foreign.ckpt")
    for name, low, high in (("space", 0.001, 0.1), ("space_empty", 0.1, 0.001)):
        (tmp / f"{name}.yaml").write_text(
            f"model.optimizer.init_args.lr: {{type: float, low: {low}, high: {high}}}\n"
        )
    (tmp / "space_typo.yaml").write_text(
        "model.optimizr.init_args.lr: {type: float, low: 0.001, high: 0.1}\n"
    )


def existing_run(root: Path) -> Path:
    """A finished run already in lightning_logs/, which no failed command may touch."""
    run = root / "lightning_logs/digits_lstm/version_0"
    (run / "checkpoints").mkdir(parents=True)
    (run / "config.yaml").write_text("# an earlier run\n")
    (run / "checkpoints/last.ckpt").write_bytes(b"weights")
    return run


@dataclass
class Outcome:
    inputs: Path
    work: Path
    run: Path | None  # the earlier run the command must leave as it is
    before: list[Path]  # what ``work`` held before the command
    done: subprocess.CompletedProcess


@pytest.fixture(scope="module")
def outcomes(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Outcome]:
    """Every case's command, run side by side, each forked from a process that imported litvision once."""
    prepared = {}
    for what, args, _ in CASES:
        root = tmp_path_factory.mktemp(what.replace(" ", "_"))
        inputs, work = root / "inputs", root / "work"
        inputs.mkdir()
        work.mkdir()
        prepare(inputs)
        run = existing_run(work) if "ckpt_path=last" not in " ".join(args) else None
        prepared[what] = (inputs, work, run, sorted(p.relative_to(work) for p in work.rglob("*")))

    def one(case: tuple[str, list[str], str]) -> tuple[str, Outcome]:
        what, args = case[:2]
        inputs, work, run, before = prepared[what]
        done = run_litvision([a.replace("{tmp}", str(inputs)) for a in args], work)
        return what, Outcome(inputs, work, run, before, done)

    with ThreadPoolExecutor(max_workers=min(4, max(2, os.cpu_count() or 1))) as pool:  # memory: 4 at most
        return dict(pool.map(one, CASES))


@pytest.mark.parametrize("what, message", [(c[0], c[2]) for c in CASES], ids=[c[0] for c in CASES])
def test_bad_input_fails_with_a_clear_message_and_keeps_runs(what, message, outcomes):
    case = outcomes[what]
    done = case.done
    assert done.returncode != 0
    assert message.replace("{tmp}", str(case.inputs)) in done.stderr, done.stderr[-3000:]
    assert len(done.stderr.strip().splitlines()) == 1, "one line: " + done.stderr[-3000:]
    if case.run is not None:
        assert (case.run / "config.yaml").read_text() == "# an earlier run\n"
        assert (case.run / "checkpoints/last.ckpt").read_bytes() == b"weights"
    after = sorted(p.relative_to(case.work) for p in case.work.rglob("*"))
    if what != "loss becomes NaN":  # a run that fails before its first checkpoint is removed
        assert after == case.before, "nothing is written"
    else:  # the last good checkpoint is kept, and it is finite; TensorBoard marks the run failed
        run = case.work / "lightning_logs/synthetic-SimpleCNN/version_0"
        state = torch.load(run / "checkpoints/last.ckpt", weights_only=True)
        assert state["epoch"] == 0 and all(torch.isfinite(t).all() for t in state["state_dict"].values())
        events = EventAccumulator(str(run)).Reload().PluginTagToContent("hparams")
        end = HParamsPluginData.FromString(events["_hparams_/session_end_info"]).session_end_info
        assert end.status == api_pb2.STATUS_FAILURE


def test_corrupt_images_can_be_skipped(tmp_path):
    prepare(tmp_path)
    args = [
        "fit",
        DIGITS,
        FOLDER,
        f"--data.data_dir={tmp_path}/corrupt",
        "--data.num_workers=0",
        "--data.skip_corrupt=true",
        "--trainer.max_epochs=1",
        "--trainer.enable_progress_bar=false",
    ]
    done = run_litvision(args, tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    assert f"left out 1 unreadable image(s) of '{tmp_path}/corrupt/train': " in done.stderr


def test_an_unreadable_image_in_a_loader_worker_is_one_line(tmp_path):
    """Read by a loader process, the image's LitvisionError reaches the main process wrapped in PyTorch's
    text of the worker's traceback; the user still sees the one line."""
    prepare(tmp_path)
    args = [
        "fit", DIGITS, FOLDER, f"--data.data_dir={tmp_path}/corrupt", "--data.in_memory=false",
        "--data.num_workers=2", "--trainer.max_epochs=1", "--trainer.enable_progress_bar=false",
    ]  # fmt: skip
    done = run_litvision(args, tmp_path)
    assert done.returncode == 1
    last = done.stderr.strip().splitlines()[-1]
    assert last == (
        f"litvision: error: image '{tmp_path}/corrupt/train/b/broken.png' cannot be read (image file is "
        "truncated); repair or remove it, or set data.skip_corrupt: true to leave unreadable images out"
    ), done.stderr[-3000:]
    assert "Traceback" not in done.stderr and "DataLoader worker" not in done.stderr


def markdown() -> str:
    """Run every case, as the test does, and tabulate its message (its one line on stderr)."""
    import tempfile

    rows = ["| bad input | command | exit | message |", "| --- | --- | --- | --- |"]
    with tempfile.TemporaryDirectory() as tmp:
        for what, args, _ in CASES:
            case = Path(tmp) / what.replace(" ", "_")
            (case / "inputs").mkdir(parents=True)
            (case / "work").mkdir()
            prepare(case / "inputs")
            if "ckpt_path=last" not in " ".join(args):
                existing_run(case / "work")
            done = run_litvision([a.replace("{tmp}", str(case / "inputs")) for a in args], case / "work")
            text = " ".join(done.stderr.split()).replace(str(case / "inputs"), "$TMP").replace("|", "\\|")
            shown = " ".join(a if a != DIGITS else "--config configs/digits_lstm.yaml" for a in args)
            rows.append(
                f"| {what} | `litvision {shown.replace('{tmp}', '$TMP')}` | {done.returncode} | {text} |"
            )
    return "\n".join(rows) + "\n"


if __name__ == "__main__":
    header = (
        "# Bad input and what litvision says\n\n"
        "Generated by `python tests/test_bad_inputs.py` (each case is also a test in that file). Every case\n"
        "prints one line, exits non-zero (2 for the argument parser's errors, 1 for the others) and leaves\n"
        "the runs already in `lightning_logs/` untouched; a run that fails before its first checkpoint is\n"
        "removed.\n\n"
    )
    out = ROOT / "docs/bad-inputs.md"
    out.write_text(header + markdown())
    print(f"wrote {out}")
