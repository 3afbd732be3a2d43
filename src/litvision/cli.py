"""The command line: ``litvision`` (also installed as ``lightning``) runs Lightning's CLI on
:class:`ImageClassifier` and any :class:`ImageDataModule`, with the project's defaults."""

from __future__ import annotations

import inspect
import logging
import os
import signal
import sys
import warnings
from pathlib import Path
from typing import Any

import torch
from jsonargparse import Namespace
from lightning.pytorch import Callback, Trainer
from lightning.pytorch.callbacks import LearningRateMonitor, ModelCheckpoint
from lightning.pytorch.cli import LightningArgumentParser, LightningCLI, SaveConfigCallback
from lightning.pytorch.utilities.exceptions import SIGTERMException

from litvision.callbacks import (
    BestCheckpoint,
    FiniteLossGuard,
    ModelSummary,
    ProgressBar,
    RandomState,
    RunInfo,
    TestReport,
    quiet_console,
)
from litvision.checkpoint_io import with_atomic_checkpoints
from litvision.data import ImageDataModule, ImageFolderDataModule
from litvision.errors import LitvisionError, one_line_errors
from litvision.loggers import TensorBoardLogger, data_name, run_name
from litvision.module import ImageClassifier
from litvision.parsing import HelpFormatter, OneLineErrors
from litvision.predict import PREDICT, PREDICT_LONG, PREDICT_USAGE, PredictionWriter, run_dir_arguments
from litvision.private_api import cli_build_trainer, cli_callback_keys
from litvision.utils import load_checkpoint

DEFAULT_SEED = 42
DEFAULT_BACKBONE = {"class_path": "litvision.models.CifarResNet", "init_args": {"width": 16, "stem": "auto"}}
DEFAULT_EPOCHS = 20
COMMANDS = (
    "litvision: train and evaluate image classifiers with Lightning (fit, validate, test, predict, below). "
    "Three more commands: 'litvision analyze TOOL RUN_DIR' draws figures and tables of finished runs "
    "(t-SNE, feature maps, confusion, SVM head, re-balancing, curves, compare, loss landscape); "
    "'litvision reproduce' reruns the reports' experiments and writes the reproduction report; "
    "'litvision search' runs a hyperparameter search (Optuna) over any config key. Each takes --help."
)
FIT = (
    "Train a model, then test its best checkpoint. Without a config it trains the default network (a "
    f"ResNet-18 layout whose stem suits the image size) for {DEFAULT_EPOCHS} epochs, as in "
    "'litvision fit --data=litvision.data.ImageFolderDataModule --data.data_dir=photos'; a config "
    "(--config configs/NAME.yaml) sets everything at once. KEY.help CLASS shows the options of a class "
    "(--data.help ImageFolderDataModule, --model.backbone.help CifarResNet)."
)
# Titles of the option groups of `fit --help` (Lightning's come from each class's docstring).
GROUP_TITLES = {
    "model": "Model: the network and how it learns (--model.OPTION VALUE)",
    "data": "Data: the dataset class (--data CLASS) and its options (--data.OPTION VALUE)",
    "trainer": "Trainer: Lightning's (https://lightning.ai/docs/pytorch/stable/common/trainer.html)",
    "checkpoint": "Checkpoints: the best by validation accuracy (Lightning's ModelCheckpoint)",
    "predictions": "Predictions: the file 'litvision predict' writes",
}


class LitvisionHelpFormatter(HelpFormatter):
    # Lightning's own options: their first sentence, the rest is in Lightning's documentation.
    brief_prefixes = (
        "trainer.", "checkpoint.", "seed_everything", "ckpt_path", "weights_only", "print_config",
    )  # fmt: skip


