"""Latent perturbations of a level's base coordinates z: random (z + noise) or learned (z + p(z), a walker).

Both expose ``delta(z, rng)``, the change added to z, so the view sampler treats them alike.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor

from solo_mlvgm.errors import ConfigError
from solo_mlvgm.generators.base import truncated_normal_
from solo_mlvgm.views.walker import Walker


@dataclass(frozen=True)
class RandomPerturbation:
    """delta = mean + std * N(0, 1) truncated to ±truncation (in std units), as Jahanian et al. and the paper.

    The official code's probabilistic form, ``(low, high)``, is ``std=low, std_high=high, prob=0.5,
    per_batch=True``: the level is perturbed with probability ``prob``, with a std drawn uniformly from
    [std, std_high], decided once per batch as the official code does. ``per_batch=False`` (the default)
    decides per sample instead, so every batch mixes easy and hard positives. Draws per call, in a fixed
    order: the unit noise, then the stds, then who is perturbed (only the draws a setting needs).
    """

    mean: float = 0.0
    std: float = 1.0
    truncation: float = 2.0
    std_high: float | None = None  # per-sample std ~ U[std, std_high]
    prob: float = 1.0  # probability of being perturbed at all
    per_batch: bool = False  # one std and one perturbed-or-not decision for the whole batch

    def __post_init__(self) -> None:
        values = (self.mean, self.std, self.truncation, self.prob, self.std_high or 0.0)
        if not all(math.isfinite(v) for v in values):
            raise ConfigError(f"perturbation settings must be finite numbers, got {values}")
        if not self.std >= 0:
            raise ConfigError(f"perturbation std must be >= 0, got {self.std}")
        if not self.truncation > 0:
            raise ConfigError(f"perturbation truncation must be > 0, got {self.truncation}")
        if self.std_high is not None and not self.std_high >= self.std:
            raise ConfigError(f"perturbation std range [{self.std}, {self.std_high}] must have low <= high")
        if not 0 < self.prob <= 1:
            raise ConfigError(f"perturbation prob must be in (0, 1], got {self.prob}")

    def sample(self, n: int, dim: int, device: torch.device, generator: torch.Generator | None) -> Tensor:
        delta = torch.empty(n, dim, device=device)
        if self.std_high is None and self.prob == 1:
            return truncated_normal_(delta, self.mean, self.std, self.truncation, generator=generator)
        delta = truncated_normal_(delta, 0.0, 1.0, self.truncation, generator=generator)
        k = 1 if self.per_batch else n  # how many decisions: one for the batch, or one per sample
        std = torch.full((k, 1), self.std, device=device)
        if self.std_high is not None:
            std += torch.rand(k, 1, device=device, generator=generator) * (self.std_high - self.std)
        delta = self.mean + std * delta
        if self.prob < 1:
            delta *= torch.rand(k, 1, device=device, generator=generator) < self.prob
        return delta

    def delta(self, z: Tensor, generator: torch.Generator | None = None) -> Tensor:
        return self.sample(z.shape[0], z.shape[1], z.device, generator)

    def describe(self) -> str:
        std = f"std {self.std:g}" if self.std_high is None else f"std {self.std:g}-{self.std_high:g}"
        text = std if self.prob == 1 else f"{std}, p {self.prob:g}"
        varies = self.std_high is not None or self.prob < 1  # only then is there a decision per batch
        return f"{text}, per batch" if self.per_batch and varies else text


@dataclass(frozen=True, eq=False)
class LearnedPerturbation:
    """delta = p(z) from a trained walker: deterministic, the walker decides the view from the anchor (the
    paper's). With ``scale=(low, high)``, delta = s * p(z) with s ~ U[low, high] per sample: a stochastic
    walker, whose positives lie anywhere along the learned direction (e.g. (-1, 1): both ways)."""

    walker: Walker
    source: str  # the walker file, for messages and run records
    meta: dict[str, Any] = field(default_factory=dict)
    scale: tuple[float, float] | None = None

    def __post_init__(self) -> None:
        if self.scale is not None:
            low, high = self.scale
            if not (math.isfinite(low) and math.isfinite(high) and low <= high):
                raise ConfigError(
                    f"walker scale must be finite [low, high] with low <= high, got {list(self.scale)}"
                )

    def delta(self, z: Tensor, generator: torch.Generator | None = None) -> Tensor:
        if z.shape[1] != self.walker.dim:
            raise ConfigError(
                f"walker '{self.source}' expects {self.walker.dim} base coordinates, the level has {z.shape[1]}"
            )
        if next(self.walker.parameters()).device != z.device:
            self.walker.to(z.device)
        delta = self.walker(z.float()).to(z.dtype)
        if self.scale is None:
            return delta
        low, high = self.scale
        s = low + (high - low) * torch.rand(z.shape[0], 1, device=z.device, generator=generator)
        return delta * s.to(z.dtype)

    def describe(self) -> str:
        scaled = "" if self.scale is None else f" x U[{self.scale[0]:g}, {self.scale[1]:g}]"
        return f"walker {self.source}{scaled}"


Perturbation = RandomPerturbation | LearnedPerturbation
