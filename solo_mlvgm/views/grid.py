"""The paper's Figure 4 for any generator: anchors in the first row, then one row per level (or group, for
generators that address their levels in groups) perturbed alone."""

from __future__ import annotations

from pathlib import Path

import torch
from torch import Tensor
from torchvision.utils import make_grid, save_image

from solo_mlvgm.generators.base import MultiLatentGenerator
from solo_mlvgm.runs import replace_atomically
from solo_mlvgm.views.pairs import latent_pair
from solo_mlvgm.views.perturbation import Perturbation, RandomPerturbation
from solo_mlvgm.views.spec import ViewSpec

UNIT_PERTURBATION = RandomPerturbation(std=1.0)


@torch.no_grad()
def level_grid(
    generator: MultiLatentGenerator,
    n_anchors: int = 8,
    spec: ViewSpec | None = None,
    default: RandomPerturbation = UNIT_PERTURBATION,
    seed: int = 0,
) -> tuple[Tensor, list[str]]:
    """Images ``[(1 + n_units) * n_anchors, 3, H, W]`` and the row names (``generator.units()``).

    Each unit uses the spec's perturbation where the spec names exactly that unit, else ``default``.
    """
    rng = torch.Generator(device=generator.device).manual_seed(seed)
    base = generator.sample_base(n_anchors, generator=rng)
    magnitudes: dict[tuple[int, ...], Perturbation] = {}
    if spec is not None:
        magnitudes = dict(spec.resolve(generator))
    rows, names = [generator(generator.to_levels(base))], ["anchor"]
    for name, indices in generator.units():
        p = magnitudes.get(indices, default)
        # Only the positive is rendered: the anchors are the first row, shared by every unit.
        rows.append(generator(latent_pair(generator, base, [(indices, p)], rng).positive))
        names.append(f"{name} ({p.describe()})")
    return torch.cat(rows), names


def save_level_grid(
    path: str | Path,
    generator: MultiLatentGenerator,
    n_anchors: int = 8,
    spec: ViewSpec | None = None,
    default: RandomPerturbation = UNIT_PERTURBATION,
    seed: int = 0,
) -> list[str]:
    """Write the grid as a PNG (one row per entry of the returned names) and return the row names."""
    images, names = level_grid(generator, n_anchors=n_anchors, spec=spec, default=default, seed=seed)
    grid = make_grid(images.float().cpu(), nrow=n_anchors, padding=2, pad_value=1.0)
    replace_atomically(path, lambda tmp: save_image(grid, tmp))
    return names
