"""VGG (Simonyan and Zisserman 2015) for small images: torchvision's feature extractor, a new head."""

from __future__ import annotations

from typing import Literal

from torch import Tensor, nn
from torchvision.models.vgg import cfgs, make_layers

from litvision.models.base import ClassifierNet
from litvision.models.layers import adapt_input_channels
from litvision.models.pretrained import pretrained_state_dict

# torchvision's configuration letter of each depth: "A" is VGG-11 (report 004's VGG-A), "D" VGG-16.
_CONFIGS = {11: "A", 13: "B", 16: "D", 19: "E"}


class VGG(ClassifierNet):
    """VGG's convolutional features (torchvision's layers, so ImageNet weights load into them) with a
    classifier for small images: global average pooling, Linear-ReLU-Dropout, Linear.

    ``depth`` 11 is VGG-A (report 004, with or without ``batch_norm`` after every conv); 16 with
    ``pretrained`` is report 000's VGG, whose ImageNet feature extractor is kept and classifier redesigned.
    """

    min_size = 32  # five 2x2 max-pools

    def __init__(
        self,
        num_classes: int,
        input_shape: tuple[int, int, int] = (3, 32, 32),
        depth: Literal[11, 13, 16, 19] = 16,
        batch_norm: bool = False,
        pretrained: bool = False,
        hidden: int = 512,
        dropout: float = 0.5,
    ) -> None:
        super().__init__()
        if depth not in _CONFIGS:
            raise ValueError(f"depth={depth} is not one of {sorted(_CONFIGS)}")
        self.features = make_layers(cfgs[_CONFIGS[depth]], batch_norm=batch_norm)
        self.pretrained_name = f"vgg{depth}_bn" if batch_norm else f"vgg{depth}"
        if pretrained:
            state = pretrained_state_dict(self.pretrained_name)
            self.features.load_state_dict({k[9:]: v for k, v in state.items() if k.startswith("features.")})
        adapt_input_channels(self.features, input_shape[0])
        self.pool = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten())
        # The last layer at each resolution: the one before each max-pool.
        pools = [i for i, m in enumerate(self.features) if isinstance(m, nn.MaxPool2d)]
        self.stage_names = [f"features.{i - 1}" for i in pools] + ["pool"]
        self.num_features = 512
        self.pre_logits = nn.Sequential(nn.Linear(512, hidden), nn.ReLU(inplace=True), nn.Dropout(dropout))
        self.head = nn.Linear(hidden, num_classes)

    def pooled_features(self, x: Tensor) -> Tensor:
        return self.pool(self.features(x))
