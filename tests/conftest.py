"""Shared fixtures: tiny toy worlds, specs, and hydra configs composed from the real config files."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from hydra import compose, initialize_config_dir
from omegaconf import DictConfig

from solo_mlvgm.generators import build_generator
from solo_mlvgm.views import ViewSpec
from solo_mlvgm.views.pixel import IMAGENET_MEAN, IMAGENET_STD

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = ROOT / "configs"

# Overrides that make any pretraining config finish in seconds on a CPU; TINY adds small projection heads
# (for the self-supervised methods, which have them).
TINY_RUN = [
    "optimizer.batch_size=16",
    "data.epoch_size=64",
    "max_epochs=1",
    "max_steps=3",
    "log_every_n_steps=1",
    "scheduler.warmup_epochs=0.5",  # within the one epoch (mlvgm_simsiam warms up for one)
]
TINY = [*TINY_RUN, "method_kwargs.proj_hidden_dim=32", "method_kwargs.proj_output_dim=16"]


def denormalise(images: torch.Tensor) -> torch.Tensor:
    """``[B, 3, H, W]`` images normalised with ImageNet's mean and std (the pixel presets' output) -> [0, 1]."""
    mean = torch.tensor(IMAGENET_MEAN)[None, :, None, None]
    std = torch.tensor(IMAGENET_STD)[None, :, None, None]
    return images * std + mean


def compose_cfg(config_name: str, overrides: list[str] | None = None) -> DictConfig:
    with initialize_config_dir(config_dir=str(CONFIGS), version_base="1.3"):
        return compose(config_name=config_name, overrides=overrides or [])


@pytest.fixture(autouse=True)
def _few_threads() -> None:
    torch.set_num_threads(1)  # tests run two at a time on 2 cores (pytest -n 2)


@pytest.fixture
def world():
    return build_generator("toyworld")


@pytest.fixture
def multilevel_spec() -> ViewSpec:
    return ViewSpec.from_config(
        {
            "name": "multilevel",
            "pixel": "no_color",
            "perturb": {"pose": {"std": 0.75}, "texture": {"std": 1.5}},
        }
    )
