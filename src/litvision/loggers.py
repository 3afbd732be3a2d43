"""Loggers the CLI uses by default."""

from __future__ import annotations

from typing import Any

from lightning.pytorch.loggers import TensorBoardLogger as _TensorBoardLogger


class TensorBoardLogger(_TensorBoardLogger):
    """Lightning's TensorBoard logger, minus the placeholder ``hp_metric = -1`` it writes at step 0 every
    time hyperparameters are logged (at fit, at test, at a resume): those would sit among the real values.
    ``hp_metric`` is still declared in the HPARAMS tab; :class:`ImageClassifier` logs the best val/acc."""

    _hparams_only = False

    def log_hyperparams(self, params: Any, metrics: dict[str, Any] | None = None) -> None:
        self._hparams_only = metrics is None
        try:
            super().log_hyperparams(params, metrics)
        finally:
            self._hparams_only = False

    def log_metrics(self, metrics: dict[str, Any], step: int | None = None) -> None:
        if not self._hparams_only:
            super().log_metrics(metrics, step)
