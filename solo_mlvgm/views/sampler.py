"""Anchor and positive images from one batch of base latents, rendered together (``views.pairs``); or an
anchor and several positives, each perturbed with its own noise (multi-view, for n crops)."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from solo_mlvgm.generators.base import MultiLatentGenerator
from solo_mlvgm.views.pairs import LatentPair, latent_pair, render_pair, sample_latent_pair
from solo_mlvgm.views.perturbation import Perturbation
from solo_mlvgm.views.spec import ViewSpec


@dataclass
class ViewPair:
    anchor: Tensor  # [n, 3, H, W] in [0, 1]
    positive: Tensor
    labels: Tensor | None  # the anchor's class labels, or None
    base: Tensor  # [n, base_dim]


@dataclass
class MultiView:
    images: list[Tensor]  # the anchor, then each positive: [n, 3, H, W] in [0, 1]
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

    @torch.no_grad()
    def views(
        self, n: int, num_views: int, rng: torch.Generator | None = None, base: Tensor | None = None
    ) -> MultiView:
        """The anchor and ``num_views - 1`` positives of ``n`` fresh base latents (or of ``base``): every
        positive perturbs the planned levels with its own draw (many positives for the cost of one anchor).
        All are rendered in one generator pass; without a perturbation every view is the anchor image."""
        if num_views < 1:
            raise ValueError(f"num_views must be >= 1, got {num_views}")
        if base is None:
            first = self.sample_levels(n, rng)
        else:
            first = latent_pair(self.generator, base, self.plan, rng)
        pairs = [first] + [
            latent_pair(self.generator, first.base, self.plan, rng) for _ in range(num_views - 2)
        ]
        with torch.autocast(first.base.device.type, enabled=False):  # labels from fp32 latents, never bf16
            labels = self.generator.labels(first.anchor)
        if num_views == 1 or first.first_changed is None:
            anchor = self.generator(first.anchor)
            return MultiView([anchor] * num_views, labels, first.base)
        levels = [
            torch.cat([first.anchor[i], *(p.positive[i] for p in pairs)]) for i in range(len(first.anchor))
        ]
        return MultiView(list(self.generator(levels).chunk(num_views)), labels, first.base)
