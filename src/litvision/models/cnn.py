"""The simple LeNet-like CNN of report 000."""

from __future__ import annotations

from collections.abc import Sequence

from torch import Tensor, nn

from litvision.models.base import ClassifierNet


class SimpleCNN(ClassifierNet):
    """Three conv + max-pool stages, two fully connected layers and an output layer (report 000)."""

    min_size = 8  # three 2x2 max-pools

    def __init__(
        self,
        num_classes: int,
        input_shape: tuple[int, int, int] = (3, 32, 32),
        channels: Sequence[int] = (32, 64, 128),
        hidden: Sequence[int] = (256, 128),
        kernel_size: int = 3,
    ) -> None:
        super().__init__()
        in_channels, height, width = input_shape
        layers: list[nn.Module] = []
        for out_channels in channels:
            layers += [
                nn.Conv2d(in_channels, out_channels, kernel_size, padding=kernel_size // 2),
                nn.ReLU(inplace=True),
                nn.MaxPool2d(2),
            ]
            in_channels = out_channels
            height, width = height // 2, width // 2
        if height < 1 or width < 1:
            raise ValueError(
                f"input_shape={tuple(input_shape)} is too small for {len(channels)} pooling stages: "
                f"height and width must be at least {2 ** len(channels)}"
            )
        self.min_size = 2 ** len(channels)
        self.conv = nn.Sequential(*layers)
        # Each convolution's activation (at its resolution), the last pooled map, the fc features.
        self.stage_names = [f"conv.{3 * i + 1}" for i in range(len(channels))] + [
            f"conv.{len(layers) - 1}",
            "fc",
        ]
        in_features = in_channels * height * width
        fc: list[nn.Module] = [nn.Flatten()]
        for out_features in hidden:
            fc += [nn.Linear(in_features, out_features), nn.ReLU(inplace=True)]
            in_features = out_features
        self.fc = nn.Sequential(*fc)
        self.num_features = in_features
        self.head = nn.Linear(in_features, num_classes)

    def pooled_features(self, x: Tensor) -> Tensor:
        return self.fc(self.conv(x))
