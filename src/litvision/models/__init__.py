"""Architectures: plain ``nn.Module``s built as ``Net(num_classes, input_shape, **options)``.

Every class listed in ``ARCHITECTURES`` follows the :class:`ClassifierNet` contract; the tests walk
this tuple, so a new architecture added here is tested without writing a test.
"""

from litvision.models.base import ClassifierNet
from litvision.models.cnn import SimpleCNN
from litvision.models.resnet import CifarResNet
from litvision.models.rnn import RowRNN

ARCHITECTURES: tuple[type[ClassifierNet], ...] = (SimpleCNN, CifarResNet, RowRNN)

__all__ = ["ARCHITECTURES", "CifarResNet", "ClassifierNet", "RowRNN", "SimpleCNN"]
