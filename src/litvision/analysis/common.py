"""What the analysis tools share: a run opened from the command line, the images of a split, features
extracted from them, and a tool's figures and tables written together once all are computed."""

from __future__ import annotations

import inspect
import json
import logging
import warnings
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
import yaml
from jsonargparse import ActionYesNo, Namespace
from matplotlib.figure import Figure
from torch import Tensor, nn
from torch.utils.data import DataLoader, Dataset

from litvision.data.base import ImageDataModule
from litvision.data.memory import as_batch, yields_batches
from litvision.errors import LitvisionError
from litvision.parsing import Parser
from litvision.plotting import plt
from litvision.runs import Run, load_run
from litvision.utils import csv_text, import_object

# Which vector of a network the feature-based tools read: ``pooled_features`` or what feeds the last
# linear layer (``pre_logits`` of it); the two differ where the head is an MLP.
FEATURES = ("pooled", "pre-logits")


def add_run_arguments(parser: Parser) -> None:
    """The options of every tool that reads one run: which run, checkpoint, data, device and output."""
    parser.add_argument(
        "run_dir", type=Path, help="run directory, as fit writes it: lightning_logs/<config>/version_N"
    )
    parser.add_argument(
        "--checkpoint", default="best", help="'best' (highest val/acc), 'last' or a .ckpt path"
    )
    add_data_arguments(parser)
    add_device_argument(parser, "where the model runs")
    parser.add_argument("--output", type=Path | None, help="folder for the files (default: RUN_DIR/analysis)")
    parser.add_argument(
        "--tensorboard", action=ActionYesNo, default=True, help="add the figures to the run's TensorBoard"
    )


def add_data_arguments(parser: Parser) -> None:
    """``--data_dir`` and ``--data.KEY=VALUE``: what replaces arguments of the datamodule a tool builds."""
    parser.add_argument(
        "--data_dir", type=str | None, help="where the data is now (replaces the datamodule's data_dir)"
    )
    parser.add_argument(
        "--data", type=dict[str, Any], default={},
        help="replace other arguments of the datamodule, e.g. --data.num_workers=0 --data.batch_size=512",
    )  # fmt: skip


def add_device_argument(parser: Parser, what: str) -> None:
    parser.add_argument(
        "--device", default="cuda" if torch.cuda.is_available() else "cpu",
        help=f"{what} (default: cuda when available, else cpu)",
    )  # fmt: skip


@dataclass(frozen=True)
class Tool:
    """What an analysis tool declares: its command name, the figures it writes into its output folder
    (globs) and the file that shows it ran to the end (None: nothing a plan can wait for, as for
    ``compare``; ``rebalance`` writes a table only, and declares its JSON), and whether that file holds
    accuracies."""

    name: str
    figures: tuple[str, ...] = ()
    done: str | None = None
    scores: bool = False  # its ``done`` file holds accuracies (a reproduction runs it on every seed)


def add_features_argument(parser: Parser, default: str) -> None:
    parser.add_argument(
        "--features",
        type=Literal[FEATURES],
        default=default,
        help="pooled: pooled_features (the pooled penultimate features); pre-logits: the input of the "
        f"last linear layer, which differs where the head is an MLP (default: {default})",
    )


def resolve_device(name: str) -> torch.device:
    try:
        device = torch.device(name)
    except RuntimeError:
        raise LitvisionError(f"--device {name!r} is not a device: use cpu or cuda") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise LitvisionError("--device cuda: no CUDA device is available here; use --device cpu")
    return device


def data_overrides(args: Namespace) -> dict[str, Any]:
    """``--data.KEY=VALUE`` and ``--data_dir`` as datamodule arguments, checked against the run's
    datamodule class so that a typo is named instead of reaching the config parser."""
    config_file = Path(args.run_dir) / "config.yaml"
    if not config_file.is_file():
        return {}  # load_run explains what is missing
    class_path = (yaml.safe_load(config_file.read_text()).get("data") or {}).get("class_path", "")
    return parse_data_arguments(args.data, args.data_dir, class_path)