class LitvisionArgumentParser(OneLineErrors, LightningArgumentParser):
    """Lightning's parser with litvision's one-line errors and no abbreviated options."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("formatter_class", LitvisionHelpFormatter)
        super().__init__(*args, **kwargs)


class LitvisionCLI(LightningCLI):
    """LightningCLI with the datamodule's shape linked into the model, checkpoints of the best
    validation accuracy plus ``last``, runs named after their config, and a test of the best
    checkpoint after ``fit``."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("model_class", ImageClassifier)
        kwargs.setdefault("datamodule_class", ImageDataModule)
        kwargs.setdefault("subclass_mode_data", True)
        kwargs.setdefault("seed_everything_default", DEFAULT_SEED)
        # The optimizer and scheduler are arguments of ImageClassifier (``model.optimizer``,
        # ``model.lr_scheduler``), built when the trainer is known, so OneCycleLR can span the fit.
        kwargs.setdefault("auto_configure_optimizers", False)
        # Callbacks given by the caller are added to the project's; other trainer defaults override them.
        given = dict(kwargs.pop("trainer_defaults", None) or {})
        if torch.cuda.is_available() and torch.cuda.is_bf16_supported():
            # bf16 autocast: about twice the float32 speed on tensor cores, with float32's range (no loss
            # scaling); --trainer.precision 32-true turns it off.
            given.setdefault("precision", "bf16-mixed")
        callbacks = [*self.default_callbacks(), *given.pop("callbacks", [])]
        kwargs["trainer_defaults"] = {"logger": self.default_logger(), **given, "callbacks": callbacks}
        kwargs["parser_kwargs"] = {
            "prog": _prog(),
            "default_env": False,
            "description": COMMANDS,
            "fit": {"description": FIT},
            "predict": {"description": f"{PREDICT} {PREDICT_LONG.split(';')[0]}.", "usage": PREDICT_USAGE},
            **kwargs.get("parser_kwargs", {}),
        }
        kwargs.setdefault("save_config_callback", KeepingSaveConfigCallback)
        kwargs.setdefault("parser_class", LitvisionArgumentParser)
        super().__init__(*args, **kwargs)

    @staticmethod
    def default_logger() -> dict[str, Any]:
        # name None: the run is named after its config file (see _name_run_after_config).
        return {
            "class_path": "litvision.loggers.TensorBoardLogger",
            "init_args": {"save_dir": "lightning_logs", "name": None},
        }

    @staticmethod
    def default_callbacks() -> list[Callback]:
        return [
            LearningRateMonitor(logging_interval="epoch"),
            ProgressBar(),
            TestReport(),
            RunInfo(),
            RandomState(),
            FiniteLossGuard(),
            ModelSummary(),
        ]

    def instantiate_trainer(self, **kwargs: Any) -> Trainer:
        init = self.config_init[self.subcommand] if self.subcommand else self.config_init
        config = {**(init.get("trainer") or {}), **kwargs}
        # The project's callbacks step aside where the trainer's own flags turn their feature off
        # (Lightning refuses a progress bar with enable_progress_bar=False, and so on).
        off: list[type[Callback]] = []
        if config.get("enable_progress_bar") is False:
            off.append(ProgressBar)
        if config.get("enable_checkpointing") is False:
            off.append(ModelCheckpoint)
        if config.get("enable_model_summary") is False:
            off.append(ModelSummary)
        if config.get("logger") in (False, None, []):
            off.append(LearningRateMonitor)
        wanted = [cb for cb in self.trainer_defaults["callbacks"] if not isinstance(cb, tuple(off))]
        self.trainer_defaults["callbacks"] = wanted
        forced = [init[key] for key in cli_callback_keys(self)]
        if config.get("enable_checkpointing") is not False:
            forced += last_checkpoint_callbacks(init.get("checkpoint_every_n_steps") or 0)
        # A kill while a checkpoint is written (a cluster's preemption) leaves the previous one whole.
        config["plugins"] = with_atomic_checkpoints(config.get("plugins"), config.get("strategy"))
        trainer = cli_build_trainer(self, config, [cb for cb in forced if not isinstance(cb, tuple(off))])
        data = (self.config[self.subcommand] if self.subcommand else self.config).get("data")
        seed = os.environ.get("PL_GLOBAL_SEED")
        for logger in trainer.loggers:
            if isinstance(logger, TensorBoardLogger):
                logger.describe_run(data_name(data), trainer.max_epochs, int(seed) if seed else None)
        return trainer

    def add_core_arguments_to_parser(self, parser: LightningArgumentParser) -> None:
        # Lightning's order, but the model and the data first: what a user of litvision reads first in
        # `fit --help`, before the trainer's many options.
        parser.add_lightning_class_args(self.model_class, "model", subclass_mode=self.subclass_mode_model)
        parser.add_lightning_class_args(self.datamodule_class, "data", subclass_mode=self.subclass_mode_data)
        parser.add_lightning_class_args(self.trainer_class, "trainer")
        parser.set_defaults({f"trainer.{k}": v for k, v in self.trainer_defaults.items() if k != "callbacks"})

    def add_arguments_to_parser(self, parser: LightningArgumentParser) -> None:
        for key in ("num_classes", "input_shape", "class_names"):
            parser.link_arguments(f"data.{key}", f"model.{key}", apply_on="instantiate")
        # A fit without a config trains this network: a ResNet-18 layout at a quarter of its width (0.7 M
        # parameters, for a CPU and small folders), whose stem suits the image size (CifarResNet's "auto").
        parser.set_defaults({"model.backbone": DEFAULT_BACKBONE})
        parser.add_lightning_class_args(BestCheckpoint, "checkpoint")
        parser.add_lightning_class_args(PredictionWriter, "predictions")
        parser.set_defaults(
            {
                "checkpoint.monitor": "val/acc",
                "checkpoint.mode": "max",
                "checkpoint.save_last": False,  # last.ckpt is written by last_checkpoint_callbacks()
                "checkpoint.filename": "best-epoch{epoch:03d}-val_acc{val/acc:.4f}",
                "checkpoint.auto_insert_metric_name": False,
            }
        )
        parser.add_argument(
            "--checkpoint_every_n_steps",
            type=int,
            default=0,
            help="Also save checkpoints/last.ckpt every N training steps, mid-epoch, so that a crashed run "
            "resumes (--ckpt_path last) losing at most N steps; 0: checkpoints at epoch ends only.",
        )
        for key, title in GROUP_TITLES.items():
            parser.groups[key].title = title
        parser.groups["data"].description = _data_options()
        # Not required: it has a default, the network a config-less fit trains.
        next(a for a in parser._actions if a.dest == "model.backbone").required = False
        parser.add_argument(
            "--test_after_fit",
            type=bool,
            default=True,
            help="After fit, test the best checkpoint (by val/acc; the last weights if there is no "
            "validation split) and save per-class results in the run directory.",
        )

    def parse_arguments(self, parser: LightningArgumentParser, args: Any) -> None:
        super().parse_arguments(parser, args)
        # Lightning reads the checkpoint's hyperparameters next; check it first, for a one-line error.
        subcommand = self.config.get("subcommand")
        ckpt_path = self.config[subcommand].get("ckpt_path") if subcommand else None
        if ckpt_path and Path(str(ckpt_path)).is_file():
            load_checkpoint(str(ckpt_path))

    def before_instantiate_classes(self) -> None:
        config = self.config[self.subcommand] if self.subcommand else self.config
        every = config.get("checkpoint_every_n_steps", 0) or 0
        if every < 0:
            raise LitvisionError(f"checkpoint_every_n_steps={every} is invalid: use 0 (off) or a step count")
        if self.subcommand in ("fit", None):  # None: run=False, for a fit the caller starts
            _check_epochs(config)
        _name_run_after_config(config)
        if self.subcommand in ("validate", "test", "predict"):
            # Nothing trains: no checkpoint callbacks, whose state Lightning would restore from the checkpoint
            # (warning that their folder changed), nor a warning that they are missing.
            config["trainer.enable_checkpointing"] = False
            warnings.filterwarnings("ignore", message="Be aware that when using `ckpt_path`, callbacks used")
        if self.subcommand == "predict":
            # A prediction logs no metric: no TensorBoard run (it would be an empty one in the run list)
            # and no config.yaml; predictions.csv goes to the checkpoint's run directory.
            config["trainer.logger"] = False
            self.save_config_callback = None
        if config.get("ckpt_path"):
            _resume_in_place(config, fit=self.subcommand == "fit")

    def after_instantiate_classes(self) -> None:
        check_options = getattr(self.datamodule, "check_options", None)
        if check_options is not None:
            check_options()
        check_datamodule = getattr(self.model, "check_datamodule", None)
        if check_datamodule is not None:
            check_datamodule(self.datamodule)
        check_trainer = getattr(self.model, "check_trainer", None)
        if check_trainer is not None:
            check_trainer(self.trainer)

    def after_fit(self) -> None:
        config = self.config[self.subcommand]
        if not config.get("test_after_fit", True) or self.trainer.interrupted:
            return
        checkpoint = self.trainer.checkpoint_callback
        best = checkpoint.best_model_path if checkpoint is not None else ""
        # Testing a checkpoint restores the checkpoint callbacks' state as it was when it was saved; the
        # run's own (last.ckpt, the best k) is what a user reads afterwards.
        states = [(cb, cb.state_dict()) for cb in self.trainer.checkpoint_callbacks]
        # The test report names the checkpoint: Lightning's two lines about restoring it are left out.
        restoring = logging.getLogger("lightning.pytorch.utilities.rank_zero")
        restoring.addFilter(_not_restoring)
        try:
            self.trainer.test(self.model, datamodule=self.datamodule, ckpt_path=best or None, verbose=False)
        finally:
            restoring.removeFilter(_not_restoring)
        for callback, state in states:
            callback.load_state_dict(state)


