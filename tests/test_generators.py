"""The generator interface and the toy world's ground truth."""

from __future__ import annotations

import pytest
import torch

from solo_mlvgm.errors import ConfigError
from solo_mlvgm.generators import (
    GENERATORS,
    MultiLatentGenerator,
    ToyWorld,
    build_generator,
    register_generator,
)
from solo_mlvgm.generators.toyworld import FACTORS


def _perturb_alone(world, base, index, std=1.0, seed=1):
    rng = torch.Generator().manual_seed(seed)
    delta = torch.randn(base.shape[0], len(world.level_coords(index)), generator=rng) * std
    return world.perturb(base, [((index,), delta)])


def test_unknown_generator_and_argument_are_rejected():
    with pytest.raises(ConfigError, match="unknown generator 'nope'.*toyworld"):
        build_generator("nope")
    with pytest.raises(ConfigError, match="no argument widht"):
        build_generator("toyworld", widht=3)


def test_registry_rejects_a_second_class_under_a_taken_name():
    with pytest.raises(
        ValueError, match="'toyworld' is already registered by solo_mlvgm.generators.toyworld"
    ):

        @register_generator("toyworld")
        class Impostor(MultiLatentGenerator):
            pass

    assert GENERATORS["toyworld"] is ToyWorld


@pytest.mark.parametrize("name", sorted(GENERATORS))
def test_every_generator_keeps_the_contract_and_renders_images_in_unit_range(name):
    assert isinstance(GENERATORS[name].checkpoint_hint, str)  # read when a config leaves the checkpoint unset
    g = build_generator(name)
    assert g.arch["name"] == name  # walkers and exports are checked against arch
    base = g.sample_base(4, generator=torch.Generator().manual_seed(0))
    images = g(g.to_levels(base))
    assert images.shape == (4, 3, g.resolution, g.resolution)
    assert images.dtype == torch.float32
    assert 0.0 <= images.min() and images.max() <= 1.0
    assert not g.training and not any(p.requires_grad for p in g.parameters())


def test_sample_base_is_reproducible_and_truncated(world):
    a = world.sample_base(2000, generator=torch.Generator().manual_seed(3))
    b = world.sample_base(2000, generator=torch.Generator().manual_seed(3))
    assert torch.equal(a, b)
    assert a.abs().max() <= world.truncation
    narrow = world.sample_base(2000, generator=torch.Generator().manual_seed(3), truncation=0.5)
    assert narrow.abs().max() <= 0.5
    assert 0.85 < a.std() < 0.91  # N(0, 1) truncated at ±2 has std 0.880


def test_perturbing_a_level_leaves_every_other_level_bit_identical(world):
    base = world.sample_base(8, generator=torch.Generator().manual_seed(0))
    anchor = world.to_levels(base)
    for i in range(len(world.levels)):
        moved = _perturb_alone(world, base, i)
        for j, (a, m) in enumerate(zip(anchor, moved, strict=True)):
            assert torch.equal(a, m) == (i != j), (i, j)


@pytest.mark.parametrize(
    "factors",
    [
        list(FACTORS),
        ["shape", "none", "pose", "color", "texture"],
        ["none", "texture", "color", "pose", "shape"],
    ],
)
def test_each_level_changes_the_image_and_the_none_level_changes_nothing(factors):
    world = build_generator("toyworld", factors=factors)
    base = world.sample_base(16, generator=torch.Generator().manual_seed(0))
    anchor = world(world.to_levels(base))
    for i, factor in enumerate(factors):
        moved = world(_perturb_alone(world, base, i, std=2.0))
        if factor == "none":
            assert torch.equal(moved, anchor)  # pixel-exact
        else:
            assert (moved - anchor).abs().mean() > 0.01, factor


def test_only_the_shape_level_changes_the_label(world):
    base = world.sample_base(256, generator=torch.Generator().manual_seed(0))
    labels = world.labels(world.to_levels(base))
    assert labels.dtype == torch.long and labels.unique().numel() == world.num_classes
    for i, factor in enumerate(world.factors):
        changed = (world.labels(_perturb_alone(world, base, i, std=2.0)) != labels).float().mean()
        assert (changed > 0.3) if factor == "shape" else (changed == 0), factor


def test_world_without_shape_level_has_no_labels():
    world = build_generator("toyworld", factors=["pose", "color"])
    assert world.num_classes == 0
    assert world.labels(world.to_levels(world.sample_base(2))) is None


def test_early_levels_reach_further_than_late_ones(world):
    """Global to local: the same perturbation changes more pixels the earlier its level is."""
    base = world.sample_base(512, generator=torch.Generator().manual_seed(0))
    anchor = world(world.to_levels(base))
    change = [(world(_perturb_alone(world, base, i)) - anchor).abs().mean().item() for i in range(5)]
    assert change == sorted(change, reverse=True) and change[-1] == 0, dict(
        zip(world.factors, change, strict=True)
    )


