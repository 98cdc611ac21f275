"""Latent perturbations of a level's base coordinates z: random (z + noise) or learned (z + p(z), a walker).

Both expose ``delta(z, rng)``, the change added to z, so the view sampler treats them alike.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor

from solo_mlvgm.errors import ConfigError
from solo_mlvgm.generators.base import truncated_normal_
from solo_mlvgm.views.walker import Walker


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

    def delta(self, z: Tensor, generator: torch.Generator | None = None) -> Tensor:
        return self.sample(z.shape[0], z.shape[1], z.device, generator)

    def describe(self) -> str:
        return f"std {self.std:g}"


@dataclass(frozen=True, eq=False)
class LearnedPerturbation:
    """delta = p(z) from a trained walker (deterministic: the walker decides the view from the anchor)."""

    walker: Walker
    source: str  # the walker file, for messages and run records
    meta: dict[str, Any] = field(default_factory=dict)

    def delta(self, z: Tensor, generator: torch.Generator | None = None) -> Tensor:
        if z.shape[1] != self.walker.dim:
            raise ConfigError(
                f"walker '{self.source}' expects {self.walker.dim} base coordinates, the level has {z.shape[1]}"
            )
        if next(self.walker.parameters()).device != z.device:
            self.walker.to(z.device)
        return self.walker(z.float()).to(z.dtype)

    def describe(self) -> str:
        return f"walker {self.source}"


Perturbation = RandomPerturbation | LearnedPerturbation
