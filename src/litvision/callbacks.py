"""Callbacks the CLI adds to every run."""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import random
import re
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch
from lightning.pytorch import Callback, LightningModule, Trainer
from lightning.pytorch.callbacks import ModelCheckpoint, RichModelSummary
from lightning.pytorch.callbacks.progress.rich_progress import (
    BatchesProcessedColumn,
    CustomBarColumn,
    CustomTimeColumn,
)
from lightning.pytorch.utilities.exceptions import SIGTERMException
from rich.console import Console
from rich.progress import TextColumn
from rich.table import Table
from torchmetrics import Metric

from litvision.errors import NonFiniteError
from litvision.metrics import accuracies, shot_groups
from litvision.private_api import EpochDescribedProgressBar
from litvision.utils import git_state, now, write_json

# Lightning's console messages that a user of litvision cannot act on.
_NOT_ACTIONABLE = (
    "💡 Tip:",  # advertisements for Lightning's cloud services
    "LightningCLI's args parameter",  # `litvision predict RUN_DIR` hands the CLI its translated arguments
    "`isinstance(treespec, LeafSpec)` is deprecated",  # Lightning's use of a deprecated torch API
    "Trainer already configured with model summary callbacks",  # ours: ModelSummary below
    "Seed set to",  # the run's first line says it (RunInfo)
    "`Trainer.fit` stopped: `max_epochs=",  # the planned end
    # Every epoch's metrics are logged at its end, whatever the interval of the per-step loss.
    "The number of training batches",
)
# Device lines worth a line only when a device sits unused ("GPU available: True (cuda), used: False").
_DEVICE = re.compile(r"^(GPU|TPU|HPU) available: (False|True.*used: True|True, using: \d+ TPU cores)")


def _actionable(record: logging.LogRecord) -> bool:
    message = re.sub(r"^\[rank: \d+\] ", "", record.getMessage())  # as other DDP processes say it
    return not message.startswith(_NOT_ACTIONABLE) and not _DEVICE.match(message)


def quiet_console() -> None:
    """Leave out of the console the warnings and messages a user cannot act on, in every process (DDP
    runs main() in each): Lightning's advice to ``sync_dist`` the epoch metrics, which torchmetrics has
    synchronised already (a user's own ``self.log`` keys keep the advice), the messages above, and the
    lines about GPUs and TPUs unless one is there unused."""
    from litvision.module import SPLITS

    splits = "|".join(SPLITS)
    warnings.filterwarnings(
        "ignore",
        message=rf"It is recommended to use `self.log\('({splits})/(loss|acc|acc_macro|acc_best|acc_class/)",
    )
    warnings.filterwarnings("ignore", message=rf"({'|'.join(map(re.escape, _NOT_ACTIONABLE))})")
    loggers = (
        "lightning.pytorch.utilities.rank_zero",
        "lightning.pytorch.cli",
        "lightning.fabric.utilities.seed",
    )
    for name in loggers:
        logging.getLogger(name).addFilter(_actionable)


class ModelSummary(RichModelSummary):
    """Lightning's rich model summary without the rows of the metric modules (no parameters, nothing a
    reader of the network needs)."""

    @staticmethod
    def summarize(summary_data: list[tuple[str, list[str]]], *args: Any, **kwargs: Any) -> None:
        metrics = {cls.__name__ for cls in _subclasses(Metric)}
        types = dict(summary_data).get("Type", [])
        kept = [i for i, name in enumerate(types) if name not in metrics]
        rows = [(column, [values[i] for i in kept]) for column, values in summary_data]
        RichModelSummary.summarize(rows, *args, **kwargs)


def _subclasses(cls: type) -> list[type]:
    return [cls, *(sub for child in cls.__subclasses__() for sub in _subclasses(child))]


class ProgressBar(EpochDescribedProgressBar):
    """Lightning's rich progress bar, read at a glance: epochs counted from 1 as everywhere in litvision
    (``Epoch 2/2`` is the last of two; Lightning's own shows ``Epoch 1/1``), and the epoch's loss and
    accuracy, training and validation, in one short line beside a narrower bar."""

    def configure_columns(self, trainer: Trainer) -> list:
        theme = self.theme
        return [
            TextColumn("[progress.description]{task.description}"),
            CustomBarColumn(
                bar_width=12,
                complete_style=theme.progress_bar,
                finished_style=theme.progress_bar_finished,
                pulse_style=theme.progress_bar_pulse,
            ),
            BatchesProcessedColumn(style=theme.batch_progress),
            CustomTimeColumn(style=theme.time),
        ]

    def train_description(self, epoch: int) -> str:
        return epoch_label(epoch, self.trainer.max_epochs)

    def get_metrics(self, trainer: Trainer, pl_module: LightningModule) -> dict[str, Any]:
        metrics = super().get_metrics(trainer, pl_module)
        shown: dict[str, Any] = {}
        for name in ("loss", "acc"):
            train, val = (metrics.get(f"{split}/{name}") for split in ("train", "val"))
            if train is None and val is None:
                continue
            if train is None:
                shown[name] = f"val {_shown_metric(name, val)}"
            else:
                text = _shown_metric(name, train)
                shown[name] = text if val is None else f"{text} (val {_shown_metric(name, val)})"
        return shown


