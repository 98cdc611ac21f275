"""Monte Carlo estimate of a walker's perturbation magnitude: mu and sigma of ||T(z) - z|| on the level.

The norm is measured on the level's latents as the generator feeds them (``to_levels``): for levels that
are chunks of z (toy world, BigBiGAN) that is ||p(z)||; for mapped levels (StyleGAN2's w's) it is the
change of the group's mapped latents, as the paper measures it.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from solo_mlvgm.generators.base import MultiLatentGenerator
from solo_mlvgm.views.pairs import LatentPair, sample_latent_pair
from solo_mlvgm.views.walker import Walker


@dataclass(frozen=True)
class PerturbationStats:
    mu: float
    sigma: float
    samples: int


def level_change_norms(pair: LatentPair) -> Tensor:
    """||positive levels - anchor levels|| over the perturbed levels, per sample."""
    changed = [i for indices, _ in pair.deltas for i in indices]
    change = torch.cat([(pair.positive[i] - pair.anchor[i]).flatten(1) for i in changed], dim=1)
    return change.float().norm(dim=1)


@torch.no_grad()
def monte_carlo_stats(
    generator: MultiLatentGenerator,
    walker: Walker,
    indices: tuple[int, ...],
    samples: int = 100_000,
    chunk: int = 8192,
    seed: int = 0,
) -> PerturbationStats:
    """mu and sigma (population) of the walker's perturbation norm over ``samples`` anchors."""
    device = generator.device
    walker = walker.to(device)
    rng = torch.Generator(device=device).manual_seed(seed)
    sums = torch.zeros(2, dtype=torch.float64, device=device)  # sum of norms, sum of squares: one sync
    done = 0
    while done < samples:
        n = min(chunk, samples - done)
        norms = level_change_norms(sample_latent_pair(generator, n, [(indices, walker)], rng)).double()
        sums += torch.stack([norms.sum(), (norms * norms).sum()])
        done += n
    total, total_sq = sums.tolist()
    mu = total / samples
    sigma = max(total_sq / samples - mu * mu, 0.0) ** 0.5
    return PerturbationStats(mu=mu, sigma=sigma, samples=samples)
