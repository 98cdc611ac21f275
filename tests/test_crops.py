"""solo-learn's augmentations as crop groups on rendered views, and n-crop batches with one positive per
crop (``views/crops.py``, ``data/crops.py``, ``ViewSampler.views``)."""

from __future__ import annotations

import pytest
import torch

from solo_mlvgm.data.crops import MultiCropSampling, validation_split
from solo_mlvgm.errors import ConfigError
from solo_mlvgm.generators import build_generator
from solo_mlvgm.views.crops import CropGroup, build_crop_augment, parse_crop_groups, unread_crop_keys
from solo_mlvgm.views.spec import ViewSpec

# solo-learn's scripts/pretrain/cifar/augmentations/asymmetric.yaml, first entry (2 crops)
ASYMMETRIC = {
    "rrc": {"enabled": True, "crop_min_scale": 0.08, "crop_max_scale": 1.0},
    "color_jitter": {"prob": 0.8, "brightness": 0.4, "contrast": 0.4, "saturation": 0.2, "hue": 0.1},
    "grayscale": {"prob": 0.2},
    "gaussian_blur": {"prob": 0.0},
    "solarization": {"prob": 0.0},
    "equalization": {"prob": 0.0},
    "horizontal_flip": {"prob": 0.5},
    "crop_size": 32,
    "num_crops": 2,
}
SMALL = {"rrc": {"crop_min_scale": 0.05, "crop_max_scale": 0.14}, "crop_size": 16, "num_crops": 3}
VIEWS = {"name": "ml", "perturb": {"pose": {"std": 0.75}, "color": {"std": 1.0}, "texture": {"std": 1.5}}}


def test_a_solo_learn_entry_parses_into_its_fields():
    (group,) = parse_crop_groups([ASYMMETRIC])
    assert group == CropGroup(
        crop_size=32,
        num_crops=2,
        color_jitter_prob=0.8,
        brightness=0.4,
        contrast=0.4,
        saturation=0.2,
        hue=0.1,
        grayscale_prob=0.2,
        horizontal_flip_prob=0.5,
    )
    assert group.describe() == "2 x 32px (rrc 0.08-1, color_jitter p=0.8, grayscale p=0.2, flip p=0.5)"


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"zoom": {"prob": 1}}, r"augmentations\[0\] has unknown keys \['zoom'\]"),
        ({"grayscale": {"p": 0.2}}, r"augmentations\[0\].grayscale has unknown keys \['p'\]"),
        ({"grayscale": {"prob": 1.5}}, r"augmentations\[0\].grayscale.prob must be in \[0, 1\], got 1.5"),
        ({"grayscale": {"prob": "often"}}, r"grayscale.prob must be a number, got 'often'"),
        ({"color_jitter": {"prob": 1, "hue": 0.7}}, r"color_jitter.hue must be in \[0, 0.5\]"),
        ({"rrc": {"enabled": "yes"}}, r"rrc.enabled must be true or false"),
        (
            {"grayscale": {"enabled": False, "prob": 0.2}},
            r"grayscale.enabled is false but grayscale.prob is 0.2",
        ),
        ({"rrc": {"crop_min_scale": 0.9, "crop_max_scale": 0.5}}, "must not exceed crop_max_scale"),
        ({"num_crops": 0}, r"num_crops must be >= 1, got 0"),
        ({"crop_size": None}, r"augmentations\[0\] needs crop_size"),
        ({"mean": [0.5, 0.5]}, r"augmentations\[0\].mean must be three numbers"),
    ],
)
def test_a_bad_entry_is_one_line_naming_the_key(change, message):
    with pytest.raises(ConfigError, match=message) as err:
        parse_crop_groups([{**ASYMMETRIC, **change}])
    assert "\n" not in str(err.value)


def test_large_crops_come_first_as_solo_learn_expects():
    assert [g.crop_size for g in parse_crop_groups([ASYMMETRIC, SMALL])] == [32, 16]
    with pytest.raises(ConfigError, match="larger than the first group's 16"):
        parse_crop_groups([SMALL, ASYMMETRIC])
    with pytest.raises(ConfigError, match="a large crop after a small one"):
        parse_crop_groups([ASYMMETRIC, SMALL, ASYMMETRIC])
    with pytest.raises(ConfigError, match="at least one crop group"):
        parse_crop_groups([])


def test_solarization_alone_inverts_bright_pixels_then_normalises():
    group = CropGroup(crop_size=8, num_crops=1, rrc=False, solarization_prob=1.0)
    mean, std = (0.5, 0.4, 0.3), (0.2, 0.25, 0.3)
    x = torch.rand(4, 3, 8, 8)
    out = build_crop_augment(group, mean, std)(x)
    solarised = torch.where(x >= 0.5, 1 - x, x)
    expected = (solarised - torch.tensor(mean)[:, None, None]) / torch.tensor(std)[:, None, None]
    assert torch.allclose(out, expected, atol=1e-4)


