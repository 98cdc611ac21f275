"""Backbones by name: torchvision ResNets (optionally with a small-image stem) and a CPU-sized convnet,
also behind a per-image standardisation."""

from __future__ import annotations

from collections.abc import Callable

from torch import Tensor, nn
from torchvision import models

from solo_mlvgm.errors import ConfigError


def _conv_bn_relu(c_in: int, c_out: int) -> list[nn.Module]:
    return [nn.Conv2d(c_in, c_out, 3, padding=1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU(inplace=True)]


def convnet6(widths: tuple[int, ...] = (16, 32, 32, 64, 64, 64)) -> tuple[nn.Module, int]:
    """Six 3x3 conv-BN-ReLU layers, 2x2 max-pooling after the 1st, 3rd and 5th (~107k parameters).

    Sized for CPU runs on 32-64 px images: an order of magnitude cheaper per step than a ResNet-18.
    """
    layers: list[nn.Module] = []
    c_in = 3
    for i, width in enumerate(widths):
        layers += _conv_bn_relu(c_in, width)
        if i in (0, 2, 4):
            layers.append(nn.MaxPool2d(2))
        c_in = width
    layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten()]
    return nn.Sequential(*layers), c_in


class PerImageStandardise(nn.Module):
    """Subtract each image's mean and divide by its standard deviation, over all its pixels and channels.

    Exactly invariant to one positive scale and one offset of an image's input values. SimCLR's brightness
    and contrast jitter is such a change of the [0, 1] image; the ImageNet normalisation that follows
    turns it into a change with slightly different offsets per channel (and the jitter clips), so the
    backbone is only nearly invariant to it (tested: its features change by less than 15% where plain
    convnet6's change by more than 20%). On the toy world, SimSiam and BYOL on plain ``convnet6`` kept only
    a few feature directions under that jitter and probed below a random backbone (README, "Comparing
    view strategies"). ``eps`` only keeps a flat image finite: its noise is stretched to unit variance.
    """

    def __init__(self, eps: float = 1e-5) -> None:
        super().__init__()
        self.eps = eps

    def extra_repr(self) -> str:
        return f"eps={self.eps}"

    def forward(self, images: Tensor) -> Tensor:
        mean = images.mean(dim=(1, 2, 3), keepdim=True)
        std = images.std(dim=(1, 2, 3), keepdim=True)
        return (images - mean) / (std + self.eps)


def convnet6_standardised() -> tuple[nn.Module, int]:
    """``convnet6`` behind :class:`PerImageStandardise` (no parameters added)."""
    net, dim = convnet6()
    return nn.Sequential(PerImageStandardise(), *net.children()), dim


def _resnet(factory: Callable[..., models.ResNet], small_image_stem: bool) -> tuple[nn.Module, int]:
    net = factory(weights=None)
    if small_image_stem:  # 32-64 px inputs: 3x3 stride-1 stem and no max-pool, as for CIFAR
        net.conv1 = nn.Conv2d(3, 64, 3, stride=1, padding=1, bias=False)
        net.maxpool = nn.Identity()
    dim = net.fc.in_features
    net.fc = nn.Identity()
    return net, dim


BACKBONES: dict[str, Callable[[bool], tuple[nn.Module, int]]] = {
    "convnet6": lambda small_image_stem: convnet6(),
    "convnet6_standardised": lambda small_image_stem: convnet6_standardised(),
    "resnet18": lambda small_image_stem: _resnet(models.resnet18, small_image_stem),
    "resnet50": lambda small_image_stem: _resnet(models.resnet50, small_image_stem),
}


def build_backbone(name: str, small_image_stem: bool = False) -> tuple[nn.Module, int]:
    """(backbone mapping images to flat features, feature dimension)."""
    if name not in BACKBONES:
        raise ConfigError(f"unknown backbone '{name}'; known: {', '.join(BACKBONES)}")
    return BACKBONES[name](small_image_stem)