def _not_restoring(record: logging.LogRecord) -> bool:
    return not record.getMessage().startswith(
        ("Restoring states from the checkpoint", "Loaded model weights")
    )


def _check_epochs(config: Namespace) -> None:
    """Train ``DEFAULT_EPOCHS`` epochs when nothing says how long (Lightning would train 1000); refuse an
    epoch count that trains no epoch or never ends: Lightning reads -1 as "no end" (then max_steps or
    max_time must end the fit) and takes any other negative number the same way."""
    epochs = config.get("trainer.max_epochs")
    bounded = (config.get("trainer.max_steps") or -1) > 0 or config.get("trainer.max_time") is not None
    if epochs is None and not bounded:
        config["trainer.max_epochs"] = DEFAULT_EPOCHS
    if epochs is None or epochs >= 1 or (epochs == -1 and bounded):
        return
    raise LitvisionError(
        f"trainer.max_epochs={epochs} is invalid: give the number of epochs to train, 1 or more "
        "(-1 trains with no end of epochs, with trainer.max_steps or trainer.max_time to stop it)"
    )


def _data_options() -> str:
    """The options every dataset takes, named for `fit --help` (each dataset's own: --data.help CLASS)."""

    def options(cls: type) -> list[str]:
        return [p for p in inspect.signature(cls.__init__).parameters if p not in ("self", "kwargs")]

    shared = options(ImageDataModule)
    own = [p for p in options(ImageFolderDataModule) if p not in shared]
    return (
        f"Every dataset takes {', '.join(shared)}; ImageFolderDataModule (your images) also "
        f"{', '.join(own)}. --data.help CLASS describes a dataset's options."
    )


