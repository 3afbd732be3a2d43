"""Any torchvision classification model behind litvision's contract; DenseNet with report 001's changes."""

from __future__ import annotations

from typing import Literal

import torch
from torch import Tensor, nn

from litvision.errors import LitvisionError
from litvision.models.base import ClassifierNet, stages_by_resolution
from litvision.models.layers import GaussianNoise, adapt_input_channels
from litvision.models.pretrained import build_torchvision, pretrained_state_dict


class TorchvisionNet(ClassifierNet):
    """A torchvision model named in YAML (``name: resnet50``, ``mobilenet_v3_small``, ...), optionally
    with its ImageNet weights. Its last linear layer becomes ``head`` (sized for the dataset); what
    feeds it is ``pooled_features`` (for ResNet-50, the 2048 pooled features of report 001's t-SNE).
    A first convolution for RGB is adapted to the dataset's channels.
    """

    min_size = 32

    def __init__(
        self,
        num_classes: int,
        input_shape: tuple[int, int, int] = (3, 224, 224),
        name: str = "resnet50",
        pretrained: bool = False,
    ) -> None:
        super().__init__()
        body = build_torchvision(name)
        self.pretrained_name = name
        if pretrained:
            body.load_state_dict(pretrained_state_dict(name))
        linears = [(n, m) for n, m in body.named_modules() if isinstance(m, nn.Linear)]
        if not linears:
            raise LitvisionError(f"torchvision's {name} has no linear classifier layer to replace")
        head_name, classifier = linears[-1]
        body.set_submodule(head_name, nn.Identity())
        adapt_input_channels(body, input_shape[0])
        self.body = body
        self.num_features = classifier.in_features
        self.head = nn.Linear(classifier.in_features, num_classes)
        self.input_shape = tuple(input_shape)
        self._stage_names: list[str] | None = None

    @property
    def stage_names(self) -> list[str]:  # type: ignore[override]
        """The last module at each resolution (found on first use from a forward pass on a blank image of
        ``input_shape``, after any change a subclass makes to the body: no table per torchvision family),
        then ``body``, whose output is the pooled features."""
        if self._stage_names is None:
            parameter = next(self.parameters())
            blank = torch.zeros(1, *self.input_shape, dtype=parameter.dtype, device=parameter.device)
            self._stage_names = [*stages_by_resolution(self, blank), "body"]
        return self._stage_names

    def pooled_features(self, x: Tensor) -> Tensor:
        return self.body(x)


def factorize_3x3(conv: nn.Conv2d) -> nn.Sequential:
    """A 1x3 convolution followed by a 3x1 one, in place of a 3x3 (Szegedy et al. 2016, InceptionV3)."""
    return nn.Sequential(
        nn.Conv2d(conv.in_channels, conv.out_channels, (1, 3), (1, conv.stride[1]), (0, 1), bias=False),
        nn.Conv2d(
            conv.out_channels,
            conv.out_channels,
            (3, 1),
            (conv.stride[0], 1),
            (1, 0),
            bias=conv.bias is not None,
        ),
    )


class DenseNet(TorchvisionNet):
    """torchvision's DenseNet with report 001's Model_B options.

    ``factorized`` replaces every 3x3 convolution of the dense layers by a 1x3 followed by a 3x1
    (those start from random weights even when ``pretrained``); ``noise_std`` > 0 adds zero-mean
    Gaussian noise to the outputs of the first ``noisy_layers`` convolution layers (a factorized pair
    counts as one layer) in training mode only. Model_B: ``factorized: true, noise_std: 0.005``.
    """

    def __init__(
        self,
        num_classes: int,
        input_shape: tuple[int, int, int] = (3, 64, 64),
        depth: Literal[121, 161, 169, 201] = 121,
        pretrained: bool = False,
        factorized: bool = False,
        noise_std: float = 0.0,
        noisy_layers: int = 6,
    ) -> None:
        super().__init__(num_classes, input_shape, name=f"densenet{depth}", pretrained=pretrained)
        features = self.body.features
        conv_names = [n for n, m in features.named_modules() if isinstance(m, nn.Conv2d)]
        if factorized:
            for n in conv_names:
                conv = features.get_submodule(n)
                if conv.kernel_size == (3, 3) and n.endswith("conv2"):  # the dense layers' 3x3 convs
                    features.set_submodule(n, factorize_3x3(conv))
        if noise_std > 0:
            for n in conv_names[:noisy_layers]:
                features.set_submodule(n, nn.Sequential(features.get_submodule(n), GaussianNoise(noise_std)))
