"""The generator interface and the toy world's ground truth."""

from __future__ import annotations

import math

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
from solo_mlvgm.generators.toyworld import FACTORS, OOD_WIDTH


def _couplings(config: str) -> dict:
    """The coupling settings of a toy-world generator config."""
    from solo_mlvgm.settings import GeneratorSpec

    from .conftest import compose_cfg

    options = GeneratorSpec.from_config(compose_cfg("mi_quant", [f"generator={config}"]).generator).options
    return {k: v for k, v in options.items() if k.startswith("coupling")}


@pytest.fixture(params=["toyworld", "toyworld_ood"])
def config_world(request):
    """The world of each toy-world generator config, in distribution: an ood radius changes only latents
    beyond the prior, so the guarantees of the world are those of its coupling."""
    return build_generator("toyworld", **_couplings(request.param))


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
@pytest.mark.parametrize("config", ["toyworld", "toyworld_ood"])
def test_each_level_changes_the_image_and_the_none_level_changes_nothing(factors, config):
    world = build_generator("toyworld", factors=factors, **_couplings(config))
    base = world.sample_base(16, generator=torch.Generator().manual_seed(0))
    anchor = world(world.to_levels(base))
    for i, factor in enumerate(factors):
        moved = world(_perturb_alone(world, base, i, std=2.0))
        if factor == "none":
            assert torch.equal(moved, anchor)  # pixel-exact
        else:
            assert (moved - anchor).abs().mean() > 0.01, factor


def test_only_the_shape_level_changes_the_label(config_world):
    world = config_world
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


def test_early_levels_reach_further_than_late_ones(config_world):
    """Global to local: the same perturbation changes more pixels the earlier its level is."""
    world = config_world
    base = world.sample_base(512, generator=torch.Generator().manual_seed(0))
    anchor = world(world.to_levels(base))
    change = [(world(_perturb_alone(world, base, i)) - anchor).abs().mean().item() for i in range(5)]
    assert change == sorted(change, reverse=True) and change[-1] == 0, dict(
        zip(world.factors, change, strict=True)
    )


@pytest.mark.parametrize("factor", ["shape", "pose", "color", "texture"])
def test_effect_grows_with_perturbation_magnitude(config_world, factor):
    world = config_world
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
def test_out_of_distribution_latents_break_the_image_and_prior_latents_never_do(factors):
    """ood_radius: any used level pushed far off its prior breaks the whole image into noise that carries
    nothing of the anchor (later levels further out); prior samples render bit-identically to the world
    without it; `none` and labels stay exact."""
    couplings = _couplings("toyworld_ood")
    plain = build_generator("toyworld", factors=factors, **couplings)
    world = build_generator("toyworld", factors=factors, ood_radius=2.0, **couplings)
    base = world.sample_base(64, generator=torch.Generator().manual_seed(0))
    assert torch.equal(world(world.to_levels(base)), plain(plain.to_levels(base)))
    labels = world.labels(world.to_levels(base))
    breaking_std = {}
    for i, factor in enumerate(factors):
        far = _perturb_alone(world, base, i, std=50.0)
        assert torch.equal(world.labels(far), labels) or factor == "shape"
        if factor == "none":
            assert torch.equal(world(far), plain(far))
            continue
        assert world._in_distribution(far).max() < 1e-3, factor
        assert (world(far) - world._garbage(far).clamp(0, 1)).abs().max() < 1e-2, factor
        kept = [
            world._in_distribution(_perturb_alone(world, base, i, std=s)).mean().item() for s in (2, 3, 4, 6)
        ]
        assert kept == sorted(kept, reverse=True), (factor, kept)
        breaking_std[factor] = next(
            s
            for s in (0.25, 0.5, 0.75, 1, 1.5, 2, 3, 4, 6)
            if world._in_distribution(_perturb_alone(world, base, i, std=s)).mean() < 0.5
        )
    used = [f for f in factors if f != "none"]
    assert [breaking_std[f] for f in used] == sorted(breaking_std[f] for f in used), breaking_std


def test_a_broken_image_is_noise_that_nearby_latents_do_not_share():
    """The noise of a broken image is a chaotic function of the used levels: a fade to grey would keep
    the anchor up to its contrast, which an encoder can undo; the noise must not be undoable."""
    world = build_generator("toyworld", ood_radius=2.0)
    levels = world.to_levels(world.sample_base(16, generator=torch.Generator().manual_seed(0)))
    nudged = [z + 0.05 for z in levels]
    a, b = world._garbage(levels).flatten(1), world._garbage(nudged).flatten(1)
    corr = torch.nn.functional.cosine_similarity(a - a.mean(1, keepdim=True), b - b.mean(1, keepdim=True))
    assert corr.abs().max() < 0.3, corr
    assert a.std() > 0.2  # it covers the image, not a faint ripple
    none_moved = list(levels)
    none_moved[world.factors.index("none")] = levels[world.factors.index("none")] + 5.0
    assert torch.equal(world._garbage(none_moved), world._garbage(levels))


