"""Every architecture in litvision.models.ARCHITECTURES honours the shared contract."""

from __future__ import annotations

import pytest
import torch
import torchvision
from torch import nn

from litvision.models import ARCHITECTURES, CifarResNet, RowRNN, SimpleCNN

SHAPES = [(3, 32, 32), (1, 28, 28), (1, 8, 8), (3, 64, 48)]


def n_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "x".join(map(str, s)))
@pytest.mark.parametrize("arch", ARCHITECTURES, ids=lambda a: a.__name__)
def test_contract(arch, shape):
    torch.manual_seed(0)
    model = arch(7, shape)
    x = torch.randn(4, *shape, requires_grad=True)
    features = model.forward_features(x)
    assert features.shape == (4, model.num_features)
    assert torch.equal(model.forward_head(features, pre_logits=True), features)
    logits = model(x)
    assert logits.shape == (4, 7)
    assert torch.isfinite(logits).all()
    logits.sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0, "gradients do not reach the input"
    assert all(p.grad is not None for p in model.parameters() if p.requires_grad)


def test_cifar_resnet18_matches_torchvision_apart_from_the_stem():
    ours = CifarResNet(1000, (3, 224, 224))
    theirs = torchvision.models.resnet18()
    stem_difference = 64 * 3 * (7 * 7 - 3 * 3)  # torchvision's 7x7 stem against our 3x3 one
    assert n_params(ours) == n_params(theirs) - stem_difference


def test_cifar_resnet_keeps_32x32_resolution_in_the_stem():
    model = CifarResNet(10)
    stem_out = model.stem(torch.zeros(1, 3, 32, 32))
    assert stem_out.shape == (1, 64, 32, 32)  # no stride, no max-pool


@pytest.mark.parametrize(
    "activation, cls", [("relu", nn.ReLU), ("leaky_relu", nn.LeakyReLU), ("elu", nn.ELU)]
)
def test_cifar_resnet_activation(activation, cls):
    model = CifarResNet(10, activation=activation)
    activations = {type(m) for m in model.modules() if isinstance(m, (nn.ReLU, nn.LeakyReLU, nn.ELU))}
    assert activations == {cls}


@pytest.mark.parametrize("width", [32, 64, 128])
def test_cifar_resnet_width(width):
    model = CifarResNet(10, width=width)
    assert model.num_features == 8 * width
    assert model.stem[0].out_channels == width


def test_cifar_resnet_rejects_unknown_activation():
    with pytest.raises(ValueError, match="activation='gelu' is not one of"):
        CifarResNet(10, activation="gelu")


@pytest.mark.parametrize("cell, rnn_type", [("elman", nn.RNN), ("lstm", nn.LSTM)])
def test_row_rnn_reads_rows_as_time_steps(cell, rnn_type):
    model = RowRNN(10, (3, 5, 7), cell=cell, hidden_size=16)
    assert isinstance(model.rnn, rnn_type)
    assert model.rnn.input_size == 3 * 7 and model.rnn.hidden_size == 16
    # The features are the state after the last row: changing only the last row changes them.
    x = torch.randn(2, 3, 5, 7)
    y = x.clone()
    y[:, :, -1] += 1
    assert not torch.allclose(model.forward_features(x), model.forward_features(y))


def test_simple_cnn_rejects_images_too_small_for_its_pooling():
    with pytest.raises(ValueError, match=r"too small for 3 pooling stages"):
        SimpleCNN(10, (1, 4, 4))
