"""View specs, random perturbations, pixel presets and the level grid."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from solo_mlvgm.errors import ConfigError
from solo_mlvgm.generators import build_generator
from solo_mlvgm.views import PIXEL_PRESETS, RandomPerturbation, ViewSampler, ViewSpec, build_pixel_augment
from solo_mlvgm.views.grid import save_level_grid
from solo_mlvgm.views.pixel import build_color_augment, build_pixel_transform

from .conftest import denormalise


def test_perturbation_noise_respects_truncation_and_mean():
    p = RandomPerturbation(mean=0.5, std=0.3, truncation=1.5)
    delta = p.sample(5000, 8, torch.device("cpu"), torch.Generator().manual_seed(0))
    assert delta.min() >= 0.5 - 1.5 * 0.3 and delta.max() <= 0.5 + 1.5 * 0.3
    assert abs(delta.mean().item() - 0.5) < 0.01


def test_the_official_low_high_form_perturbs_half_the_samples_with_a_std_each(world):
    """``(low, high)`` of the official view script: perturbed with probability 0.5, std ~ U[low, high]."""
    spec = ViewSpec.from_config({"perturb": {"pose": {"std": [0.5, 1.5], "prob": 0.5}}})
    p = spec.perturb["pose"]
    assert (p.std, p.std_high, p.prob) == (0.5, 1.5, 0.5) and p.describe() == "std 0.5-1.5, p 0.5"
    delta = p.sample(4000, 64, torch.device("cpu"), torch.Generator().manual_seed(0))
    moved = delta.abs().sum(1) > 0
    assert 0.45 < moved.float().mean() < 0.55
    assert delta.abs().max() <= 2 * 1.5  # truncation 2 at the largest std
    stds = delta[moved].std(1)  # each sample's own std, spread over [0.5, 1.5] (truncation shrinks it)
    assert stds.quantile(0.1) < 0.65 and stds.quantile(0.9) > 1.1
    again = p.sample(4000, 64, torch.device("cpu"), torch.Generator().manual_seed(0))
    assert torch.equal(delta, again)
    # rendered: the positives of the unperturbed half are their anchors, bit for bit
    pair = ViewSampler(world, spec)(256, torch.Generator().manual_seed(1))
    same = (pair.anchor == pair.positive).flatten(1).all(1)
    assert 0.35 < same.float().mean() < 0.65
    official = ViewSpec.from_config(
        {"perturb": {"pose": {"std": [0.5, 1.5], "prob": 0.5, "per_batch": True}}}
    )
    assert official.perturb["pose"].describe() == "std 0.5-1.5, p 0.5, per batch"
    batches = [
        official.perturb["pose"].sample(64, 8, torch.device("cpu"), torch.Generator().manual_seed(s))
        for s in range(40)
    ]
    moved = [bool(b.abs().sum() > 0) for b in batches]
    assert all(b.abs().sum(1).gt(0).all() == m for b, m in zip(batches, moved, strict=True))  # all or none
    assert 8 < sum(moved) < 32
    for bad, message in [
        ({"std": [0.5, float("inf")]}, "must be finite numbers"),
        ({"per_batch": "yes"}, "per_batch must be true or false"),
        ({"std": [1.0, 0.5]}, "low <= high"),
        ({"std": [1, 2, 3]}, r"std must be a number or \[low, high\]"),
        ({"prob": 0}, r"prob must be in \(0, 1\]"),
    ]:
        with pytest.raises(ConfigError, match=message):
            ViewSpec.from_config({"perturb": {"pose": bad}})


def test_negative_std_and_unknown_keys_are_rejected():
    with pytest.raises(ConfigError, match=r"views.perturb.pose: perturbation std must be >= 0, got -1"):
        ViewSpec.from_config({"perturb": {"pose": {"std": -1}}})
    with pytest.raises(ConfigError, match="unknown keys"):
        ViewSpec.from_config({"perturb": {"pose": {"sigma": 1}}})
    with pytest.raises(ConfigError, match="unknown pixel preset"):
        ViewSpec.from_config({"pixel": "sepia"})


def test_unknown_level_fails_when_the_sampler_is_built(world):
    spec = ViewSpec.from_config({"perturb": {"posture": {"std": 1}}})
    with pytest.raises(ConfigError, match="unknown level or group 'posture'"):
        ViewSampler(world, spec)


def test_a_level_and_its_group_cannot_both_be_perturbed(world):
    spec = ViewSpec.from_config({"perturb": {"pose": {"std": 1}, "all": {"std": 0.1}}})
    with pytest.raises(ConfigError, match="twice"):
        spec.resolve(world)


def test_only_named_levels_change_with_independent_noise_per_level(world):
    spec = ViewSpec.from_config({"perturb": {"pose": {"std": 1.0}, "color": {"std": 1.0}}})
    pair = ViewSampler(world, spec).sample_levels(64, torch.Generator().manual_seed(0))
    anchor, positive = pair.anchor, pair.positive
    changed = [not torch.equal(a, p) for a, p in zip(anchor, positive, strict=True)]
    assert changed == [f in ("pose", "color") for f in world.factors]
    d_pose, d_color = positive[1] - anchor[1], positive[2] - anchor[2]
    assert not torch.allclose(d_pose, d_color)  # independent draws, not the same noise reused


def test_synth_spec_gives_identical_views_and_single_random_moves_everything(world):
    synth = ViewSampler(world, ViewSpec.from_config({"perturb": {}}))(8, torch.Generator().manual_seed(0))
    assert torch.equal(synth.anchor, synth.positive)
    single = ViewSpec.from_config({"perturb": {"all": {"std": 0.2}}})
    pair = ViewSampler(world, single).sample_levels(8, torch.Generator().manual_seed(0))
    assert all(not torch.equal(a, p) for a, p in zip(pair.anchor, pair.positive, strict=True))


def test_view_pair_labels_are_the_anchor_labels(world, multilevel_spec):
    pair = ViewSampler(world, multilevel_spec)(32, torch.Generator().manual_seed(0))
    assert torch.equal(pair.labels, world.labels(world.to_levels(pair.base)))


@pytest.mark.parametrize("preset", PIXEL_PRESETS)
def test_pixel_presets_output_normalised_images_of_the_crop_size(preset):
    aug = build_pixel_augment(preset, size=24)
    images = torch.rand(6, 3, 32, 32)
    out = aug(images)
    assert out.shape == (6, 3, 24, 24) and out.dtype == torch.float32
    assert out.min() < 0  # normalised, not [0, 1]
    if preset != "none":  # random per sample: two calls differ
        assert not torch.equal(out, aug(images))


def test_simclr_colour_jitter_scales_brightness_on_both_paths_as_simclr_does():
    """SimCLR's jitter multiplies brightness (factor in [0.6, 1.4]), so a grey pixel at 0.2 stays within
    [0.12, 0.28] (uint8 steps aside); kornia's ColorJiggle would add the factor instead (anywhere in
    [0, 0.6]). The device path (kornia) and the loader path (torchvision) are both held to that rule."""
    torch.manual_seed(0)
    device = denormalise(build_color_augment("simclr")(torch.full((512, 3, 8, 8), 0.2)))
    grey = Image.fromarray(np.full((8, 8, 3), 51, dtype=np.uint8))  # 51 / 255 = 0.2
    loader = build_pixel_transform("simclr", 8, crop_min_scale=1.0)
    host = denormalise(torch.stack([loader(grey) for _ in range(256)]))
    for name, out in (("device", device), ("loader", host)):
        assert 0.1 < out.min() and out.max() < 0.3, (name, out.min().item(), out.max().item())
        assert out.std() > 0.02, name  # and it does jitter


def test_level_grid_png_has_one_row_per_level_plus_anchors(tmp_path, world):
    names = save_level_grid(tmp_path / "grid.png", world, n_anchors=4)
    assert names[0] == "anchor" and len(names) == 1 + len(world.levels)
    with Image.open(tmp_path / "grid.png") as im:
        width, height = im.size
        pixels = torch.from_numpy(np.asarray(im.convert("L"))).float()
    assert height == len(names) * (world.resolution + 2) + 2
    margin = width - (4 * (world.resolution + 2) + 2)  # the row labels on the left
    assert margin > 20
    for row in range(len(names)):  # every row has its label drawn in the margin (dark text on white)
        band = pixels[2 + row * (world.resolution + 2) : (row + 1) * (world.resolution + 2), :margin]
        assert (band < 128).any(), f"row {row} ({names[row]}) has no label"


def test_grid_runs_for_a_64px_world(tmp_path):
    g = build_generator("toyworld", resolution=64, factors=["pose", "shape"])
    assert save_level_grid(tmp_path / "g.png", g, n_anchors=2) == ["anchor", "pose (std 1)", "shape (std 1)"]
