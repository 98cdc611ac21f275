"""Random latent perturbations: truncated Gaussian noise added to the base coordinates of a level."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from solo_mlvgm.errors import ConfigError
from solo_mlvgm.generators.base import truncated_normal_


@dataclass(frozen=True)
class RandomPerturbation:
    """delta = mean + std * N(0, 1) truncated to ±truncation (in std units), as Jahanian et al. and the paper."""

    mean: float = 0.0
    std: float = 1.0
    truncation: float = 2.0

    def __post_init__(self) -> None:
        if not self.std >= 0:
            raise ConfigError(f"perturbation std must be >= 0, got {self.std}")
        if not self.truncation > 0:
            raise ConfigError(f"perturbation truncation must be > 0, got {self.truncation}")

    def sample(self, n: int, dim: int, device: torch.device, generator: torch.Generator | None) -> Tensor:
        delta = torch.empty(n, dim, device=device)
        return truncated_normal_(delta, self.mean, self.std, self.truncation, generator=generator)