class BestCheckpoint(ModelCheckpoint):
    """Lightning's ``ModelCheckpoint`` with ``{epoch}`` in file names counted from 1, as litvision shows
    every epoch: ``best-epoch002-...`` was saved at the end of the second epoch."""

    def format_checkpoint_name(
        self,
        metrics: dict[str, Any],
        filename: str | None = None,
        ver: int | None = None,
        prefix: str | None = None,
    ) -> str:
        if "epoch" in metrics:
            metrics = {**metrics, "epoch": int(metrics["epoch"]) + 1}
        return super().format_checkpoint_name(metrics, filename, ver, prefix)

    @property
    def state_key(self) -> str:
        # Lightning's: the state of runs checkpointed before this class existed still finds its way back.
        return super().state_key.replace(type(self).__qualname__, "ModelCheckpoint", 1)


def epoch_label(epoch: int, max_epochs: int | None) -> str:
    """``Epoch 3/20``: the epoch ``epoch`` (Lightning's, counted from 0) counted from 1, of ``max_epochs``."""
    return (
        f"Epoch {epoch + 1}/{max_epochs}"
        if max_epochs is not None and max_epochs > 0
        else f"Epoch {epoch + 1}"
    )


def _shown_metric(name: str, value: Any) -> str:
    return f"{100 * float(value):.1f}%" if name == "acc" else f"{float(value):.3f}"


class TestReport(Callback):
    """After a test run, prints per-class test accuracy as a table and saves it, with the confusion
    matrix and the checkpoint tested, as ``test_results.json`` in the run directory."""

    __test__ = False  # a callback, not a pytest test class

    def __init__(self, filename: str = "test_results.json", many_shot: int = 100, few_shot: int = 20) -> None:
        self.filename = filename
        self.many_shot = many_shot
        self.few_shot = few_shot
        self.ckpt_path: str | None = None

    def on_test_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self.ckpt_path = trainer.ckpt_path

    def on_test_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        # Every rank must ask for log_dir (under DDP it is a collective call); without a logger there is
        # no run directory, and nothing is written.
        log_dir = trainer.log_dir if trainer.loggers else None
        confmat = getattr(pl_module, "confusion", {}).get("test")
        if confmat is None or not trainer.is_global_zero:
            return
        results = self.results(confmat.tolist(), pl_module.class_names)
        datamodule = trainer.datamodule
        counts = getattr(datamodule, "kept_class_counts", None)
        if counts is not None and getattr(datamodule, "imbalance", None) is not None:
            results.update(self.shot_groups(results, counts))
        results["checkpoint"] = self.ckpt_path
        results["epoch"] = getattr(pl_module, "trained_epoch", pl_module.current_epoch)
        results["global_step"] = pl_module.global_step
        Console().print(self.table(results))
        if log_dir is not None:
            path = Path(log_dir) / self.filename
            write_json(path, results)
            Console().print(f"Test results saved to [bold]{path}[/bold]", soft_wrap=True)

    @staticmethod
    def results(confmat: list[list[int]], class_names: list[str]) -> dict[str, Any]:
        """Overall, macro and per-class accuracy (:func:`litvision.metrics.accuracies`) from a confusion
        matrix (rows: true class)."""
        values = {k: v.tolist() for k, v in accuracies(confmat).items()}
        per_class = {
            name: {"acc": acc, "correct": row[i], "support": sum(row)}
            for i, (name, acc, row) in enumerate(zip(class_names, values["acc_class"], confmat))
        }
        return {
            "acc": values["acc"],
            "acc_macro": values["acc_macro"],
            "num_samples": sum(map(sum, confmat)),
            "per_class": per_class,
            "confusion_matrix": confmat,
        }

    def shot_groups(self, results: dict[str, Any], train_counts: list[int]) -> dict[str, Any]:
        """:func:`shot_groups` of the test's per-class accuracy, for runs on imbalanced training sets.
        The counts are the real images kept, noisy copies left out."""
        for v, n in zip(results["per_class"].values(), train_counts):
            v["train_images"] = n
        accuracy = [v["acc"] for v in results["per_class"].values()]
        return {"shot_groups": shot_groups(accuracy, train_counts, self.many_shot, self.few_shot)}

    @staticmethod
    def table(results: dict[str, Any]) -> Table:
        tested = f"checkpoint {Path(results['checkpoint']).name}" if results.get("checkpoint") else None
        table = Table(title=f"Test accuracy per class ({results['num_samples']} images)", caption=tested)
        table.add_column("class")
        table.add_column("accuracy", justify="right")
        table.add_column("correct / images", justify="right")
        for name, v in results["per_class"].items():
            table.add_row(name, f"{100 * v['acc']:.2f}%", f"{v['correct']} / {v['support']}")
        table.add_section()
        table.add_row("[bold]overall[/bold]", f"[bold]{100 * results['acc']:.2f}%[/bold]", "")
        table.add_row("macro (mean of classes)", f"{100 * results['acc_macro']:.2f}%", "")
        for group, v in results.get("shot_groups", {}).items():
            table.add_row(f"{group.replace('_', '-')} classes ({v['classes']})", f"{100 * v['acc']:.2f}%", "")
        return table


