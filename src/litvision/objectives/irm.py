"""Invariant Risk Minimization, IRMv1 (Arjovsky et al. 2019), as report 002 estimated it on minibatches."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor, autograd

Risk = Callable[[Tensor, Tensor], Tensor]


def irm_penalty(logits: Tensor, target: Tensor, risk: Risk) -> Tensor:
    """The squared gradient of the risk with respect to a dummy scale w = 1.0 on the logits, estimated
    without bias as the product of the gradients on two disjoint halves of the samples (DomainBed's
    estimator; report 002's pairs of samples). Zero for fewer than two samples."""
    if logits.shape[0] < 2:
        return logits.new_zeros(())
    scale = torch.ones((), device=logits.device, requires_grad=True)
    first = autograd.grad(risk(logits[0::2] * scale, target[0::2]), scale, create_graph=True)[0]
    second = autograd.grad(risk(logits[1::2] * scale, target[1::2]), scale, create_graph=True)[0]
    return first * second


class IRMMixin:
    """Adds ``irm_weight`` x the IRM penalty to the training loss, averaged over the environments the
    batch carries (its third element, e.g. original vs noisy copies) or over the whole batch.

    As in DomainBed, the penalty weight is 1.0 for the first ``irm_anneal_steps`` optimizer steps, the
    optimizer's state is reset when the full weight switches on (the jump upsets Adam's moments), and a
    weight above 1 divides the whole loss, to keep the gradient scale. ``irm_weight`` 0 turns IRM off.
    The penalty is logged as ``train/irm_penalty``.
    """

    irm_weight: float = 0.0
    irm_anneal_steps: int = 0

    def compute_loss(self, logits: Tensor, target: Tensor, env: Tensor | None = None) -> Tensor:
        loss = super().compute_loss(logits, target, env)
        if self.irm_weight == 0 or not self.training or not torch.is_grad_enabled():
            return loss
        if env is None:
            penalty = irm_penalty(logits, target, self.risk)
        else:
            penalty = torch.stack(
                [irm_penalty(logits[env == e], target[env == e], self.risk) for e in env.unique()]
            )
            penalty = penalty.mean()
        self.log("train/irm_penalty", penalty.detach(), on_step=False, on_epoch=True)
        step = self.global_step
        weight = self.irm_weight if step >= self.irm_anneal_steps else 1.0
        if step == self.irm_anneal_steps > 0:  # the full weight starts with this step: fresh moments
            for optimizer in self.trainer.optimizers:
                optimizer.state.clear()
        loss = loss + weight * penalty
        return loss / weight if weight > 1 else loss
