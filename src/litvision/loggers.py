"""Loggers the CLI uses by default, and how a run is named and described in TensorBoard."""

from __future__ import annotations

import inspect
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from lightning.pytorch.loggers import TensorBoardLogger as _TensorBoardLogger
from lightning.pytorch.utilities import rank_zero_only
from tensorboard.plugins.hparams import api_pb2
from tensorboard.plugins.hparams.plugin_data_pb2 import HParamsPluginData, SessionEndInfo
from torch.utils.tensorboard.summary import hparams

from litvision.errors import LitvisionError
from litvision.private_api import logger_params, tensorboard_file_writer
from litvision.utils import import_object

# The HPARAMS tab's metric columns: each run's value is the last one logged under the tag.
HPARAMS_METRICS = ("val/acc_best", "test/acc", "test/acc_macro")
# The HPARAMS tab's columns. TensorBoard takes its columns from one run's summary, whichever it reads
# first: so every run writes every one of them, whatever its config (see user_hparams).
HPARAMS_COLUMNS = (
    "data", "model", "model_options", "loss", "optimizer", "lr", "lr_scheduler", "epochs", "batch_size",
    "augmentation", "imbalance", "sampling", "noise_copies", "label_smoothing", "irm_weight", "seed",
)  # fmt: skip
# TensorBoard shows five columns at first, those marked as differing first. A run cannot know what
# differs from the others, and the run TensorBoard reads first is any of them: these five, in every run.
HEADLINE_HPARAMS = ("data", "model", "epochs", "lr", "augmentation")


class TensorBoardLogger(_TensorBoardLogger):
    """Lightning's TensorBoard logger, laid out to be read at a glance: the HPARAMS tab lists the same
    columns for every run (:data:`HPARAMS_COLUMNS`, from :func:`user_hparams`) with the best
    ``val/acc``, ``test/acc`` and ``test/acc_macro`` as its metrics, and each run's status (a run
    that failed is marked so; ``hparams.yaml`` still has every argument).

    Unlike Lightning's, it writes no placeholder ``hp_metric = -1`` each time hyperparameters are logged
    (at fit, at test, at a resume): it would sit among the real values.
    """

    # More HPARAMS columns, marked as differing: a search's trial number and values (litvision.search).
    extra_hparams: Mapping[str, Any] = {}
    #: What the run's model and data do not say: the data, epochs and seed (:meth:`describe_run`).
    run_hparams: Mapping[str, Any] = {}

    def describe_run(self, data: str, epochs: int | None, seed: int | None) -> None:
        """Name the run's data and give its epoch count and seed, for the HPARAMS tab."""
        self.run_hparams = {"data": data, "epochs": epochs, "seed": seed}

    @rank_zero_only
    def log_hyperparams(
        self, params: Any, metrics: dict[str, Any] | None = None, step: int | None = None
    ) -> None:
        params = logger_params(params)
        self.hparams.update(params)  # saved as hparams.yaml
        extra = {**self.run_hparams, **self.extra_hparams}
        shown = {**user_hparams(params), **{k: _shown(v) for k, v in extra.items()}}
        experiment, start, _ = hparams(shown, dict.fromkeys(HPARAMS_METRICS, 0.0))
        plugin_data = experiment.value[0].metadata.plugin_data
        content = HParamsPluginData.FromString(plugin_data.content)
        for info in content.experiment.hparam_infos:
            info.differs = info.name in HEADLINE_HPARAMS or info.name in self.extra_hparams
        plugin_data.content = content.SerializeToString()
        writer = tensorboard_file_writer(self.experiment)
        for summary in (experiment, start):
            writer.add_summary(summary, step)

    _discarded = False

    def discard(self) -> None:
        """Stop writing: the run's files are about to be removed (a run that failed before its first
        checkpoint), and Lightning's ``finalize`` would write ``hparams.yaml`` again."""
        self._discarded = True
        self.experiment.close()

    def save(self) -> None:
        if not self._discarded:
            super().save()

    @rank_zero_only
    def end_session(self, failed: bool) -> None:
        """Mark the run's end in the HPARAMS tab: a success, or a failure (its Status filter hides those).
        TensorBoard keeps the first mark of a run, so a run stopped to be resumed gets none."""
        status = api_pb2.STATUS_FAILURE if failed else api_pb2.STATUS_SUCCESS
        _, _, end = hparams({}, {})
        plugin_data = end.value[0].metadata.plugin_data
        content = HParamsPluginData(session_end_info=SessionEndInfo(status=status), version=0)
        plugin_data.content = content.SerializeToString()
        tensorboard_file_writer(self.experiment).add_summary(end)
        self.experiment.flush()


