"""Architectures: plain ``nn.Module``s built as ``Net(num_classes, input_shape, **options)``.

Every class listed in ``ARCHITECTURES`` follows the :class:`ClassifierNet` contract; the tests walk
this tuple (and every config), so a new architecture added here is tested without writing a test.
"""

from litvision.models.base import ClassifierNet
from litvision.models.cnn import SimpleCNN
from litvision.models.multikernel import MultiKernelCNN
from litvision.models.resnet import CifarResNet
from litvision.models.rnn import RowRNN
from litvision.models.torchvision_net import DenseNet, TorchvisionNet
from litvision.models.vgg import VGG

ARCHITECTURES: tuple[type[ClassifierNet], ...] = (
    SimpleCNN,
    CifarResNet,
    RowRNN,
    VGG,
    TorchvisionNet,
    DenseNet,
    MultiKernelCNN,
)

__all__ = [
    "ARCHITECTURES",
    "CifarResNet",
    "ClassifierNet",
    "DenseNet",
    "MultiKernelCNN",
    "RowRNN",
    "SimpleCNN",
    "TorchvisionNet",
    "VGG",
]