def _name_run_after_config(config: Namespace) -> None:
    """Name an unnamed TensorBoard run after its last config file, lightning_logs/<config>/version_N, or
    without one after its data and network: lightning_logs/photos-CifarResNet/version_N."""
    logger = config.get("trainer.logger")
    if not isinstance(logger, Namespace) or not str(logger.get("class_path", "")).endswith(
        "TensorBoardLogger"
    ):
        return
    if logger.get("init_args.name") is None:
        logger["init_args.name"] = default_name(config)


def default_name(config: Namespace) -> str:
    """The name of a run (or a search's study) given none: its last config file's, else its data's and
    network's (``photos-CifarResNet``)."""
    config_files = [c for c in (config.get("config") or []) if c is not None]
    if config_files:
        return Path(str(config_files[-1])).stem
    return run_name(config.get("data"), config.get("model.backbone"))


def last_checkpoint_callbacks(every_n_steps: int = 0) -> list[ModelCheckpoint]:
    """Checkpoints that keep ``checkpoints/last.ckpt`` current: at every epoch end and, if
    ``every_n_steps`` > 0, every that many training steps. (Lightning's own ``save_last`` refreshes it only
    when a best checkpoint is saved too; a resumed run needs the latest state whatever the metric did.)"""
    callbacks = [ModelCheckpoint(filename="last", monitor=None, save_top_k=1, enable_version_counter=False)]
    if every_n_steps > 0:
        callbacks.append(
            ModelCheckpoint(
                filename="last",
                monitor=None,
                save_top_k=1,
                every_n_train_steps=every_n_steps,
                enable_version_counter=False,
            )
        )
    return callbacks


