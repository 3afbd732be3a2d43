"""The contract every litvision architecture follows, after timm's."""

from __future__ import annotations

from torch import Tensor, nn


class ClassifierNet(nn.Module):
    """An image classifier split into a feature extractor and a head.

    Every architecture is built as ``Net(num_classes, input_shape, **options)`` and offers
    ``forward_features(x) -> (N, num_features)``, the pooled features that the analysis tools
    (t-SNE, SVM head, feature maps) read, and ``forward_head(features, pre_logits=False)``: the layers
    before the final one (``pre_logits``, the identity unless the head is an MLP), then the final
    layer ``head``. ``min_size`` is the smallest image side the network accepts.
    """

    num_features: int
    head: nn.Module
    min_size: int = 1

    def __init__(self) -> None:
        super().__init__()
        self.pre_logits: nn.Module = nn.Identity()

    def forward_features(self, x: Tensor) -> Tensor:
        raise NotImplementedError

    def forward_head(self, x: Tensor, pre_logits: bool = False) -> Tensor:
        x = self.pre_logits(x)
        return x if pre_logits else self.head(x)

    def forward(self, x: Tensor) -> Tensor:
        return self.forward_head(self.forward_features(x))
