"""Callbacks that break a run on purpose, as a crash, an OOM kill or a diverging update would."""

from __future__ import annotations

import os
import signal

import torch
from lightning.pytorch import Callback, LightningModule, Trainer


class KillAtStep(Callback):
    """SIGKILL this process (no cleanup, no checkpoint) once training reaches ``step``."""

    def __init__(self, step: int) -> None:
        self.step = step

    def on_train_batch_end(self, trainer: Trainer, pl_module: LightningModule, *args: object) -> None:
        if trainer.global_step >= self.step:
            os.kill(os.getpid(), signal.SIGKILL)


class NonFiniteWeightsAtStep(Callback):
    """Make the first weight nan right after training step ``step``, as an update that diverges after a
    finite loss would: the checkpoint saved at that step would hold them."""

    def __init__(self, step: int) -> None:
        self.step = step

    def on_train_batch_end(self, trainer: Trainer, pl_module: LightningModule, *args: object) -> None:
        if trainer.global_step == self.step:
            with torch.no_grad():
                next(pl_module.parameters()).fill_(float("nan"))


class SignalAtStep(Callback):
    """Send this process ``signal`` (a name: SIGTERM as a scheduler or `litvision reproduce` stops a run,
    SIGINT as Ctrl-C does) once training reaches ``step``."""

    def __init__(self, step: int, signal: str) -> None:
        self.step, self.signal, self.sent = step, signal, False

    def on_train_batch_end(self, trainer: Trainer, pl_module: LightningModule, *args: object) -> None:
        if trainer.global_step >= self.step and not self.sent:
            self.sent = True
            number = getattr(signal, self.signal)
            if signal.getsignal(number) == signal.SIG_IGN:  # the run would go on and end as finished
                raise RuntimeError(f"{self.signal} is ignored in this process: it cannot stop the run")
            os.kill(os.getpid(), number)
