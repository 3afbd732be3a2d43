"""Every architecture in litvision.models.ARCHITECTURES honours the shared contract."""

from __future__ import annotations

import pytest
import torch
import torchvision
from torch import nn

from litvision.errors import LitvisionError
from litvision.models import (
    ARCHITECTURES,
    VGG,
    CifarResNet,
    DenseNet,
    MultiKernelCNN,
    RowRNN,
    SimpleCNN,
    TorchvisionNet,
)
from litvision.models.layers import GaussianNoise
from litvision.models.pretrained import WeightsNotFoundError

SHAPES = [(3, 32, 32), (1, 28, 28), (1, 8, 8), (3, 64, 48)]
# Variants reached from YAML that change the structure, checked like the defaults.
VARIANTS = [
    (VGG, {"depth": 11, "batch_norm": True}),
    (DenseNet, {"factorized": True, "noise_std": 0.005}),
    (TorchvisionNet, {"name": "mobilenet_v3_small"}),
    (RowRNN, {"cell": "elman"}),
    (CifarResNet, {"activation": "elu", "width": 16}),
]
CASES = [(arch, {}) for arch in ARCHITECTURES] + VARIANTS


def n_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def case_id(case) -> str:
    arch, options = case
    return arch.__name__ + "".join(f"-{k}={v}" for k, v in options.items())


@pytest.mark.parametrize("case", CASES, ids=case_id)
def test_contract(case):
    arch, options = case
    for shape in [s for s in SHAPES if min(s[1:]) >= arch.min_size]:
        torch.manual_seed(0)
        model = arch(7, shape, **options)
        x = torch.randn(4, *shape, requires_grad=True)
        features = model.pooled_features(x)
        assert features.shape == (4, model.num_features), shape
        logits = model(x)
        assert logits.shape == (4, 7)
        assert torch.isfinite(logits).all()
        logits.sum().backward()
        assert x.grad is not None and x.grad.abs().sum() > 0, "gradients do not reach the input"
        assert all(p.grad is not None for p in model.parameters() if p.requires_grad)
        model.eval()
        with torch.no_grad():
            features = model.pooled_features(x)
            assert torch.equal(model.head(model.pre_logits(features)), model(x))


@pytest.mark.parametrize("arch", ARCHITECTURES, ids=lambda a: a.__name__)
def test_smallest_accepted_images(arch):
    side = arch.min_size
    assert arch(3, (3, side, side))(torch.zeros(2, 3, side, side)).shape == (2, 3)


def test_cifar_resnet18_matches_torchvision_apart_from_the_stem():
    ours = CifarResNet(1000, (3, 224, 224))
    theirs = torchvision.models.resnet18()
    stem_difference = 64 * 3 * (7 * 7 - 3 * 3)  # torchvision's 7x7 stem against our 3x3 one
    assert n_params(ours) == n_params(theirs) - stem_difference


def test_imagenet_stem_is_torchvisions_resnet18():
    ours = CifarResNet(1000, (3, 224, 224), stem="imagenet")
    assert n_params(ours) == n_params(torchvision.models.resnet18())
    assert ours.stem(torch.zeros(1, 3, 224, 224)).shape == (1, 64, 56, 56)  # four-fold smaller


