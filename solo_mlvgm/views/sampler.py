"""Anchor and positive images from one batch of base latents, rendered together (``views.pairs``)."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from solo_mlvgm.generators.base import MultiLatentGenerator
from solo_mlvgm.views.pairs import LatentPair, render_pair, sample_latent_pair
from solo_mlvgm.views.perturbation import Perturbation
from solo_mlvgm.views.spec import ViewSpec


@dataclass
class ViewPair:
    anchor: Tensor  # [n, 3, H, W] in [0, 1]
    positive: Tensor
    labels: Tensor | None  # the anchor's class labels, or None
    base: Tensor  # [n, base_dim]


class ViewSampler:
    """Draws base latents, perturbs the levels named by a spec independently, renders both views."""

    def __init__(self, generator: MultiLatentGenerator, spec: ViewSpec) -> None:
        self.generator = generator
        self.spec = spec
        # Validates level names now, not at the first step.
        self.plan: list[tuple[tuple[int, ...], Perturbation]] = spec.resolve(generator)

    def sample_levels(self, n: int, rng: torch.Generator | None) -> LatentPair:
        """Base latents, anchor levels and positive levels; each planned level gets its own noise draw."""
        return sample_latent_pair(self.generator, n, self.plan, rng)

    @torch.no_grad()
    def __call__(self, n: int, rng: torch.Generator | None = None) -> ViewPair:
        pair = self.sample_levels(n, rng)
        anchor, positive = render_pair(self.generator, pair)
        with torch.autocast(pair.base.device.type, enabled=False):  # labels from fp32 latents, never bf16
            labels = self.generator.labels(pair.anchor)
        return ViewPair(anchor, positive, labels, pair.base)
