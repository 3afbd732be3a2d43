"""Building blocks shared by several architectures."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn


class GaussianNoise(nn.Module):
    """Adds zero-mean Gaussian noise of standard deviation ``std`` point-wise in training mode; the
    identity in eval mode, so evaluation stays deterministic (report 001's Model_B)."""

    def __init__(self, std: float) -> None:
        super().__init__()
        self.std = std

    def forward(self, x: Tensor) -> Tensor:
        if self.training and self.std > 0:
            return x + torch.randn_like(x) * self.std
        return x

    def extra_repr(self) -> str:
        return f"std={self.std}"


def adapt_input_channels(model: nn.Module, channels: int) -> None:
    """Make the first convolution of ``model`` take ``channels`` input channels (grey images on an RGB
    network): its kernel is averaged over the RGB channels and repeated, so pretrained weights still
    respond to brightness."""
    name, conv = next((n, m) for n, m in model.named_modules() if isinstance(m, nn.Conv2d))
    if conv.in_channels == channels:
        return
    new = nn.Conv2d(
        channels, conv.out_channels, conv.kernel_size, conv.stride, conv.padding,
        conv.dilation, conv.groups, conv.bias is not None,
    )  # fmt: skip
    with torch.no_grad():
        new.weight.copy_(
            conv.weight.mean(dim=1, keepdim=True).expand_as(new.weight) * conv.in_channels / channels
        )
        if conv.bias is not None:
            new.bias.copy_(conv.bias)
    model.set_submodule(name, new)


class CosineLinear(nn.Module):
    """Cosine-similarity classifier: ``normalize(x) @ normalize(W_j)`` for each class ``j``, no bias
    (the normalised linear layer of Cao et al.'s LDAM code; the loss's ``s`` scales it). Initialised as
    theirs: uniform in [-1, 1], each class's row scaled to norm 1 (the logits do not depend on the norm,
    but the step an update takes in direction does, as 1 / norm^2)."""

    def __init__(self, in_features: int, out_features: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.empty(out_features, in_features))
        with torch.no_grad():
            self.weight.copy_(F.normalize(self.weight.uniform_(-1, 1), dim=1))

    def forward(self, x: Tensor) -> Tensor:
        return F.normalize(x, dim=1) @ F.normalize(self.weight, dim=1).t()
