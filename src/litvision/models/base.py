"""The contract every litvision architecture follows, so that every analysis tool works on any of them."""

from __future__ import annotations

import math
from abc import ABCMeta, abstractmethod
from typing import Any

import torch
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
    where there is one; a network that does not declare them (any torchvision model) finds them with
    :func:`stages_by_resolution`. ``min_size`` is the smallest image side the network accepts;
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


def module_outputs(net: nn.Module, x: Tensor, keep: set[str] | None = None) -> tuple[dict[str, Any], Tensor]:
    """Run ``net`` on ``x`` (without gradients) with a hook on every submodule; return the outputs of
    those in ``keep`` (the output shapes of all when None) in the order the modules complete, and the
    logits."""
    outputs: dict[str, Any] = {}

    def hook(name: str):
        def record(module: nn.Module, inputs: object, output: object) -> None:
            tensor = output[0] if isinstance(output, (tuple, list)) and output else output
            if name in outputs or not isinstance(tensor, Tensor):  # a module called twice: its first call
                return
            if keep is None:
                outputs[name] = tuple(tensor.shape)
            elif name in keep:
                # cloned: an in-place activation that follows would otherwise change it
                outputs[name] = tensor.detach().float().cpu().clone()

        return record

    handles = [m.register_forward_hook(hook(n)) for n, m in net.named_modules() if n]
    try:
        with torch.inference_mode():
            logits = net(x)
    finally:
        for handle in handles:
            handle.remove()
    return outputs, logits.float().cpu()


def stages_by_resolution(net: nn.Module, x: Tensor) -> list[str]:
    """The stages of any CNN, from one forward pass on ``x`` in eval mode: at each spatial resolution the
    last module to output it of the outermost modules that do (a ResNet's ``layer1`` ... ``layer4``, not
    the first convolution of the next stage's first block), in forward order, each smaller than the one
    before (an adaptive pool that enlarges small maps is left out)."""
    modes = {m: m.training for m in net.modules()}
    net.eval()  # no batch-norm statistics changed, and batch-norm takes a batch of one
    try:
        shapes = {name: shape[1:] for name, shape in module_outputs(net, x)[0].items()}
    finally:
        for module, training in modes.items():
            module.training = training
    height, width = x.shape[-2:]
    last: dict[tuple[int, ...], str] = {}  # resolution -> module
    for name, shape in shapes.items():
        if len(shape) != 3 or shape[1] * shape[2] == 1 or shape[1] > height or shape[2] > width:
            continue
        # Both sides scaled alike: not a channels-last tensor (ConvNeXt's and Swin's blocks), (H, W, C).
        if not 0.8 <= (height / shape[1]) / (width / shape[2]) <= 1.25:
            continue
        kept = last.get(shape[1:])
        if kept is None or name.count(".") <= kept.count("."):
            last[shape[1:]] = name
    order = list(shapes)
    stages: list[str] = []
    for name in sorted(last.values(), key=order.index):
        if not stages or math.prod(shapes[name][1:]) < math.prod(shapes[stages[-1]][1:]):
            stages.append(name)
    return stages