class RandomState(Callback):
    """Saves the global random generators' states in checkpoints and restores them when a run resumes,
    just before its first training batch, so that dropout and other model noise continue as if the run
    had never stopped. (The data's randomness is seeded per sample, see data/resumable.py.)"""

    def __init__(self) -> None:
        self._pending: dict[str, Any] | None = None

    def state_dict(self) -> dict[str, Any]:
        _, python, gauss_next = random.getstate()
        states: dict[str, Any] = {"torch": torch.get_rng_state(), "python": list(python)}
        # random.gauss draws its normals in pairs and caches the second: part of the generator's state.
        states["python_gauss"] = gauss_next
        kind, keys, pos, has_gauss, gauss = np.random.get_state()
        states["numpy"] = {
            "keys": torch.from_numpy(keys.astype(np.int64)),
            "pos": pos,
            "gauss": [has_gauss, gauss],
        }
        if torch.cuda.is_available() and torch.cuda.is_initialized():
            states["cuda"] = torch.cuda.get_rng_state_all()
        return states

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self._pending = state_dict

    def on_train_batch_start(
        self, trainer: Trainer, pl_module: LightningModule, batch: Any, batch_idx: int
    ) -> None:
        if self._pending is not None:
            self.restore(self._pending)
            self._pending = None

    @staticmethod
    def restore(states: dict[str, Any]) -> None:
        """Set the global generators to ``states`` (a :meth:`state_dict`)."""
        torch.set_rng_state(states["torch"])
        random.setstate((3, tuple(states["python"]), states.get("python_gauss")))
        numpy = states["numpy"]
        keys = numpy["keys"].numpy().astype(np.uint32)
        np.random.set_state(("MT19937", keys, numpy["pos"], numpy["gauss"][0], numpy["gauss"][1]))
        if "cuda" in states and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(states["cuda"])


