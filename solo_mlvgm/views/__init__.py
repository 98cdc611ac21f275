"""Positive views: per-level latent perturbations, pixel presets, the view sampler and the level grid."""

from solo_mlvgm.views.grid import level_grid, save_level_grid
from solo_mlvgm.views.perturbation import RandomPerturbation
from solo_mlvgm.views.pixel import PIXEL_PRESETS, build_pixel_augment, normalize
from solo_mlvgm.views.sampler import ViewPair, ViewSampler
from solo_mlvgm.views.spec import ViewSpec

__all__ = [
    "PIXEL_PRESETS",
    "RandomPerturbation",
    "ViewPair",
    "ViewSampler",
    "ViewSpec",
    "build_pixel_augment",
    "level_grid",
    "normalize",
    "save_level_grid",
]
