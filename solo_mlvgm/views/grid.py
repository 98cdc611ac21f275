"""The paper's Figure 4 for any generator: anchors in the first row, then one row per level (or group, for
generators that address their levels in groups) perturbed alone."""

from __future__ import annotations

from pathlib import Path

import torch
from PIL import Image, ImageDraw, ImageFont
from torch import Tensor
from torchvision.transforms.functional import to_pil_image
from torchvision.utils import make_grid

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
    """Write the grid as a PNG, each row labelled on its left with its name (level and magnitude), and
    return the row names."""
    images, names = level_grid(generator, n_anchors=n_anchors, spec=spec, default=default, seed=seed)
    padding = 2
    grid = make_grid(images.float().cpu(), nrow=n_anchors, padding=padding, pad_value=1.0)
    labelled = _with_row_labels(to_pil_image(grid.clamp(0, 1)), names, images.shape[-2] + padding, padding)
    replace_atomically(path, lambda tmp: labelled.save(tmp, format="PNG"))
    return names


def _with_row_labels(grid: Image.Image, names: list[str], row_height: int, top: int) -> Image.Image:
    """``grid`` with a white margin on the left holding each row's name, centred on its row."""
    font = ImageFont.load_default()
    draw = ImageDraw.Draw(grid)
    widths = [int(draw.textbbox((0, 0), name, font=font)[2]) for name in names]
    margin = max(widths) + 8
    out = Image.new("RGB", (grid.width + margin, grid.height), "white")
    out.paste(grid, (margin, 0))
    canvas = ImageDraw.Draw(out)
    for row, name in enumerate(names):
        box = canvas.textbbox((0, 0), name, font=font)
        y = top + row * row_height + int(row_height - (box[3] - box[1])) // 2 - int(box[1])
        canvas.text((4, y), name, fill="black", font=font)
    return out