def parse_data_arguments(items: dict[str, Any], data_dir: str | None, class_path: str) -> dict[str, Any]:
    """Datamodule arguments and a data directory, checked against the arguments of a datamodule class."""
    overrides = dict(items)
    if data_dir is not None:
        overrides["data_dir"] = data_dir
    allowed = datamodule_arguments(class_path)
    unknown = sorted(set(overrides) - allowed) if allowed else []
    if unknown:
        raise LitvisionError(
            f"--data.{unknown[0]} is not an argument of {class_path.rsplit('.', 1)[-1]}: "
            f"use one of {', '.join(sorted(allowed))}"
        )
    return overrides


def datamodule_arguments(class_path: str) -> set[str]:
    """The constructor arguments of a datamodule class, its base classes' included (empty if unknown)."""
    try:
        cls = import_object(class_path)
    except LitvisionError:
        return set()
    names: set[str] = set()
    for klass in cls.__mro__:
        if "__init__" in vars(klass) and issubclass(klass, ImageDataModule):
            for p in inspect.signature(klass.__init__).parameters.values():
                if p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD) and p.name != "self":
                    names.add(p.name)
    return names


@contextmanager
def quiet_lightning() -> Iterator[None]:
    """Lightning's banners ("GPU available", seeds, tips) and loader warnings silenced: an analysis tool
    builds trainers and loaders as a means, and their messages would bury its own."""
    loggers = [logging.getLogger(name) for name in ("lightning.pytorch", "lightning.fabric")]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(logging.WARNING)
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings(
                "ignore", message=".*(args parameter is intended|num_workers|logging interval|LeafSpec).*"
            )
            yield
    finally:
        for logger, level in zip(loggers, levels):
            logger.setLevel(level)


def open_run(args: Namespace) -> Run:
    """The run named on the command line, its model on ``--device`` in eval mode, its data ready."""
    device = resolve_device(args.device)
    with quiet_lightning():
        run = load_run(args.run_dir, args.checkpoint, data_overrides(args))
    run.model.to(device)
    run.datamodule.prepare_data()  # a run trained on another machine may need its data fetched
    return run


def checkpoint_step(path: Path) -> int:
    """The global step a checkpoint was saved at (memory-mapped: the weights are not read)."""
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
        return int(checkpoint.get("global_step", 0))
    except Exception:  # an old or foreign checkpoint: the figure goes to step 0
        return 0


def split_dataset(datamodule: ImageDataModule, split: str) -> Dataset:
    """The images of a split as the model is evaluated on them (eval transform, no augmentation).

    ``train`` is the training split as trained on, after any imbalance, but without augmentation or
    noisy copies: ask for it first, on a datamodule of its own.
    """
    if split == "test":
        datamodule.setup("test")
        return datamodule.test_set
    if split == "train":
        if datamodule.train_set is not None:
            raise RuntimeError("split_dataset(train) needs a datamodule not yet set up for fit")
        # Without augmentation the training split gets the evaluation transform, on either data path.
        datamodule.augment = False
        datamodule.noise_variances = None
    datamodule.setup("fit")
    if split == "train":
        return datamodule.train_set
    if datamodule.val_set is None:
        raise LitvisionError(
            "the run has no validation split (it was trained with val_size 0): use --split test"
        )
    return datamodule.val_set


@dataclass
class Extracted:
    """What a frozen network makes of a set of images."""

    features: np.ndarray  # (N, F): the vectors asked for (pooled or pre-logits)
    labels: np.ndarray  # (N,) true classes
    logits: np.ndarray  # (N, C) of the network's own head


def features_of(net: nn.Module, x: Tensor, kind: str) -> tuple[Tensor, Tensor]:
    """The ``kind`` features of a batch and the logits of the network's own head."""
    pooled = net.pooled_features(x)
    pre_logits = net.pre_logits(pooled)
    return (pooled if kind == "pooled" else pre_logits), net.head(pre_logits)