def user_hparams(params: Mapping[str, Any]) -> dict[str, str | int | float]:
    """The arguments a user varies between runs, from a run's model and datamodule hyperparameters, as
    the HPARAMS tab shows them: one value per column of :data:`HPARAMS_COLUMNS` (``none`` where a run
    has none), classes by their short name with their options, booleans as ``true``/``false``."""
    out: dict[str, Any] = dict.fromkeys(HPARAMS_COLUMNS)
    backbone = _spec(params.get("backbone"))
    if backbone is not None:
        out["model"] = network_name(backbone)
        options = _given(backbone)
        if options.get("name") == out["model"]:  # a torchvision model, named by its own name
            del options["name"]
        out["model_options"] = _arguments(options) or "defaults"
    out["loss"] = _described(_spec(params.get("loss")))
    optimizer = _spec(params.get("optimizer"))
    if optimizer is not None:
        args = dict(optimizer.get("init_args") or {})
        out["lr"] = args.pop("lr", None)
        out["optimizer"] = _described({**optimizer, "init_args": args})
    out["lr_scheduler"] = _described(_spec(params.get("lr_scheduler")))
    out["batch_size"] = params.get("batch_size")
    augmentation = "default" if params.get("augment", True) else "off"
    if params.get("policy"):
        augmentation = ", ".join(_short(str(_spec(t)["class_path"])) for t in params["policy"])
    mixing = [f"{k} {params[f'{k}_alpha']}" for k in ("mixup", "cutmix") if params.get(f"{k}_alpha")]
    out["augmentation"] = " + ".join([augmentation, *mixing])
    out["imbalance"] = _described(_spec(params.get("imbalance")))
    out["sampling"] = "class_balanced" if params.get("oversample") else params.get("sampling") or "instance"
    out["noise_copies"] = params.get("noise_variances")
    for key in ("label_smoothing", "irm_weight"):
        out[key] = params.get(key, 0.0)
    return {k: _shown(v) for k, v in out.items()}


def run_name(data: Any, backbone: Any) -> str:
    """The name of a run given no config file: its data and its network (``photos-CifarResNet``)."""
    network = _spec(backbone)
    name = f"{data_name(data)}-{network_name(network)}" if network is not None else data_name(data)
    return "_".join(name.split())  # a folder name without spaces


def data_name(data: Any) -> str:
    """A dataset as a run name and the HPARAMS tab show it: the folder of the user's own images
    (``photos``), else the dataset (``cifar10``)."""
    spec = _spec(data)
    if spec is None:
        return "data"
    cls = import_object(str(spec["class_path"]))
    data_dir = (spec.get("init_args") or {}).get("data_dir")
    if getattr(cls, "shows_data_dir", False) and data_dir is not None:
        return Path(str(data_dir)).resolve().name
    return cls.__name__.removesuffix("DataModule").lower()


def network_name(backbone: Mapping[str, Any]) -> str:
    """An architecture by its class name, a torchvision model by its own (``resnet18``)."""
    name = (backbone.get("init_args") or {}).get("name")
    return str(name) if isinstance(name, str) else _short(str(backbone["class_path"]))


# The network's arguments the datamodule gives: the same for every run on the data.
_LINKED = ("num_classes", "input_shape")


def _spec(value: Any) -> dict[str, Any] | None:
    """``{class_path, init_args}`` of a class given in the config (a dict, a jsonargparse Namespace, a
    bare class path or an object), or None."""
    if value is None:
        return None
    if hasattr(value, "as_dict"):  # jsonargparse's Namespace
        value = value.as_dict()
    if isinstance(value, Mapping) and "class_path" in value:
        return dict(value)
    if isinstance(value, str):
        return {"class_path": value}
    cls = value if isinstance(value, type) else type(value)
    return {"class_path": f"{cls.__module__}.{cls.__qualname__}"}


def _described(spec: Mapping[str, Any] | None) -> str | None:
    """``Class(option=value, ...)`` with the options that differ from the class's defaults, or None."""
    if spec is None:
        return None
    args = _arguments(_given(spec))
    return f"{_short(str(spec['class_path']))}({args})" if args else _short(str(spec["class_path"]))


def _given(spec: Mapping[str, Any]) -> dict[str, Any]:
    """The options of a class given in the config that differ from its defaults (jsonargparse writes
    every default into the config), the dataset-given ones left out."""
    args = {k: v for k, v in (spec.get("init_args") or {}).items() if k not in _LINKED}
    try:
        parameters = inspect.signature(import_object(str(spec["class_path"]))).parameters
    except (LitvisionError, TypeError, ValueError):
        return args
    return {
        k: v for k, v in args.items() if k not in parameters or _shown(parameters[k].default) != _shown(v)
    }


def _arguments(args: Mapping[str, Any]) -> str:
    return ", ".join(f"{k}={_shown(v)}" for k, v in args.items())


def _short(class_path: str) -> str:
    return class_path.rsplit(".", 1)[-1]


def _shown(value: Any) -> str | int | float:
    """A value as TensorBoard shows it well: numbers as numbers, everything else as text."""
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, int | float):
        return value
    if value is None:
        return "none"
    if isinstance(value, list | tuple):
        return "[" + ", ".join(str(_shown(v)) for v in value) + "]"
    return str(value)
