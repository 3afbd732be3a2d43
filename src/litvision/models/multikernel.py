"""The multi-kernel gated CNN of report 003."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from litvision.models.base import ClassifierNet


class MultiKernelBlock(nn.Module):
    """Parallel convolutions of different kernel sizes, mixed by weights that a small MLP computes
    from the block's (pooled) input for each image, then BatchNorm and ReLU."""

    def __init__(
        self, in_channels: int, out_channels: int, kernel_sizes: Sequence[int], reduction: int
    ) -> None:
        super().__init__()
        self.convs = nn.ModuleList(
            nn.Conv2d(in_channels, out_channels, k, padding=k // 2, bias=False) for k in kernel_sizes
        )
        hidden = max(in_channels // reduction, 4)
        self.gate = nn.Sequential(
            nn.AdaptiveAvgPool2d(1),
            nn.Flatten(),
            nn.Linear(in_channels, hidden),
            nn.ReLU(inplace=True),
            nn.Linear(hidden, len(kernel_sizes)),
            nn.Softmax(dim=1),
        )
        self.bn = nn.BatchNorm2d(out_channels)
        self.act = nn.ReLU(inplace=True)

    def forward(self, x: Tensor) -> Tensor:
        weights = self.gate(x)  # (N, branches)
        branches = torch.stack([conv(x) for conv in self.convs], dim=1)  # (N, branches, C, H, W)
        mixed = (branches * weights[:, :, None, None, None]).sum(dim=1)
        return self.act(self.bn(mixed))


class MultiKernelCNN(ClassifierNet):
    """Six multi-kernel blocks with 2x2 max-pooling after blocks 2, 4 and 5, spatial average pooling,
    and a classifier Flatten-Linear-ReLU-BatchNorm-Dropout-Linear (softmax left to the loss); Kaiming
    initialisation (report 003)."""

    min_size = 8  # three 2x2 max-pools

    def __init__(
        self,
        num_classes: int,
        input_shape: tuple[int, int, int] = (3, 32, 32),
        channels: Sequence[int] = (64, 128, 128, 256, 256, 512),
        kernel_sizes: Sequence[int] = (1, 3, 5),
        pool_after: Sequence[int] = (2, 4, 5),
        reduction: int = 4,
        hidden: int = 256,
        dropout: float = 0.5,
    ) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        in_channels = input_shape[0]
        for i, out_channels in enumerate(channels, start=1):
            layers.append(MultiKernelBlock(in_channels, out_channels, kernel_sizes, reduction))
            if i in pool_after:
                layers.append(nn.MaxPool2d(2, 2))
            in_channels = out_channels
        self.min_size = 2 ** len(pool_after)
        self.blocks = nn.Sequential(*layers)
        self.pool = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten())
        # The last block at each resolution.
        ends = [i - 1 for i, m in enumerate(layers) if isinstance(m, nn.MaxPool2d)]
        ends += [] if isinstance(layers[-1], nn.MaxPool2d) else [len(layers) - 1]
        self.stage_names = [f"blocks.{i}" for i in ends] + ["pool"]
        self.num_features = in_channels
        self.pre_logits = nn.Sequential(
            nn.Linear(in_channels, hidden), nn.ReLU(inplace=True), nn.BatchNorm1d(hidden), nn.Dropout(dropout)
        )
        self.head = nn.Linear(hidden, num_classes)
        for m in self.modules():
            if isinstance(m, (nn.Conv2d, nn.Linear)):
                nn.init.kaiming_normal_(m.weight, nonlinearity="relu")
                if m.bias is not None:
                    nn.init.zeros_(m.bias)

    def pooled_features(self, x: Tensor) -> Tensor:
        return self.pool(self.blocks(x))