@torch.inference_mode()
def extract(
    net: nn.Module, dataset: Dataset, kind: str = "pooled", batch_size: int = 256, num_workers: int = 0
) -> Extracted:
    """Features, labels and logits of every image of ``dataset``, in order."""
    device = next(net.parameters()).device
    if yields_batches(dataset):  # held in memory: the dataset makes whole batches itself
        loader = DataLoader(dataset, batch_size=batch_size, collate_fn=as_batch)
    else:
        loader = DataLoader(dataset, batch_size=batch_size, num_workers=num_workers)
    features, labels, logits = [], [], []
    for batch in loader:
        f, z = features_of(net, batch[0].to(device), kind)
        features.append(f.float().cpu())
        logits.append(z.float().cpu())
        labels.append(torch.as_tensor(batch[1]))
    if not labels:
        raise LitvisionError("the split holds no images")
    return Extracted(torch.cat(features).numpy(), torch.cat(labels).numpy(), torch.cat(logits).numpy())


def _plain(value: Any) -> Any:
    """numpy scalars and arrays as JSON values."""
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


@dataclass
class Outputs:
    """A tool's figures and files, kept in memory until :meth:`write`, so that an error on the way
    leaves nothing behind."""

    folder: Path
    figures: list[tuple[str, str, Figure]] = field(default_factory=list)  # (file name, tag, figure)
    files: dict[str, str] = field(default_factory=dict)
    arrays: dict[str, dict[str, np.ndarray]] = field(default_factory=dict)
    scalars: dict[str, Sequence[float]] = field(default_factory=dict)  # TensorBoard only: tag -> steps 1..N

    def figure(self, name: str, tag: str, figure: Figure) -> None:
        self.figures.append((name, tag, figure))

    def csv(self, name: str, rows: Sequence[Sequence[Any]]) -> None:
        self.files[name] = csv_text(rows)

    def json(self, name: str, data: Any) -> None:
        self.files[name] = json.dumps(data, indent=2, default=_plain) + "\n"

    def npz(self, name: str, arrays: dict[str, np.ndarray]) -> None:
        self.arrays[name] = arrays

    def write(self, tensorboard_dir: Path | None = None, step: int = 0) -> list[Path]:
        """Write everything into ``folder``, add the figures to TensorBoard in ``tensorboard_dir``."""
        self.folder.mkdir(parents=True, exist_ok=True)
        written = []
        for name, _, figure in self.figures:
            figure.savefig(self.folder / name, dpi=150, bbox_inches="tight")
            written.append(self.folder / name)
        for name, text in self.files.items():
            (self.folder / name).write_text(text)
            written.append(self.folder / name)
        for name, arrays in self.arrays.items():
            np.savez(self.folder / name, **arrays)
            written.append(self.folder / name)
        if tensorboard_dir is not None and (self.figures or self.scalars):
            from torch.utils.tensorboard import SummaryWriter

            with SummaryWriter(log_dir=str(tensorboard_dir)) as writer:
                for _, tag, figure in self.figures:
                    writer.add_figure(tag, figure, global_step=step, close=False)
                for tag, values in self.scalars.items():
                    for i, value in enumerate(values, start=1):
                        writer.add_scalar(tag, value, global_step=i)
        for _, _, figure in self.figures:
            plt.close(figure)
        for path in written:
            print(f"wrote {path}")
        return written


def run_outputs(args: Namespace) -> Outputs:
    return Outputs(args.output if args.output is not None else Path(args.run_dir) / "analysis")


def write_run_outputs(outputs: Outputs, args: Namespace, run: Run) -> list[Path]:
    """Write a run tool's outputs, with its figures in the run's TensorBoard at the checkpoint's step."""
    tensorboard = Path(args.run_dir) if args.tensorboard else None
    return outputs.write(tensorboard, checkpoint_step(run.checkpoint))