@pytest.mark.parametrize("factors", [list(FACTORS), ["pose", "shape", "none", "color", "texture"]])
def test_the_level_at_position_i_breaks_over_twice_the_distance_of_the_one_before(factors):
    """One coordinate at ``ood_radius + 0.25 x 2^i`` keeps e^-1 of the image: a later level must go further
    out, twice as far per position."""
    world = build_generator("toyworld", factors=factors, ood_radius=2.0)
    base = world.sample_base(8, generator=torch.Generator().manual_seed(0)).clamp(-1, 1)
    kept_at_one_width = {}
    for i, factor in enumerate(factors):
        if factor == "none":
            continue
        levels = world.to_levels(base.clone())
        levels[i][:, 0] = world.ood_radius + OOD_WIDTH * 2**i
        kept = world._in_distribution(levels)
        assert torch.allclose(kept, torch.full_like(kept, math.exp(-1)), atol=1e-5), factor
        levels[i][:, 0] = world.ood_radius + OOD_WIDTH  # the same distance out for every level
        kept_at_one_width[factor] = world._in_distribution(levels).mean().item()
    values = list(kept_at_one_width.values())
    assert values == sorted(values) and len(set(values)) == len(values), kept_at_one_width


@pytest.mark.parametrize("factors", [list(FACTORS), ["pose", "shape", "none", "color", "texture"]])
def test_gradients_out_of_distribution_are_finite_and_skip_the_noise(factors, monkeypatch):
    """On the support's boundary and far beyond it, every latent gets a finite gradient; the noise adds
    none of its own (the walker is pushed by how much of the image is lost)."""
    world = build_generator("toyworld", factors=factors, ood_radius=2.0)
    base = world.sample_base(6, generator=torch.Generator().manual_seed(0))
    base[0, :8] = 2.0  # exactly on the boundary
    base[1] = base[1] * 3  # beyond it in every level
    base[2, :] = 2.0 + 1e-6

    def grads():
        levels = [z.clone().requires_grad_(True) for z in world.to_levels(base)]
        world(levels).square().sum().backward()
        return [z.grad for z in levels]

    real = grads()
    for factor, g in zip(factors, real, strict=True):
        assert g is not None and torch.isfinite(g).all(), factor
        assert (g.abs().sum() > 0) == (factor != "none"), factor
    frozen = world._garbage(world.to_levels(base)).detach()
    monkeypatch.setattr(world, "_garbage", lambda levels, rows=None: frozen if rows is None else frozen[rows])
    for g, h in zip(real, grads(), strict=True):
        assert torch.allclose(g, h), "gradient flows through the noise pattern"


def test_ood_radius_below_the_truncation_is_refused():
    with pytest.raises(ConfigError, match="ood_radius must be >= truncation"):
        build_generator("toyworld", ood_radius=1.5)
    assert build_generator("toyworld", ood_radius=2.0).arch["ood_radius"] == 2.0
    plain = build_generator("toyworld").arch
    assert (
        "ood_radius" not in plain and "coupling_decay" not in plain
    )  # walkers of the plain world still match
    assert build_generator("toyworld", coupling_decay=1.0).arch == plain


def test_the_toyworld_ood_config_builds_a_world_with_a_radius_and_its_couplings():
    from solo_mlvgm.settings import GeneratorSpec

    from .conftest import compose_cfg

    spec = GeneratorSpec.from_config(compose_cfg("mi_quant", ["generator=toyworld_ood"]).generator)
    world = spec.build()
    assert world.ood_radius == spec.options["ood_radius"] >= world.truncation
    # a stronger coupling that decays with depth: each level clearly ahead of the next (tests above)
    assert world.coupling > 1 and world.coupling_decay < 1
    couplings = {"coupling": world.coupling, "coupling_decay": world.coupling_decay}
    assert world.arch == build_generator("toyworld", **couplings).arch | {
        "ood_radius": world.ood_radius,
        "ood": "noise-beyond-cube",
    }


@pytest.mark.parametrize(
    "arg, value, message",
    [
        ("ood_radius", "abc", "toyworld ood_radius must be a number"),
        ("coupling", "abc", "toyworld coupling must be a number"),
        ("coupling_decay", 0.0, r"toyworld coupling_decay must be in \(0, 1\], got 0.0"),
        ("coupling_decay", 1.5, r"toyworld coupling_decay must be in \(0, 1\], got 1.5"),
        ("level_dim", 2.5, "toyworld level_dim must be an integer"),
        ("resolution", "big", "toyworld resolution must be an integer"),
    ],
)
def test_non_numeric_toyworld_settings_are_one_line_errors(arg, value, message):
    with pytest.raises(ConfigError, match=message):
        build_generator("toyworld", **{arg: value})
