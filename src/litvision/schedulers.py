"""Learning-rate schedules that ``torch.optim.lr_scheduler`` has no single class for, usable in YAML as
``model.lr_scheduler: {class_path: litvision.schedulers.WarmupMultiStepLR, init_args: {...}}``."""

from __future__ import annotations

from collections.abc import Sequence

from torch.optim import Optimizer
from torch.optim.lr_scheduler import LambdaLR

from litvision.errors import LitvisionError


class WarmupMultiStepLR(LambdaLR):
    """A linear warm-up over the first ``warmup_epochs`` epochs (epoch ``e`` at ``(e + 1) / warmup`` of
    the base rate), then the base rate times ``gamma`` once per milestone passed: Cao et al. 2019's
    CIFAR recipe is ``warmup_epochs=5, milestones=[160, 180], gamma=0.01`` (the rate 0.1, then 1e-3
    from epoch 160, 1e-5 from epoch 180). Stepped once per epoch."""

    def __init__(
        self,
        optimizer: Optimizer,
        warmup_epochs: int = 5,
        milestones: Sequence[int] = (160, 180),
        gamma: float = 0.01,
        last_epoch: int = -1,
    ) -> None:
        if warmup_epochs < 0 or not gamma > 0 or list(milestones) != sorted(milestones):
            raise LitvisionError(
                f"WarmupMultiStepLR(warmup_epochs={warmup_epochs}, milestones={list(milestones)}, "
                f"gamma={gamma}) is invalid: warm-up >= 0, increasing milestones, gamma > 0"
            )
        self.warmup_epochs = warmup_epochs
        self.milestones = list(milestones)
        self.gamma = gamma
        super().__init__(optimizer, self.factor, last_epoch)

    def factor(self, epoch: int) -> float:
        if epoch < self.warmup_epochs:
            return (epoch + 1) / self.warmup_epochs
        return self.gamma ** sum(epoch >= m for m in self.milestones)