@pytest.mark.parametrize("side, reduction", [(32, 1), (64, 1), (65, 4), (224, 4)])
def test_auto_stem_keeps_small_images_whole_and_shrinks_photos(side, reduction):
    model = CifarResNet(3, (3, side, side), width=8, stem="auto")
    assert model.stem(torch.zeros(1, 3, side, side)).shape[-1] == -(-side // reduction)


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
    assert not torch.allclose(model.pooled_features(x), model.pooled_features(y))


def test_simple_cnn_rejects_images_too_small_for_its_pooling():
    with pytest.raises(ValueError, match=r"too small for 3 pooling stages"):
        SimpleCNN(10, (1, 4, 4))


def tv_params(name: str) -> int:
    with torch.device("meta"):  # count without initialising hundreds of millions of weights
        return n_params(torchvision.models.get_model(name))


@pytest.mark.parametrize("depth, batch_norm", [(11, False), (11, True), (16, False), (16, True)])
def test_vgg_features_match_torchvision(depth, batch_norm):
    name = f"vgg{depth}_bn" if batch_norm else f"vgg{depth}"
    with torch.device("meta"):
        theirs = torchvision.models.get_model(name).features
    ours = VGG(10, depth=depth, batch_norm=batch_norm)
    assert n_params(ours.features) == n_params(theirs)
    assert [type(m) for m in ours.features] == [type(m) for m in theirs]


def test_torchvision_resnet50_and_densenet121_match_torchvision():
    assert n_params(TorchvisionNet(1000, name="resnet50")) == tv_params("resnet50")
    assert n_params(DenseNet(1000)) == tv_params("densenet121")
    assert TorchvisionNet(10, name="resnet50").num_features == 2048


def test_torchvision_net_adapts_grey_input():
    model = TorchvisionNet(10, (1, 32, 32), name="resnet18")
    assert model.body.conv1.in_channels == 1
    assert model(torch.zeros(2, 1, 32, 32)).shape == (2, 10)


def test_unknown_torchvision_model_is_named():
    with pytest.raises(LitvisionError, match="torchvision has no classification model 'resnet51'"):
        TorchvisionNet(10, name="resnet51")


def test_densenet_model_b_factorizes_dense_layers():
    plain, model_b = DenseNet(10), DenseNet(10, factorized=True)
    convs = [m for m in model_b.modules() if isinstance(m, nn.Conv2d)]
    assert sum(c.kernel_size == (1, 3) for c in convs) == sum(c.kernel_size == (3, 1) for c in convs) == 58
    assert not any(c.kernel_size == (3, 3) for c in convs)
    assert n_params(model_b) < n_params(plain)


def test_densenet_noise_only_in_training_on_the_first_six_layers():
    model = DenseNet(10, (3, 32, 32), factorized=True, noise_std=0.005)
    noise = [m for m in model.modules() if isinstance(m, GaussianNoise)]
    assert len(noise) == 6 and all(m.std == 0.005 for m in noise)
    x = torch.randn(2, 3, 32, 32)
    model.eval()
    assert torch.equal(model(x), model(x)), "evaluation must be deterministic"
    model.train()
    for m in model.modules():  # keep BatchNorm's batch statistics out of the comparison
        if isinstance(m, nn.BatchNorm2d):
            m.eval()
    assert not torch.equal(model(x), model(x)), "training adds noise"


def test_multikernel_block_structure():
    model = MultiKernelCNN(10)
    blocks = model.blocks
    assert sum(isinstance(m, nn.MaxPool2d) for m in blocks) == 3
    kinds = [type(m).__name__ for m in blocks]
    assert [i for i, k in enumerate(kinds) if k == "MaxPool2d"] == [2, 5, 7]  # after blocks 2, 4 and 5
    first = blocks[0]
    assert [c.kernel_size for c in first.convs] == [(1, 1), (3, 3), (5, 5)]
    weights = first.gate(torch.randn(3, 3, 32, 32))
    assert weights.shape == (3, 3) and torch.allclose(weights.sum(1), torch.ones(3))


def test_pretrained_weights_offline_give_one_clear_line(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    monkeypatch.setenv("https_proxy", "http://127.0.0.1:9")  # nothing listens: the download fails at once
    monkeypatch.setenv("HTTPS_PROXY", "http://127.0.0.1:9")
    with pytest.raises(WeightsNotFoundError) as err:
        VGG(10, depth=11, pretrained=True)
    message = str(err.value)
    assert "\n" not in message
    assert "https://download.pytorch.org/models/vgg11" in message and str(tmp_path) in message


@pytest.mark.parametrize("head", ["linear", "cosine"])
def test_resnet32_can_start_from_cao_et_al_initialisation(head):
    """``init: fan_in`` is Cao et al.'s ResNet-32 code: He-normal weights of standard deviation
    sqrt(2 / fan_in) on every convolution and the linear head; their cosine head's rows have norm 1."""
    torch.manual_seed(0)
    net = CifarResNet(
        10, layers=(5, 5, 5), width=16, shortcut="pad", zero_init_residual=False, head=head, init="fan_in"
    )
    for m in net.modules():
        if isinstance(m, (torch.nn.Conv2d, torch.nn.Linear)):
            fan_in = m.weight[0].numel()
            assert m.weight.std().item() == pytest.approx((2 / fan_in) ** 0.5, rel=0.15), m
    if head == "cosine":
        assert torch.linalg.norm(net.head.weight, dim=1).tolist() == pytest.approx([1.0] * 10)
        assert net.head.weight.abs().max() < 1
    else:
        assert isinstance(net.head, torch.nn.Linear)
    # torchvision's (the default): convolutions by their outputs; the stem's 3 inputs make the two differ.
    stem = CifarResNet(10, layers=(5, 5, 5), width=16).stem[0].weight
    assert stem.std().item() == pytest.approx((2 / (16 * 9)) ** 0.5, rel=0.15)


def test_resnet32_option_is_he_et_al_cifar_network():
    """He et al. 2016's CIFAR ResNet-32 (6n + 2 layers, n = 5) as Cao et al. 2019 use it: three stages of
    five basic blocks with 16/32/64 channels, parameter-free (option A) shortcuts, 0.46 M parameters."""
    from litvision.models.resnet import BasicBlock, PadShortcut

    net = CifarResNet(10, (3, 32, 32), layers=(5, 5, 5), width=16, shortcut="pad", zero_init_residual=False)
    stages = [[b for b in stage if isinstance(b, BasicBlock)] for stage in net.stages]
    assert [len(s) for s in stages] == [5, 5, 5]
    assert [s[0].conv2.out_channels for s in stages] == [16, 32, 64]
    convs = [m for m in net.modules() if isinstance(m, torch.nn.Conv2d)]
    assert len(convs) + 1 == 32 and all(m.kernel_size == (3, 3) for m in convs), "31 convs + the fc layer"
    assert sum(isinstance(m, PadShortcut) for m in net.modules()) == 2
    assert sum(p.numel() for p in net.parameters()) == 464_154
    assert net(torch.rand(2, 3, 32, 32)).shape == (2, 10)
