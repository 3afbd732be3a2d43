"""The command line: ``litvision`` (also installed as ``lightning``) runs Lightning's CLI on
:class:`ImageClassifier` and any :class:`ImageDataModule`, with the project's defaults."""

from __future__ import annotations

import sys
import warnings
from pathlib import Path
from typing import Any

import torch
from jsonargparse import Namespace
from lightning.pytorch import Callback, Trainer
from lightning.pytorch.callbacks import (
    LearningRateMonitor,
    ModelCheckpoint,
    RichModelSummary,
    RichProgressBar,
)
from lightning.pytorch.cli import LightningArgumentParser, LightningCLI

from litvision.callbacks import TestReport
from litvision.data import ImageDataModule
from litvision.errors import LitvisionError
from litvision.module import ImageClassifier

DEFAULT_SEED = 42


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
        callbacks = [*self.default_callbacks(), *given.pop("callbacks", [])]
        kwargs["trainer_defaults"] = {"logger": self.default_logger(), **given, "callbacks": callbacks}
        kwargs.setdefault("parser_kwargs", {"default_env": False})
        super().__init__(*args, **kwargs)

    @staticmethod
    def default_logger() -> dict[str, Any]:
        # name None: the run is named after its config file (see _name_run_after_config).
        return {
            "class_path": "lightning.pytorch.loggers.TensorBoardLogger",
            "init_args": {"save_dir": "lightning_logs", "name": None},
        }

    @staticmethod
    def default_callbacks() -> list[Callback]:
        return [
            LearningRateMonitor(logging_interval="epoch"),
            RichProgressBar(),
            RichModelSummary(max_depth=1),
            TestReport(),
        ]

    def instantiate_trainer(self, **kwargs: Any) -> Trainer:
        config = {**self._get(self.config_init, "trainer", default={}), **kwargs}
        # The project's callbacks step aside where the trainer's own flags turn their feature off
        # (Lightning refuses a progress bar with enable_progress_bar=False, and so on).
        off: list[type[Callback]] = []
        if config.get("enable_progress_bar") is False:
            off.append(RichProgressBar)
        if config.get("enable_model_summary") is False:
            off.append(RichModelSummary)
        if config.get("enable_checkpointing") is False:
            off.append(ModelCheckpoint)
        if config.get("logger") in (False, None, []):
            off.append(LearningRateMonitor)
        wanted = [cb for cb in self.trainer_defaults["callbacks"] if not isinstance(cb, tuple(off))]
        self.trainer_defaults["callbacks"] = wanted
        forced = [self._get(self.config_init, key) for key in self._parser(self.subcommand).callback_keys]
        return self._instantiate_trainer(config, [cb for cb in forced if not isinstance(cb, tuple(off))])

    def add_arguments_to_parser(self, parser: LightningArgumentParser) -> None:
        for key in ("num_classes", "input_shape", "class_names"):
            parser.link_arguments(f"data.{key}", f"model.{key}", apply_on="instantiate")
        parser.add_lightning_class_args(ModelCheckpoint, "checkpoint")
        parser.set_defaults(
            {
                "checkpoint.monitor": "val/acc",
                "checkpoint.mode": "max",
                "checkpoint.save_last": True,
                "checkpoint.filename": "best-epoch{epoch:03d}-val_acc{val/acc:.4f}",
                "checkpoint.auto_insert_metric_name": False,
            }
        )
        parser.add_argument(
            "--test_after_fit",
            type=bool,
            default=True,
            help="After fit, test the best checkpoint (by val/acc; the last weights if there is no "
            "validation split) and save per-class results in the run directory.",
        )

    def before_instantiate_classes(self) -> None:
        config = self.config[self.subcommand] if self.subcommand else self.config
        _name_run_after_config(config)

    def after_instantiate_classes(self) -> None:
        check_options = getattr(self.datamodule, "check_options", None)
        if check_options is not None:
            check_options()

    def after_fit(self) -> None:
        config = self.config[self.subcommand]
        if not config.get("test_after_fit", True) or self.trainer.interrupted:
            return
        checkpoint = self.trainer.checkpoint_callback
        best = checkpoint.best_model_path if checkpoint is not None else ""
        self.trainer.test(self.model, datamodule=self.datamodule, ckpt_path=best or None, verbose=False)


def _name_run_after_config(config: Namespace) -> None:
    """Name an unnamed TensorBoard run after its last config file: lightning_logs/<config>/version_N."""
    logger = config.get("trainer.logger")
    if not isinstance(logger, Namespace) or not str(logger.get("class_path", "")).endswith(
        "TensorBoardLogger"
    ):
        return
    if logger.get("init_args.name") is not None:
        return
    config_files = [c for c in (config.get("config") or []) if c is not None]
    name = Path(str(config_files[-1])).stem if config_files else "default"
    logger["init_args.name"] = name


def main(args: list[str] | None = None) -> None:
    """Entry point of ``litvision``, ``lightning`` and ``python -m litvision``."""
    # Lightning's own use of a deprecated torch API; nothing a user can act on.
    warnings.filterwarnings("ignore", message=r".*isinstance\(treespec, LeafSpec\).*")
    argv = sys.argv[1:] if args is None else list(args)
    if argv[:1] == ["analyze"]:  # analysis tools: never imported by training
        from litvision.analysis.cli import main as analyze

        analyze(argv[1:])
        return
    if torch.cuda.is_available():
        torch.set_float32_matmul_precision("high")
    try:
        LitvisionCLI(args=args)
    except Exception as err:
        # An error in a datamodule's constructor reaches us wrapped by the argument parser.
        cause = _litvision_cause(err)
        if cause is None:
            raise
        print(f"{Path(sys.argv[0]).name}: error: {cause}", file=sys.stderr)
        raise SystemExit(1) from None


def _litvision_cause(err: BaseException | None) -> LitvisionError | None:
    seen = set()
    while err is not None and id(err) not in seen:
        if isinstance(err, LitvisionError):
            return err
        seen.add(id(err))
        err = err.__cause__ or err.__context__
    return None
