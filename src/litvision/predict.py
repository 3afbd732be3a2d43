"""``litvision predict``: the model's answers for the test split or a folder of new images, written as
``predictions.csv`` (and ``predictions.json``) by a Lightning prediction writer.

``litvision predict RUN_DIR [--images DIR] [--output PATH]`` needs only a run directory: the model, its
classes and its preprocessing come from the run's ``config.yaml``, the weights from its best checkpoint.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from lightning.pytorch import LightningModule, Trainer
from lightning.pytorch.callbacks import BasePredictionWriter
from rich.console import Console

from litvision.data.files import NO_LABEL
from litvision.errors import LitvisionError
from litvision.parsing import OneLineErrors, suggestion
from litvision.utils import csv_text, find_checkpoint, write_json, write_text

PREDICT_USAGE = """litvision predict RUN_DIR [--images DIR] [--output PATH] [--top_k K]
                         [--checkpoint best|last|FILE] [FLAG ...]
   or: litvision predict --config RUN_DIR/config.yaml --ckpt_path CKPT
                         [--data.predict_dir DIR] [--predictions.OPTION VALUE ...]"""
PREDICT = (
    "Predict the classes of new images (--images DIR: every image under DIR, nested or flat) or of the "
    "test split with a run's best checkpoint, into RUN_DIR/predictions.csv and .json (an earlier one is "
    "kept: the next is predictions-2.csv). The model, its classes and its preprocessing come from the "
    "run's config.yaml. Other flags go to Lightning's CLI (--trainer.devices 2, --data.data_dir DIR for a "
    "run trained elsewhere)."
)
PREDICT_LONG = (
    "The long form is Lightning's: 'litvision predict --config RUN_DIR/config.yaml --ckpt_path CKPT'; "
    "'litvision predict --help' lists all of its options."
)


class PredictionWriter(BasePredictionWriter):
    """Writes one row per predicted image: its file path (or its index, for data sets held as arrays),
    the predicted class and its probability, the ``top_k`` classes with their probabilities and, where
    the data has labels, the true class. Under DDP each rank's rows are gathered on rank 0 and written
    once, in the data set's order.

    Args:
        output: a ``.csv`` file (replaced if it exists), or a folder for ``predictions.csv``; by
            default the run directory of the checkpoint predicted with (else the logger's run
            directory, else the working directory). In a folder, an earlier ``predictions.csv`` is
            kept: the new one is ``predictions-2.csv`` (then ``-3``, ...).
        top_k: how many of the most probable classes each row lists.
        json: also write the rows, with every class's probability, as ``predictions.json`` beside it.
    """

    def __init__(self, output: str | None = None, top_k: int = 3, json: bool = True) -> None:
        super().__init__(write_interval="batch")
        if top_k < 1:
            raise LitvisionError(f"predictions.top_k={top_k} is invalid: it must be at least 1")
        self.output = output
        self.top_k = top_k
        self.json = json
        self._parts: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = []

    def on_predict_epoch_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self._parts = []

    def write_on_batch_end(
        self,
        trainer: Trainer,
        pl_module: LightningModule,
        prediction: Any,
        batch_indices: Sequence[int] | None,
        batch: Any,
        batch_idx: int,
        dataloader_idx: int,
    ) -> None:
        if batch_indices is None:  # Lightning tracks them for map-style loaders; ours all are
            raise LitvisionError("the prediction loader does not say which images it predicted")
        probabilities = prediction.detach().float().cpu()
        targets = batch[1] if isinstance(batch, list | tuple) and len(batch) > 1 else None
        targets = (
            torch.full((len(probabilities),), NO_LABEL) if targets is None else torch.as_tensor(targets).cpu()
        )
        self._parts.append((torch.as_tensor(list(batch_indices)), probabilities, targets))

    def on_predict_epoch_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        parts, self._parts = self._parts, []
        mine = tuple(torch.cat(p) for p in zip(*parts)) if parts else None
        if trainer.world_size > 1 and torch.distributed.is_initialized():
            gathered: list[Any] = [None] * trainer.world_size if trainer.is_global_zero else None
            torch.distributed.gather_object(mine, gathered, dst=0)
            shares = [g for g in gathered or [] if g is not None]
        else:
            shares = [mine] if mine is not None else []
        if not trainer.is_global_zero or not shares:
            return
        indices, probabilities, targets = (torch.cat(p) for p in zip(*shares))
        order = indices.argsort()
        indices, probabilities, targets = indices[order], probabilities[order], targets[order]
        if len(indices.unique()) != len(indices):
            raise LitvisionError("an image was predicted twice: the prediction loader repeats samples")
        datamodule = trainer.datamodule
        files = getattr(datamodule, "predict_files", None)
        sources = [files[i] for i in indices.tolist()] if files is not None else indices.tolist()
        path = self.csv_path(trainer)
        replaced = path.exists()
        rows = self.rows(sources, probabilities, targets, list(pl_module.class_names))
        write_predictions(rows, path, self.json)
        said = f"Predictions for {len(rows)} images saved to [bold]{path}[/bold]"
        Console().print(said + (" (it replaced the file there)" if replaced else ""), soft_wrap=True)

    def csv_path(self, trainer: Trainer) -> Path:
        """The CSV file to write: ``output`` if it names one (replaced if it exists); else
        ``predictions.csv`` in the folder, numbered (``predictions-2.csv``, ...) so that an earlier
        prediction there is kept."""
        if self.output is not None:
            output = Path(self.output)
            if output.suffix.lower() == ".csv":
                return output
            return unused_path(output / "predictions.csv")
        ckpt_path = trainer.ckpt_path
        if ckpt_path and (Path(ckpt_path).parent.parent / "config.yaml").is_file():
            return unused_path(Path(ckpt_path).parent.parent / "predictions.csv")
        if trainer.loggers and trainer.log_dir:
            return unused_path(Path(trainer.log_dir) / "predictions.csv")
        return unused_path(Path("predictions.csv"))

    def rows(
        self, sources: list[Any], probabilities: torch.Tensor, targets: torch.Tensor, class_names: list[str]
    ) -> list[dict[str, Any]]:
        k = min(self.top_k, len(class_names))
        top_p, top_i = probabilities.topk(k, dim=1)
        labelled = bool((targets != NO_LABEL).any())
        rows = []
        for source, p, i, target, full in zip(
            sources, top_p.tolist(), top_i.tolist(), targets.tolist(), probabilities.tolist()
        ):
            row: dict[str, Any] = {"image": source, "predicted": class_names[i[0]], "probability": p[0]}
            if labelled:
                row["true"] = class_names[target] if target != NO_LABEL else ""
            for rank in range(k):
                row[f"top{rank + 1}"] = class_names[i[rank]]
                row[f"top{rank + 1}_probability"] = p[rank]
            row["probabilities"] = dict(zip(class_names, full))
            rows.append(row)
        return rows


def unused_path(path: Path) -> Path:
    """``path``, or the first of ``NAME-2.csv``, ``NAME-3.csv``, ... that is not there (nor its JSON)."""
    candidate, n = path, 1
    while candidate.exists() or candidate.with_suffix(".json").exists():
        n += 1
        candidate = path.with_name(f"{path.stem}-{n}{path.suffix}")
    return candidate


def write_predictions(rows: list[dict[str, Any]], path: Path, with_json: bool) -> None:
    """``rows`` as CSV at ``path`` (every class's probability left to the JSON) and, if ``with_json``,
    as JSON beside it; each file written atomically."""
    fields = [key for key in rows[0] if key != "probabilities"]
    table = [[f"{row[k]:.6f}" if isinstance(row[k], float) else row[k] for k in fields] for row in rows]
    write_text(path, csv_text([fields, *table]))
    if with_json:
        write_json(path.with_suffix(".json"), rows)


class OneLineArgparse(OneLineErrors, argparse.ArgumentParser):
    """argparse's parser (``parse_known_args`` passes the other flags on) with one-line errors."""


def run_dir_arguments(argv: list[str]) -> list[str]:
    """``predict RUN_DIR [--images DIR] [--output PATH] [--checkpoint best|last|FILE] [flags ...]`` as
    the Lightning CLI's ``predict --config RUN_DIR/config.yaml --ckpt_path ...``; other flags pass on."""
    parser = OneLineArgparse(prog="litvision predict", description=PREDICT, epilog=PREDICT_LONG)
    parser.add_argument("run_dir", type=Path, help="a run directory written by litvision fit")
    parser.add_argument("--images", help="a folder of images to predict on (default: the test split)")
    parser.add_argument(
        "--output", help="a .csv file (replaced if there) or a folder (default: the run directory)"
    )
    parser.add_argument("--checkpoint", default="best", help="best (default), last or a .ckpt file")
    parser.add_argument("--top_k", type=int, help="how many of the most probable classes each row lists")
    args, rest = parser.parse_known_args(argv)
    own = [o for a in parser._actions for o in a.option_strings if o.startswith("--")]
    for flag in (f.split("=", 1)[0] for f in rest if f.startswith("--") and "." not in f):
        close = suggestion(flag, own)
        if close:  # a misspelt option of this short form, which Lightning's parser would not know either
            parser.error(f"unknown option {flag}{close}")
    config = args.run_dir / "config.yaml"
    if not config.is_file():
        raise LitvisionError(f"'{args.run_dir}' is not a run directory: it has no config.yaml")
    out = ["predict", f"--config={config}", f"--ckpt_path={find_checkpoint(args.run_dir, args.checkpoint)}"]
    if args.images is not None:
        out.append(f"--data.predict_dir={args.images}")
    if args.output is not None:
        out.append(f"--predictions.output={args.output}")
    if args.top_k is not None:
        out.append(f"--predictions.top_k={args.top_k}")
    return [*out, *rest]