class KeepingSaveConfigCallback(SaveConfigCallback):
    """Saves the resolved config as ``config.yaml`` in the run directory; a resumed run, which writes
    into the same directory, keeps it and saves its own as ``config.resume-N.yaml``."""

    def setup(self, trainer: Trainer, pl_module: Any, stage: str) -> None:
        log_dir = trainer.log_dir if trainer.loggers and not self.already_saved else None
        resuming = bool(self.config.get("ckpt_path"))
        if log_dir is not None and resuming and (Path(log_dir) / self.config_filename).exists():
            n = 1
            while (Path(log_dir) / f"config.resume-{n}.yaml").exists():
                n += 1
            self.config_filename = f"config.resume-{n}.yaml"
        super().setup(trainer, pl_module, stage)


def _resume_in_place(config: Namespace, fit: bool) -> None:
    """Check the checkpoint (safely: tensors and plain data only) and, when fitting from one of a run
    directory's checkpoints, continue that run: same directory, same TensorBoard run.

    ``--ckpt_path last`` picks the newest version of this config's runs that holds ``last.ckpt``. The
    TensorBoard writer purges the steps logged after the checkpoint, so the curves have no duplicates.
    """
    ckpt_path = str(config["ckpt_path"])
    logger = config.get("trainer.logger")
    tensorboard = isinstance(logger, Namespace) and str(logger.get("class_path", "")).endswith(
        "TensorBoardLogger"
    )
    if ckpt_path in ("last", "best", "hpc", "registry") or ckpt_path.startswith("registry:"):
        if ckpt_path != "last" or not fit or not tensorboard:
            return  # Lightning's own resolution
        runs = Path(str(logger["init_args.save_dir"])) / str(logger["init_args.name"])
        candidates = sorted(
            runs.glob("*/checkpoints/last.ckpt"), key=lambda p: p.stat().st_mtime, reverse=True
        )
        if not candidates:
            raise LitvisionError(
                f"--ckpt_path last: no run to resume, '{runs}' holds no */checkpoints/last.ckpt; "
                "give a checkpoint file, or start without --ckpt_path"
            )
        ckpt_path = str(candidates[0])
        config["ckpt_path"] = ckpt_path
    checkpoint = load_checkpoint(ckpt_path)
    # Not resolved: the checkpoint callbacks restore their state only if their directory is spelled the same.
    run_dir = Path(ckpt_path).parent.parent
    if not (fit and tensorboard and (run_dir / "config.yaml").is_file()):
        return  # a checkpoint from elsewhere: a new run that starts from its weights and state
    logger["init_args.save_dir"] = str(run_dir.parent.parent)
    logger["init_args.name"] = run_dir.parent.name
    logger["init_args.version"] = run_dir.name
    loop = checkpoint.get("loops", {}).get("fit_loop", {}).get("epoch_loop.state_dict", {})
    logged = int(loop.get("_batches_that_stepped", checkpoint.get("global_step", 0)))
    # Events at steps after the checkpoint came from the lost part of the run: TensorBoard drops them.
    logger["init_args.purge_step"] = logged + 1


def main(args: list[str] | None = None) -> None:
    """Training: Lightning's CLI on :class:`LitvisionCLI` (``litvision.commands.main`` dispatches here)."""
    # Lightning's own use of a deprecated torch API; nothing a user can act on.
    warnings.filterwarnings("ignore", message=r".*isinstance\(treespec, LeafSpec\).*")
    quiet_console()
    if torch.cuda.is_available():
        torch.set_float32_matmul_precision("high")
    argv = sys.argv[1:] if args is None else list(args)
    with one_line_errors(_prog()):
        if argv[:1] == ["predict"] and len(argv) > 1 and not argv[1].startswith("-"):
            args = run_dir_arguments(argv[1:])  # litvision predict RUN_DIR ...
        # An error in a datamodule's constructor reaches us wrapped by the argument parser.
        try:
            LitvisionCLI(args=args)
        except SIGTERMException:  # a SystemExit without a status: a script would take it for success
            print(f"{_prog()}: stopped by SIGTERM; --ckpt_path last resumes the run", file=sys.stderr)
            raise SystemExit(128 + signal.SIGTERM) from None


def _prog() -> str:
    prog = Path(sys.argv[0]).name
    return "litvision" if prog in ("__main__.py", "-c", "") else prog  # python -m litvision
