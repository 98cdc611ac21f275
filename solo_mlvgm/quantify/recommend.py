"""Recommended views from a quantification table: which levels to perturb, and how strongly.

Rule (the paper's two phases, made automatic):

1. Leave out the levels whose verdict is ``over-used`` (a small change already costs gamma nats: such views
   lose the content) and ``unused`` (a change costs nothing: such views add no diversity).
2. For each remaining level, choose the random perturbation's std so that the expected size of its change
   on the level, E||Delta level||, is ``magnitude_fraction`` x mu: a fixed fraction of the change that costs
   gamma nats (default 1: each level's view alone costs about gamma nats of MI). Levels the generator reads weakly get proportionally larger noise, so each level's view moves
   the image by a similar amount (the paper: "latents 2-5 obtain relevant semantic changes with a similar
   perturbation magnitude"). E||Delta|| is measured by Monte Carlo with unit noise and rescaled a few times,
   which is exact for levels that are chunks of z and converges for mapped levels (StyleGAN2's w's).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from solo_mlvgm.generators.base import MultiLatentGenerator
from solo_mlvgm.quantify.monte_carlo import level_change_norms
from solo_mlvgm.views.pairs import sample_latent_pair
from solo_mlvgm.views.perturbation import RandomPerturbation


@torch.no_grad()
def std_for_change(
    generator: MultiLatentGenerator,
    indices: tuple[int, ...],
    target: float,
    truncation: float = 2.0,
    samples: int = 4096,
    iterations: int = 4,
    seed: int = 0,
) -> float:
    """The std whose truncated-normal noise on the level's base coordinates changes the level by ``target``
    on average (in the norm of ``monte_carlo``)."""
    std = 1.0
    for _ in range(iterations):
        rng = torch.Generator(device=generator.device).manual_seed(seed)  # same draws: a smooth fixed point
        noise = RandomPerturbation(std=std, truncation=truncation)
        measured = float(
            level_change_norms(sample_latent_pair(generator, samples, [(indices, noise)], rng)).mean()
        )
        if measured <= 0:
            return 0.0
        std *= target / measured
    return std


def recommended_views(
    generator: MultiLatentGenerator,
    records: Sequence[dict[str, Any]],
    magnitude_fraction: float = 1.0,
    truncation: float = 2.0,
    pixel: str = "no_color",
    crop_min_scale: float = 0.2,
) -> dict[str, Any]:
    """A ``views`` config block (see ``ViewSpec``) from a table with verdicts."""
    perturb = {}
    for r in records:
        if r["verdict"] != "used":
            continue
        std = std_for_change(generator, tuple(r["indices"]), magnitude_fraction * r["mu"], truncation)
        perturb[r["level"]] = {"mean": 0.0, "std": round(std, 4), "truncation": truncation}
    return {"name": "mi_recommended", "pixel": pixel, "crop_min_scale": crop_min_scale, "perturb": perturb}
