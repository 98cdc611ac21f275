"""Positive views: per-level latent perturbations, pixel presets, the view sampler and the level grid."""

from solo_mlvgm.views.grid import level_grid, save_level_grid
from solo_mlvgm.views.pairs import LatentPair, latent_pair, render_pair, sample_latent_pair
from solo_mlvgm.views.perturbation import RandomPerturbation
from solo_mlvgm.views.pixel import PIXEL_PRESETS, build_pixel_augment, normalize
from solo_mlvgm.views.sampler import ViewPair, ViewSampler
from solo_mlvgm.views.spec import ViewSpec

__all__ = [
    "LatentPair",
    "PIXEL_PRESETS",
    "RandomPerturbation",
    "ViewPair",
    "ViewSampler",
    "ViewSpec",
    "build_pixel_augment",
    "latent_pair",
    "level_grid",
    "normalize",
    "render_pair",
    "sample_latent_pair",
    "save_level_grid",
]
