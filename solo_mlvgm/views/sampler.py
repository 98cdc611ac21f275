"""Anchor and positive images from one batch of base latents, rendered together (``forward_pair``)."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from solo_mlvgm.generators.base import MultiLatentGenerator
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
        self.plan = spec.resolve(generator)  # validates level names now, not at the first step

    def sample_levels(self, n: int, rng: torch.Generator | None) -> tuple[Tensor, list[Tensor], list[Tensor]]:
        """Base latents, anchor levels and positive levels; each planned level gets its own noise draw."""
        g = self.generator
        base = g.sample_base(n, generator=rng)
        deltas = [(idx, p.delta(base[:, g.coords_of(idx)], rng)) for idx, p in self.plan]
        anchor = g.to_levels(base)
        return base, anchor, g.perturb(base, deltas, anchor)

    @torch.no_grad()
    def __call__(self, n: int, rng: torch.Generator | None = None) -> ViewPair:
        base, anchor_levels, positive_levels = self.sample_levels(n, rng)
        if not self.plan:  # synth: the positive is the anchor itself, render once
            anchor = self.generator(anchor_levels)
            positive = anchor
        else:
            first_changed = min(i for idx, _ in self.plan for i in idx)
            anchor, positive = self.generator.forward_pair(anchor_levels, positive_levels, first_changed)
        with torch.autocast(base.device.type, enabled=False):  # labels from fp32 latents, never bf16
            labels = self.generator.labels(anchor_levels)
        return ViewPair(anchor, positive, labels, base)