def test_a_group_with_its_own_mean_and_std_uses_them():
    entry = {"crop_size": 8, "num_crops": 1, "rrc": {"enabled": False}, "mean": [0, 0, 0], "std": [1, 1, 1]}
    x = torch.rand(2, 3, 8, 8)
    assert torch.allclose(build_crop_augment(CropGroup.from_config(entry))(x), x, atol=1e-5)


def _sampling(views: dict, groups: list[dict], batch: int = 6) -> MultiCropSampling:
    return MultiCropSampling(
        build_generator("toyworld"),
        ViewSpec.from_config(views),
        parse_crop_groups(groups),
        (0.5, 0.5, 0.5),
        (0.25, 0.25, 0.25),
        batch_size=batch,
        epoch_size=60,
        seed=3,
    )


def test_n_crop_batches_in_solo_learns_format_and_reproducible():
    data = _sampling(VIEWS, [ASYMMETRIC, SMALL])
    indexes, crops, targets = data.render(4, "cpu")
    assert [tuple(c.shape) for c in crops] == [(6, 3, 32, 32)] * 2 + [(6, 3, 16, 16)] * 3
    assert indexes.tolist() == list(range(24, 30)) and targets.shape == (6,)
    again = data.render(4, "cpu")[1]
    assert all(torch.equal(a, b) for a, b in zip(crops, again, strict=True))
    other = data.render(5, "cpu")[1]
    assert not torch.equal(crops[0], other[0])


def test_every_crop_after_the_first_is_its_own_positive():
    views = _sampling(VIEWS, [ASYMMETRIC, SMALL]).draw_views(0, "cpu")
    anchor, *positives = views.images
    assert len(positives) == 4
    diffs = [(p - anchor).abs().mean().item() for p in positives]
    assert all(d > 0.01 for d in diffs), diffs  # perturbed
    assert all(not torch.equal(a, b) for i, a in enumerate(positives) for b in positives[i + 1 :])


def test_without_a_perturbation_every_crop_comes_from_the_anchor_image():
    views = _sampling({"name": "synth", "perturb": {}}, [ASYMMETRIC, SMALL]).draw_views(0, "cpu")
    assert all(torch.equal(image, views.images[0]) for image in views.images)


def test_enabled_is_read_for_rrc_only_as_in_solo_learn():
    entry = {
        **ASYMMETRIC,
        "rrc": {"enabled": False},
        "grayscale": {"enabled": True, "prob": 0.2},
        "gaussian_blur": {"enabled": False, "prob": 0.0},
    }
    (group,) = parse_crop_groups([entry])
    assert not group.rrc and group.grayscale_prob == 0.2 and group.gaussian_blur_prob == 0.0
    assert unread_crop_keys([entry]) == [
        "augmentations[0].grayscale.enabled",
        "augmentations[0].gaussian_blur.enabled",
    ]


def test_repeat_anchors_draws_the_same_anchors_every_epoch_with_new_positives():
    data = MultiCropSampling(
        build_generator("toyworld"),
        ViewSpec.from_config(VIEWS),
        parse_crop_groups([ASYMMETRIC]),
        (0.5, 0.5, 0.5),
        (0.25, 0.25, 0.25),
        batch_size=6,
        epoch_size=60,  # 10 steps an epoch
        seed=3,
        repeat_anchors=True,
    )
    first, next_epoch, other = (
        data.draw_views(2, "cpu"),
        data.draw_views(12, "cpu"),
        data.draw_views(3, "cpu"),
    )
    assert torch.equal(first.base, next_epoch.base) and not torch.equal(first.base, other.base)
    assert torch.equal(first.images[0], next_epoch.images[0])  # the anchor image
    assert not torch.equal(first.images[1], next_epoch.images[1])  # a new positive
    assert torch.equal(data.render(2, "cpu")[0], data.render(12, "cpu")[0])  # same sample indexes
    assert len(data.train_dataloader().dataset) == 60


def test_the_validation_split_is_labelled_then_resized_and_normalised_per_batch():
    world = build_generator("toyworld")
    x, y = validation_split(world, 10, seed=0)
    again, _ = validation_split(world, 10, seed=0)
    assert x.dtype == torch.uint8 and x.shape == (10, 3, 32, 32) and torch.equal(x, again)
    assert y.shape == (10,) and y.min() >= 0
    data = _sampling(VIEWS, [{**ASYMMETRIC, "crop_size": 16}])
    out = data.validation_transform(x)
    assert out.shape == (10, 3, 16, 16) and out.min() >= -2.0 and out.max() <= 2.0  # mean 0.5, std 0.25
    assert data.val_dataloader() == []  # no split: no validation


def test_crops_shrinking_a_large_image_are_antialiased_as_pil_does():
    stripes = torch.zeros(4, 3, 128, 128)
    stripes[..., ::2] = 1.0  # one-pixel stripes: only aliasing keeps them visible at a quarter size
    group = CropGroup(crop_size=32, num_crops=1, crop_min_scale=1.0)
    out = build_crop_augment(group, (0.0, 0.0, 0.0), (1.0, 1.0, 1.0))(stripes)
    assert out.shape == (4, 3, 32, 32)
    assert out.std() < 0.05 and abs(out.mean() - 0.5) < 0.05  # a flat grey, as PIL's bicubic gives
