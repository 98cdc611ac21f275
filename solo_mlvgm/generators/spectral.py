"""Spectrally normalised layers with the state-dict layout of BigGAN-PyTorch checkpoints.

Each layer keeps its raw ``weight`` (and ``bias``) plus the power-iteration buffers ``u0`` (``[1, out]``)
and ``sv0`` (``[1]``). In evaluation the normalised weight is ``W / sigma`` with sigma from ONE power
iteration started at the stored ``u0``, which is never updated: the result depends only on the stored
tensors, so it is computed once (``fold``) and reused; the state dict keeps the raw tensors.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

SN_EPS = 1e-4


def one_step_sigma(weight: Tensor, u: Tensor, eps: float = SN_EPS) -> Tensor:
    """The spectral-norm estimate of one power-iteration step from ``u`` (weight viewed as ``[out, -1]``)."""
    w = weight.reshape(weight.shape[0], -1)
    v = F.normalize(u @ w, dim=1, eps=eps)
    u_next = F.normalize(v @ w.t(), dim=1, eps=eps)
    return ((v @ w.t()) @ u_next.t()).squeeze()


class SpectralNormed(nn.Module):
    """Base of the SN layers: raw weight, optional bias, ``u0``/``sv0`` buffers, a folded weight cache."""

    # Buffers (registered below), declared so they type as tensors rather than ``Tensor | Module``.
    u0: Tensor
    sv0: Tensor
    folded: Tensor | None

    def __init__(self, weight_shape: tuple[int, ...], bias: bool) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.empty(weight_shape))
        self.bias = nn.Parameter(torch.zeros(weight_shape[0])) if bias else None
        nn.init.normal_(self.weight, std=0.02)  # random weights (timing, tests); the scale is normalised away
        self.register_buffer("u0", F.normalize(torch.randn(1, weight_shape[0]), dim=1, eps=SN_EPS))
        self.register_buffer("sv0", torch.ones(1))
        self.register_buffer("folded", None, persistent=False)

    def fold(self) -> None:
        """Compute the normalised weight once from the stored tensors (call again after loading weights)."""
        with torch.no_grad():
            self.folded = self.weight / one_step_sigma(self.weight, self.u0)

    def unfold(self) -> None:
        self.folded = None

    def normalized_weight(self) -> Tensor:
        if self.folded is not None:
            return self.folded
        return self.weight / one_step_sigma(self.weight, self.u0)


class SNLinear(SpectralNormed):
    def __init__(self, in_features: int, out_features: int, bias: bool = True) -> None:
        super().__init__((out_features, in_features), bias)

    def forward(self, x: Tensor) -> Tensor:
        return F.linear(x, self.normalized_weight(), self.bias)


class SNConv2d(SpectralNormed):
    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, bias: bool = True) -> None:
        super().__init__((out_channels, in_channels, kernel_size, kernel_size), bias)
        self.padding = kernel_size // 2

    def forward(self, x: Tensor) -> Tensor:
        return F.conv2d(x, self.normalized_weight(), self.bias, padding=self.padding)