@pytest.mark.parametrize("factor", ["shape", "pose", "color", "texture"])
def test_effect_grows_with_perturbation_magnitude(world, factor):
    base = world.sample_base(256, generator=torch.Generator().manual_seed(0))
    anchor = world(world.to_levels(base))
    i = world.factors.index(factor)
    changes = [
        (world(_perturb_alone(world, base, i, std=s)) - anchor).abs().mean().item() for s in (0.05, 0.2, 0.8)
    ]
    assert changes[0] < changes[1] < changes[2]


def test_differentiable_with_respect_to_every_latent(world):
    base = world.sample_base(4, generator=torch.Generator().manual_seed(0))
    levels = [z.clone().requires_grad_(True) for z in world.to_levels(base)]
    world(levels).sum().backward()
    for factor, z in zip(world.factors, levels, strict=True):
        assert z.grad is not None
        assert (z.grad.abs().sum() > 0) == (factor != "none"), factor


def test_resolution_64_and_bad_factor_lists():
    g = build_generator("toyworld", resolution=64)
    assert g(g.to_levels(g.sample_base(2))).shape == (2, 3, 64, 64)
    with pytest.raises(ConfigError, match="factors"):
        build_generator("toyworld", factors=["shape", "shiny"])
    with pytest.raises(ConfigError, match="repeat"):
        build_generator("toyworld", factors=["pose", "pose"])


def test_levels_and_groups_are_addressable_by_name(world):
    assert world.resolve("pose") == (1,)
    assert world.resolve("all") == tuple(range(5))
    with pytest.raises(ConfigError, match="unknown level or group 'z9'.*pose"):
        world.resolve("z9")


@pytest.mark.parametrize("factors", [list(FACTORS), ["pose", "shape", "none", "color", "texture"]])
def test_out_of_distribution_latents_fade_the_image_and_prior_latents_never_do(factors):
    """ood_radius: any used level pushed far off its prior greys the whole image (later levels further
    out); prior samples render bit-identically to the world without it; `none` and labels stay exact."""
    plain = build_generator("toyworld", factors=factors)
    world = build_generator("toyworld", factors=factors, ood_radius=2.0)
    base = world.sample_base(64, generator=torch.Generator().manual_seed(0))
    assert torch.equal(world(world.to_levels(base)), plain(plain.to_levels(base)))
    labels = world.labels(world.to_levels(base))
    breaking_std = {}
    for i, factor in enumerate(factors):
        far = _perturb_alone(world, base, i, std=20.0)
        assert torch.equal(world.labels(far), labels) or factor == "shape"
        if factor == "none":
            assert torch.equal(world(far), plain(far))
            continue
        assert (world(far) - 0.5).abs().max() < 0.01, factor  # grey: nothing of the anchor is left
        faded = [
            (world(_perturb_alone(world, base, i, std=s)) - 0.5).abs().mean().item() for s in (2, 3, 4, 6)
        ]
        assert faded == sorted(faded, reverse=True), (factor, faded)
        breaking_std[factor] = next(
            s
            for s in (1.5, 2, 2.5, 3, 3.5, 4, 5, 6)
            if world._in_distribution(_perturb_alone(world, base, i, std=s)).mean() < 0.5
        )
    used = [f for f in factors if f != "none"]
    assert [breaking_std[f] for f in used] == sorted(breaking_std[f] for f in used), breaking_std


def test_ood_radius_below_the_truncation_is_refused():
    with pytest.raises(ConfigError, match="ood_radius must be >= truncation"):
        build_generator("toyworld", ood_radius=1.5)
    assert build_generator("toyworld", ood_radius=2.0).arch["ood_radius"] == 2.0
    assert "ood_radius" not in build_generator("toyworld").arch  # walkers of the plain world still match


def test_the_toyworld_ood_config_builds_the_plain_world_with_a_radius():
    from solo_mlvgm.settings import GeneratorSpec

    from .conftest import compose_cfg

    spec = GeneratorSpec.from_config(compose_cfg("mi_quant", ["generator=toyworld_ood"]).generator)
    world = spec.build()
    assert world.ood_radius == spec.options["ood_radius"] >= world.truncation
    assert world.arch == build_generator("toyworld").arch | {"ood_radius": world.ood_radius}


@pytest.mark.parametrize(
    "arg, value, message",
    [
        ("ood_radius", "abc", "toyworld ood_radius must be a number"),
        ("coupling", "abc", "toyworld coupling must be a number"),
        ("level_dim", 2.5, "toyworld level_dim must be an integer"),
        ("resolution", "big", "toyworld resolution must be an integer"),
    ],
)
def test_non_numeric_toyworld_settings_are_one_line_errors(arg, value, message):
    with pytest.raises(ConfigError, match=message):
        build_generator("toyworld", **{arg: value})
