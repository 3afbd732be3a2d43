"""The contract every litvision architecture follows, after timm's."""

from __future__ import annotations

from torch import Tensor, nn


class ClassifierNet(nn.Module):
    """An image classifier split into a feature extractor and a head.

    Every architecture is built as ``Net(num_classes, input_shape, **options)`` and offers
    ``forward_features(x) -> (N, num_features)``, the pooled penultimate features that the analysis
    tools (t-SNE, SVM head, feature maps) read, and ``forward_head(features, pre_logits=False)``.
    Subclasses set ``self.num_features`` and ``self.head`` (the final layer).
    """

    num_features: int
    head: nn.Module

    def forward_features(self, x: Tensor) -> Tensor:
        raise NotImplementedError

    def forward_head(self, x: Tensor, pre_logits: bool = False) -> Tensor:
        return x if pre_logits else self.head(x)

    def forward(self, x: Tensor) -> Tensor:
        return self.forward_head(self.forward_features(x))
