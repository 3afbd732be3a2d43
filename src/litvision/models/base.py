"""The contract every litvision architecture follows, so that every analysis tool works on any of them."""

from __future__ import annotations

from abc import ABCMeta, abstractmethod

from torch import Tensor, nn


class ClassifierNet(nn.Module, metaclass=ABCMeta):
    """An image classifier in three parts, built as ``Net(num_classes, input_shape, **options)``:

    - ``pooled_features(x) -> (N, num_features)``: each image as one vector (globally pooled feature
      maps for a CNN, the last hidden state for an RNN); t-SNE and the SVM head read it.
    - ``pre_logits``: a module from that vector to what the last layer reads (the identity unless the
      head is an MLP).
    - ``head``: the last linear layer.

    ``stage_names`` names the modules (as in ``named_modules()``) whose outputs the feature-map tool draws
    by default: the feature maps at each resolution, then the module that outputs the pooled features
    where there is one. ``min_size`` is the smallest image side the network accepts;
    ``pretrained_name`` the torchvision weights it loads with ``pretrained: true`` (None: it has none).

    The names are our own, not timm's: timm's ``forward_features`` returns the unpooled feature map,
    which a torchvision model (see :class:`TorchvisionNet`) does not expose in one way, nor an RNN.
    """

    num_features: int
    head: nn.Module
    stage_names: list[str]
    min_size: int = 1
    pretrained_name: str | None = None

    def __init__(self) -> None:
        super().__init__()
        self.pre_logits: nn.Module = nn.Identity()

    @abstractmethod
    def pooled_features(self, x: Tensor) -> Tensor: ...

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.pre_logits(self.pooled_features(x)))
