"""torchvision architectures and their ImageNet weights, with a one-line error when offline."""

from __future__ import annotations

from collections import OrderedDict

import torch
import torchvision
from torch import nn

from litvision.errors import LitvisionError


class WeightsNotFoundError(LitvisionError):
    """Pretrained weights are not in the torch hub cache and could not be downloaded."""


def build_torchvision(name: str) -> nn.Module:
    """torchvision's classification model ``name`` (e.g. ``resnet50``), with random weights."""
    try:
        return torchvision.models.get_model(name, weights=None)
    except ValueError:
        known = ", ".join(torchvision.models.list_models(module=torchvision.models))
        raise LitvisionError(f"torchvision has no classification model {name!r}; known: {known}") from None


def pretrained_state_dict(name: str) -> OrderedDict[str, torch.Tensor]:
    """The default ImageNet weights of torchvision model ``name``, from the torch hub cache or downloaded."""
    weights = torchvision.models.get_model_weights(name).DEFAULT
    try:
        return weights.get_state_dict(progress=True, check_hash=True)
    except Exception as err:  # network errors come in many types
        cache = f"{torch.hub.get_dir()}/checkpoints/"
        reason = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise WeightsNotFoundError(
            f"pretrained weights {weights} for {name} are not in the torch hub cache and the download failed "
            f"({reason}); download {weights.url} into {cache} (TORCH_HOME moves it), or set pretrained: false"
        ) from None
