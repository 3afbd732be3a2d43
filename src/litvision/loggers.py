"""Loggers the CLI uses by default."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from lightning.pytorch.loggers import TensorBoardLogger as _TensorBoardLogger
from lightning.pytorch.utilities import rank_zero_only
from tensorboard.plugins.hparams.plugin_data_pb2 import HParamsPluginData
from torch.utils.tensorboard.summary import hparams

from litvision.module import SPLITS
from litvision.private_api import logger_params, tensorboard_file_writer

# The HPARAMS tab's metric columns: each run's value is the last one logged under the tag.
HPARAMS_METRICS = ("val/acc_best", "test/acc", "test/acc_macro")
# TensorBoard shows five hyperparameter columns at first (the others are a tick away), those that differ
# between runs first, else by name. A run cannot know what differs from the others: these are marked.
HEADLINE_HPARAMS = ("model", "optimizer", "lr", "batch_size", "imbalance")


class TensorBoardLogger(_TensorBoardLogger):
    """Lightning's TensorBoard logger, laid out to be read at a glance:

    - the CUSTOM SCALARS tab has one chart per split with every class's accuracy over the epochs;
    - the HPARAMS tab lists what a user varies (:func:`user_hparams`: architecture and its options,
      optimizer, learning rate, batch size, imbalance, loss options), with the best ``val/acc``,
      ``test/acc`` and ``test/acc_macro`` as its metrics. ``hparams.yaml`` still has every argument.

    Unlike Lightning's, it writes no placeholder ``hp_metric = -1`` each time hyperparameters are logged
    (at fit, at test, at a resume): it would sit among the real values.
    """

    # More HPARAMS columns, marked as differing: a search's trial number and values (litvision.search).
    extra_hparams: Mapping[str, Any] = {}

    @rank_zero_only
    def log_hyperparams(
        self, params: Any, metrics: dict[str, Any] | None = None, step: int | None = None
    ) -> None:
        params = logger_params(params)
        self.hparams.update(params)  # saved as hparams.yaml
        columns = {**user_hparams(params), **{k: _shown(v) for k, v in self.extra_hparams.items()}}
        experiment, start, end = hparams(columns, dict.fromkeys(HPARAMS_METRICS, 0.0))
        plugin_data = experiment.value[0].metadata.plugin_data
        content = HParamsPluginData.FromString(plugin_data.content)
        for info in content.experiment.hparam_infos:
            info.differs = info.name in HEADLINE_HPARAMS or info.name in self.extra_hparams
        plugin_data.content = content.SerializeToString()
        writer = tensorboard_file_writer(self.experiment)
        for summary in (experiment, start, end):
            writer.add_summary(summary, step)
        self.experiment.add_custom_scalars(
            {"accuracy per class": {split: ["Multiline", [rf"^{split}/acc_class/"]] for split in SPLITS}}
        )


def user_hparams(params: Mapping[str, Any]) -> dict[str, str | int | float]:
    """The arguments a user varies between runs, from a run's model and datamodule hyperparameters,
    as the HPARAMS tab shows them: classes by their short name, booleans as ``true``/``false``."""
    out: dict[str, Any] = {}
    backbone = _spec(params.get("backbone"))
    if backbone is not None:
        out["model"] = _short(backbone["class_path"])
        out.update({f"model/{k}": v for k, v in (backbone.get("init_args") or {}).items()})
    optimizer = _spec(params.get("optimizer"))
    if optimizer is not None:
        args = optimizer.get("init_args") or {}
        out["optimizer"] = _short(optimizer["class_path"])
        out["lr"] = args.get("lr")
        out.update({k: args[k] for k in ("momentum", "weight_decay") if args.get(k)})
    scheduler = _spec(params.get("lr_scheduler"))
    out["lr_scheduler"] = _short(scheduler["class_path"]) if scheduler is not None else None
    for key in ("batch_size", "augment", "label_smoothing", "irm_weight", "oversample", "noise_variances"):
        if key in params:
            out[key] = params[key]
    imbalance = _spec(params.get("imbalance"))
    if imbalance is not None:
        args = ", ".join(f"{k}={v}" for k, v in (imbalance.get("init_args") or {}).items())
        out["imbalance"] = f"{_short(imbalance['class_path'])}({args})"
    elif "imbalance" in params:
        out["imbalance"] = None
    if params.get("policy"):
        out["policy"] = ", ".join(_short(str(_spec(t)["class_path"])) for t in params["policy"])
    return {k: _shown(v) for k, v in out.items()}


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
        return "[" + ", ".join(str(v) for v in value) + "]"
    return str(value)
