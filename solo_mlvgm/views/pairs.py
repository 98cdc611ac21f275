"""Anchor and positive latents (and images) from one batch of base latents: the one place where a plan of
per-level perturbations becomes a view pair, for the view sampler, the level grid, the MI game and Monte Carlo.

Two layers, so that callers needing only latents (Monte Carlo) never render:

- ``latent_pair``: draw each planned level's delta from its base coordinates, map the base to per-level
  latents (the anchor) and perturb them (the positive); ``sample_latent_pair`` draws the base first.
- ``render_pair``: render anchor and positive together (``forward_pair``, which shares the work on the
  levels before the first perturbed one).

Random draws happen in one fixed order, the base and then one delta per plan entry in plan order, so a
seeded result is the same whichever caller asks for it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

import torch
from torch import Tensor

from solo_mlvgm.generators.base import MultiLatentGenerator


class DeltaSource(Protocol):
    """What a level's base coordinates z move by: random noise, a loaded walker or a walker in training."""

    def delta(self, z: Tensor, generator: torch.Generator | None = None) -> Tensor: ...


# (level indices, what moves their base coordinates): one entry per level or group perturbed independently.
Plan = Sequence[tuple[tuple[int, ...], DeltaSource]]


@dataclass(frozen=True)
class LatentPair:
    base: Tensor  # [n, base_dim]
    anchor: list[Tensor]  # per-level latents of ``base``
    positive: list[Tensor]  # ``anchor`` with each planned level replaced; the others are the same tensors
    deltas: list[tuple[tuple[int, ...], Tensor]]  # what was added to each planned level's base coordinates

    @property
    def first_changed(self) -> int | None:
        """The first perturbed level (the two views agree on every level before it), None when none is."""
        return min((i for indices, _ in self.deltas for i in indices), default=None)


def latent_pair(
    generator: MultiLatentGenerator, base: Tensor, plan: Plan, rng: torch.Generator | None = None
) -> LatentPair:
    """Anchor and positive levels of ``base``; each plan entry draws its own delta, in plan order."""
    deltas = [(indices, p.delta(base[:, generator.coords_of(indices)], rng)) for indices, p in plan]
    anchor = generator.to_levels(base)
    return LatentPair(base, anchor, generator.perturb(base, deltas, anchor), deltas)


def sample_latent_pair(
    generator: MultiLatentGenerator, n: int, plan: Plan, rng: torch.Generator | None = None
) -> LatentPair:
    """``latent_pair`` of ``n`` fresh base latents, drawn from ``rng`` before the deltas."""
    return latent_pair(generator, generator.sample_base(n, generator=rng), plan, rng)


def render_pair(generator: MultiLatentGenerator, pair: LatentPair) -> tuple[Tensor, Tensor]:
    """Anchor and positive images ``[n, 3, H, W]``; without a perturbation the positive is the anchor
    itself (rendered once)."""
    first_changed = pair.first_changed
    if first_changed is None:
        anchor = generator(pair.anchor)
        return anchor, anchor
    return generator.forward_pair(pair.anchor, pair.positive, first_changed)