class FiniteLossGuard(Callback):
    """Stops training at the first non-finite loss, naming the step, and refuses to write a checkpoint
    whose weights are not finite (an update can diverge after a finite loss): the last good one is kept.

    The loss check reads the GPU only every ``trainer.log_every_n_steps`` steps, at epoch end and before
    a checkpoint is saved; in between, the first bad step is recorded on the device, with no host sync.
    The weights are checked once per checkpoint, with one read of the device, never per step.
    """

    def __init__(self) -> None:
        self._first_bad: torch.Tensor | None = None
        self._lrs: dict[int, list[float]] = {}  # learning rates of the steps since the last check

    def on_train_batch_end(
        self, trainer: Trainer, pl_module: LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        loss = outputs.get("loss") if isinstance(outputs, dict) else outputs
        if not isinstance(loss, torch.Tensor):
            return
        # Filled on the device: torch.tensor(...) would copy from the host, and wait for the GPU.
        step = torch.full((), trainer.global_step, device=loss.device)
        if self._first_bad is None or self._first_bad.device != loss.device:
            self._first_bad = torch.tensor(-1, device=loss.device)
        bad = ~torch.isfinite(loss.detach()) & (self._first_bad < 0)
        self._first_bad = torch.where(bad, step, self._first_bad)
        self._lrs[trainer.global_step] = [g["lr"] for opt in trainer.optimizers for g in opt.param_groups]
        if trainer.global_step % max(trainer.log_every_n_steps, 1) == 0:
            self._check(trainer)

    def on_train_epoch_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self._check(trainer)

    def on_save_checkpoint(
        self, trainer: Trainer, pl_module: LightningModule, checkpoint: dict[str, Any]
    ) -> None:
        self._check(trainer)
        self._check_weights(trainer, pl_module)

    def _check_weights(self, trainer: Trainer, pl_module: LightningModule) -> None:
        """Raise before a checkpoint of non-finite weights (or buffers, e.g. batch-norm statistics) is
        written. Metric states are left out: a running maximum starts at -inf."""
        tensors = {**dict(pl_module.named_parameters()), **dict(pl_module.named_buffers())}
        names = [k for k, v in tensors.items() if v.is_floating_point() and v.numel()]
        if not names:
            return
        # One max-norm per tensor (nan propagates), stacked: one reduction and one host read per save.
        inf = float("inf")
        norms = torch.stack([torch.linalg.vector_norm(tensors[k].detach().float(), inf) for k in names])
        bad = ~torch.isfinite(norms)
        if not int(trainer.strategy.reduce(bad.sum().float(), reduce_op="max")):
            return
        broken = [name for name, b in zip(names, bad.tolist()) if b]
        raise NonFiniteError(
            f"the weights became non-finite (nan or inf) at step {trainer.global_step}, epoch "
            f"{trainer.current_epoch + 1}, in {len(broken)} of {len(names)} tensors (first: '{broken[0]}'); "
            f"no checkpoint of them was written, {self._kept(trainer)}; "
            "lower the learning rate or clip gradients (trainer.gradient_clip_val)"
        )

    @staticmethod
    def _kept(trainer: Trainer) -> str:
        # A callback names its file before writing it: only the files on disk count.
        saved = [
            cb.best_model_path for cb in trainer.checkpoint_callbacks if Path(cb.best_model_path).is_file()
        ]
        last = max(saved, key=lambda p: Path(p).stat().st_mtime, default="")
        return f"the last good checkpoint is '{last}'" if last else "no checkpoint was saved before it"

    def _check(self, trainer: Trainer) -> None:
        if self._first_bad is None:
            return
        first_bad = int(trainer.strategy.reduce(self._first_bad.float(), reduce_op="max"))
        lrs, self._lrs = self._lrs, {}
        if first_bad < 0:
            return
        kept = self._kept(trainer)
        lr = ", ".join(f"{v:g}" for v in sorted(set(lrs.get(first_bad, []))))
        raise NonFiniteError(
            f"the training loss became non-finite (nan or inf) at step {first_bad}, epoch "
            f"{trainer.current_epoch + 1}, with learning rate {lr or '?'}; {kept}; "
            "lower the learning rate or clip gradients (trainer.gradient_clip_val)"
        )


class RunInfo(Callback):
    """Writes ``run_info.json`` in the run directory: what made the run (package version, git commit,
    library versions, device, seed, the data split's checksum) and, per session (a resume is a new
    session), when it started, ended and how. A session's wall time is brought up to date at each
    checkpoint, so that one killed without ending (a lost job, a machine stopped) still counts the time
    up to the checkpoint the next session resumes from; the next session marks it ``killed``.

    With it and ``config.yaml`` any reported number can be traced to the code, config and data that
    produced it."""

    def __init__(self, filename: str = "run_info.json") -> None:
        self.filename = filename
        self._path: Path | None = None
        self._info: dict[str, Any] = {}
        self._started = 0.0

    def on_fit_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        log_dir = trainer.log_dir if trainer.loggers else None  # a collective call under DDP
        if log_dir is None or not trainer.is_global_zero:
            return
        self._path = Path(log_dir) / self.filename
        previous = json.loads(self._path.read_text()) if self._path.is_file() else {}
        seed = os.environ.get("PL_GLOBAL_SEED")
        resumed = f", resumed from {trainer.ckpt_path}" if trainer.ckpt_path else ""
        Console().print(f"Run [bold]{log_dir}[/bold] (seed {seed}{resumed})", soft_wrap=True, highlight=False)
        self._started = time.time()
        info = {**previous, **self.describe(trainer, pl_module)}
        session = {
            "started_at": now(),
            "resumed_from": trainer.ckpt_path,
            "finished_at": None,
            "status": "running",
        }
        ended = [
            {**s, "status": "killed"} if s.get("status") == "running" else s
            for s in previous.get("sessions", [])
        ]
        info["sessions"] = [*ended, session]
        info.setdefault("started_at", session["started_at"])
        self._info = info
        self._write()

    def on_save_checkpoint(
        self, trainer: Trainer, pl_module: LightningModule, checkpoint: dict[str, Any]
    ) -> None:
        if self._path is not None and self._info.get("sessions"):
            self._time(self._info["sessions"][-1])
            self._write()

    def on_fit_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self._end(trainer, "interrupted" if trainer.interrupted else "finished")

    def on_exception(self, trainer: Trainer, pl_module: LightningModule, exception: BaseException) -> None:
        if isinstance(exception, (KeyboardInterrupt, SIGTERMException)):  # stopped on purpose: it resumes
            self._end(trainer, "interrupted")
            return
        self._end(trainer, f"failed: {(str(exception).splitlines() or [type(exception).__name__])[0]}")
        if trainer.state.fn == "fit" and trainer.ckpt_path is None:
            self._remove_if_empty(trainer)

    def _remove_if_empty(self, trainer: Trainer) -> None:
        """Remove what a new run that failed before its first checkpoint wrote (its TensorBoard events,
        config, hyperparameters, run_info.json), and its directory if nothing else is there: nothing in
        it can be resumed or tested, and an empty run would sit in TensorBoard's list. (The error says
        why.) Files of others, such as a reproduction's log, stay."""
        logger = trainer.logger
        log_dir = getattr(logger, "log_dir", None) if trainer.is_global_zero else None  # no collective call
        if log_dir is None or not Path(log_dir).is_dir() or any(Path(log_dir).glob("checkpoints/*.ckpt")):
            return
        if hasattr(logger, "discard"):
            logger.discard()  # closes its event file and writes nothing more
        run = Path(log_dir)
        for path in [*run.glob("events.out.tfevents.*"), *(run / n for n in ("config.yaml", "hparams.yaml"))]:
            path.unlink(missing_ok=True)
        (run / self.filename).unlink(missing_ok=True)
        self._path = None
        for folder in (run / "checkpoints", run, run.parent, run.parent.parent):  # the name, the log root
            with contextlib.suppress(OSError):  # not empty: other runs or others' files are there
                folder.rmdir()

    def _end(self, trainer: Trainer, status: str) -> None:
        if status != "interrupted":  # a run stopped to be resumed is not over
            for logger in trainer.loggers:
                if hasattr(logger, "end_session"):
                    logger.end_session(failed=status != "finished")
        if self._path is None or not self._info.get("sessions"):
            return
        session = self._info["sessions"][-1]
        if session["finished_at"] is not None:
            return
        session.update(finished_at=now(), status=status)
        self._time(session)
        self._info.update(
            finished_at=session["finished_at"], epochs=trainer.current_epoch, global_step=trainer.global_step
        )
        self._write()

    def _time(self, session: dict[str, Any]) -> None:
        """The session's wall time so far, and the run's over its sessions."""
        session["wall_time_s"] = round(time.time() - self._started, 3)
        self._info["wall_time_s"] = round(sum(s.get("wall_time_s", 0.0) for s in self._info["sessions"]), 3)

    def _write(self) -> None:
        assert self._path is not None
        write_json(self._path, self._info)

    @staticmethod
    def describe(trainer: Trainer, pl_module: LightningModule) -> dict[str, Any]:
        import platform
        import sys

        import lightning

        import litvision

        datamodule = trainer.datamodule
        splits = getattr(datamodule, "split_indices", {}) or {}
        digest = hashlib.sha256()
        for name in sorted(splits):
            digest.update(name.encode())
            digest.update(np.asarray(splits[name], dtype=np.int64).tobytes())
        device = trainer.strategy.root_device
        counts = getattr(datamodule, "train_class_counts", None)  # noisy copies included
        return {
            "litvision_version": litvision.__version__,
            **git_state(),
            "python": sys.version.split()[0],
            "torch_version": torch.__version__,
            "lightning_version": lightning.__version__,
            "platform": platform.platform(),
            "device": torch.cuda.get_device_name(device) if device.type == "cuda" else device.type,
            "num_devices": trainer.world_size,
            "precision": str(trainer.precision),
            "compile": getattr(pl_module, "compiled_mode", None),  # torch.compile's mode; None: eager
            "seed": int(os.environ["PL_GLOBAL_SEED"]) if "PL_GLOBAL_SEED" in os.environ else None,
            "num_parameters": sum(p.numel() for p in pl_module.parameters()),
            "split_checksum": digest.hexdigest() if splits else None,
            "split_sizes": {name: len(idx) for name, idx in splits.items()},
            "train_class_counts": dict(zip(datamodule.class_names, counts)) if counts is not None else None,
        }
