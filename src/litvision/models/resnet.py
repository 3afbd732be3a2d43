"""ResNet with basic blocks for 32x32 images, with the activation and width options of report 004 and
the CIFAR ResNets of He et al. 2016 (ResNet-32: three stages of five blocks, 16/32/64 channels); with
ImageNet's stem, for larger images (photos)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import torch.nn.functional as F
from torch import Tensor, nn

from litvision.models.base import ClassifierNet
from litvision.models.layers import CosineLinear

Activation = Literal["relu", "leaky_relu", "elu"]
_ACTIVATIONS: dict[str, type[nn.Module]] = {"relu": nn.ReLU, "leaky_relu": nn.LeakyReLU, "elu": nn.ELU}
Shortcut = Literal["conv", "pad"]
Head = Literal["linear", "cosine"]
Init = Literal["fan_out", "fan_in"]
Stem = Literal["small", "imagenet", "auto"]
# The largest image side the "auto" stem keeps at full resolution.
SMALL_IMAGE_SIDE = 64


def conv3x3(in_planes: int, out_planes: int, stride: int = 1) -> nn.Conv2d:
    """3x3 convolution with padding"""
    return nn.Conv2d(in_planes, out_planes, kernel_size=3, stride=stride, padding=1, bias=False)


class PadShortcut(nn.Module):
    """He et al. 2016's option A shortcut, used by their CIFAR ResNets: subsample by ``stride`` and pad
    the new channels with zeros (no parameters)."""

    def __init__(self, in_planes: int, planes: int, stride: int) -> None:
        super().__init__()
        self.stride = stride
        self.extra = planes - in_planes

    def forward(self, x: Tensor) -> Tensor:
        x = x[:, :, :: self.stride, :: self.stride]
        return F.pad(x, (0, 0, 0, 0, self.extra // 2, self.extra - self.extra // 2))


class BasicBlock(nn.Module):
    """Two 3x3 convolutions with a shortcut (He et al. 2016), activation of choice; where the shape
    changes, the shortcut is a 1x1 convolution (``conv``, option B) or zero padding (``pad``, option A)."""

    def __init__(
        self, in_planes: int, planes: int, stride: int, activation: Activation, shortcut: Shortcut = "conv"
    ) -> None:
        super().__init__()
        self.conv1 = conv3x3(in_planes, planes, stride)
        self.bn1 = nn.BatchNorm2d(planes)
        self.act = _ACTIVATIONS[activation]()
        self.conv2 = conv3x3(planes, planes)
        self.bn2 = nn.BatchNorm2d(planes)
        self.downsample: nn.Module = nn.Identity()
        if (stride != 1 or in_planes != planes) and shortcut == "pad":
            self.downsample = PadShortcut(in_planes, planes, stride)
        elif stride != 1 or in_planes != planes:
            self.downsample = nn.Sequential(
                nn.Conv2d(in_planes, planes, kernel_size=1, stride=stride, bias=False), nn.BatchNorm2d(planes)
            )

    def forward(self, x: Tensor) -> Tensor:
        out = self.act(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.act(out + self.downsample(x))


class CifarResNet(ClassifierNet):
    """ResNet for small images: a 3x3 stride-1 stem and no max-pool, so 32x32 inputs keep their detail.
    ``stem="imagenet"`` is ImageNet's instead (a 7x7 stride-2 convolution and a stride-2 max-pool, as in
    torchvision's ResNet), which shrinks larger images four-fold before the first stage; ``"auto"``
    picks the small stem for images of at most 64 pixels a side, ImageNet's above.

    ``layers=(2, 2, 2, 2)`` is ResNet-18 and ``(3, 4, 6, 3)`` ResNet-34; ``width`` is the number of
    channels of the first stage (doubled at each of the next), 64 in the original network. He et al.'s
    CIFAR ResNet-32 (used by Cao et al. 2019) is ``layers=(5, 5, 5), width=16, shortcut="pad"``: three
    stages of five blocks, 16/32/64 channels, option A shortcuts. ``head="cosine"`` classifies by cosine
    similarity (Cao et al.'s LDAM head); ``zero_init_residual`` starts each block as the identity.
    ``init``: ``fan_out``, torchvision's ResNet initialisation (He-normal convolutions scaled by their
    outputs, PyTorch's default linear head), or ``fan_in``, that of Cao et al.'s ResNet-32 code
    (He-normal scaled by the inputs, on every convolution and the linear head).
    """

    def __init__(
        self,
        num_classes: int,
        input_shape: tuple[int, int, int] = (3, 32, 32),
        layers: Sequence[int] = (2, 2, 2, 2),
        width: int = 64,
        activation: Activation = "relu",
        shortcut: Shortcut = "conv",
        head: Head = "linear",
        zero_init_residual: bool = True,
        init: Init = "fan_out",
        stem: Stem = "small",
    ) -> None:
        super().__init__()
        if stem not in ("small", "imagenet", "auto"):
            raise ValueError(f"stem={stem!r} is invalid: small, imagenet or auto")
        if stem == "auto":
            stem = "small" if max(input_shape[1:]) <= SMALL_IMAGE_SIDE else "imagenet"
        if activation not in _ACTIVATIONS:
            raise ValueError(f"activation={activation!r} is not one of {sorted(_ACTIVATIONS)}")
        if (
            shortcut not in ("conv", "pad")
            or head not in ("linear", "cosine")
            or init not in ("fan_out", "fan_in")
        ):
            raise ValueError(
                f"shortcut={shortcut!r}, head={head!r} or init={init!r} is invalid: conv or pad; linear or "
                "cosine; fan_out or fan_in"
            )
        if stem == "small":
            self.stem = nn.Sequential(
                conv3x3(input_shape[0], width), nn.BatchNorm2d(width), _ACTIVATIONS[activation]()
            )
        else:
            first = nn.Conv2d(input_shape[0], width, kernel_size=7, stride=2, padding=3, bias=False)
            self.stem = nn.Sequential(
                first, nn.BatchNorm2d(width), _ACTIVATIONS[activation](), nn.MaxPool2d(3, stride=2, padding=1)
            )
        stages: list[nn.Module] = []
        in_planes = width
        for i, blocks in enumerate(layers):
            planes = width * 2**i
            stride = 1 if i == 0 else 2
            stage = []
            for b in range(blocks):
                stage.append(BasicBlock(in_planes, planes, stride if b == 0 else 1, activation, shortcut))
                in_planes = planes
            stages.append(nn.Sequential(*stage))
        self.stages = nn.Sequential(*stages)
        self.pool = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.stage_names = ["stem", *(f"stages.{i}" for i in range(len(layers))), "pool"]
        self.num_features = in_planes
        self.head = (
            nn.Linear(in_planes, num_classes) if head == "linear" else CosineLinear(in_planes, num_classes)
        )
        for m in self.modules():
            if isinstance(m, nn.Conv2d) or (init == "fan_in" and isinstance(m, nn.Linear)):
                nn.init.kaiming_normal_(m.weight, mode=init, nonlinearity="relu")
        # Zero the last BN of each residual branch so that every block starts as the identity
        # (Goyal et al. 2017), which helps the large-learning-rate SGD recipe of 004.
        for m in self.modules():
            if isinstance(m, BasicBlock) and zero_init_residual:
                nn.init.zeros_(m.bn2.weight)

    def pooled_features(self, x: Tensor) -> Tensor:
        return self.pool(self.stages(self.stem(x)))
