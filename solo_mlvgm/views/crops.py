"""solo-learn's ``augmentations`` list as crop groups applied on the training device (kornia).

A solo-learn pretraining config lists crop groups, each with its own pipeline and number of crops::

    augmentations:
      - rrc: {enabled: true, crop_min_scale: 0.08, crop_max_scale: 1.0}
        color_jitter: {prob: 0.8, brightness: 0.4, contrast: 0.4, saturation: 0.2, hue: 0.1}
        grayscale: {prob: 0.2}
        gaussian_blur: {prob: 0.0}
        solarization: {prob: 0.0}
        equalization: {prob: 0.0}
        horizontal_flip: {prob: 0.5}
        crop_size: 32
        num_crops: 2

``CropGroup.from_config`` parses one entry (every key checked, one-line errors); ``build_crop_augment``
makes the per-sample pipeline of solo-learn's ``build_transform_pipeline`` in kornia: bicubic random resized
crop (or a resize), antialiased like PIL's when it shrinks, colour jitter with probability, grayscale, Gaussian blur (sigma in [0.1, 2]),
solarisation (threshold 0.5), equalisation, horizontal flip, then normalisation. Images in [0, 1] go in,
normalised crops come out; the same group runs on a GPU as on a CPU.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import kornia.augmentation as K
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from solo_mlvgm.checks import integer, number
from solo_mlvgm.errors import ConfigError
from solo_mlvgm.views.pixel import IMAGENET_MEAN, IMAGENET_STD

# The blocks of a crop group and the keys each takes (solo-learn's schema); a block left out is off.
# ``enabled`` is read for ``rrc`` only, as solo-learn does: another block applies when its prob is > 0
# (``unread_crop_keys`` lists such keys; an ``enabled: false`` beside a prob > 0 is refused as ambiguous).
_BLOCK_KEYS: dict[str, tuple[str, ...]] = {
    "rrc": ("enabled", "crop_min_scale", "crop_max_scale"),
    "color_jitter": ("enabled", "prob", "brightness", "contrast", "saturation", "hue"),
    "grayscale": ("enabled", "prob"),
    "gaussian_blur": ("enabled", "prob"),
    "solarization": ("enabled", "prob"),
    "equalization": ("enabled", "prob"),
    "horizontal_flip": ("enabled", "prob"),
}
_SCALARS = ("crop_size", "num_crops", "mean", "std")
BLUR_SIGMA = (0.1, 2.0)  # solo-learn's GaussianBlur range


@dataclass(frozen=True)
class CropGroup:
    """One entry of solo-learn's ``augmentations`` list: ``num_crops`` crops of ``crop_size`` pixels."""

    crop_size: int
    num_crops: int
    rrc: bool = True
    crop_min_scale: float = 0.08
    crop_max_scale: float = 1.0
    color_jitter_prob: float = 0.0
    brightness: float = 0.0
    contrast: float = 0.0
    saturation: float = 0.0
    hue: float = 0.0
    grayscale_prob: float = 0.0
    gaussian_blur_prob: float = 0.0
    solarization_prob: float = 0.0
    equalization_prob: float = 0.0
    horizontal_flip_prob: float = 0.0
    mean: tuple[float, float, float] | None = None  # None: the dataset's (``normalization``)
    std: tuple[float, float, float] | None = None

    @classmethod
    def from_config(cls, entry: Mapping[str, Any], where: str = "augmentations[0]") -> CropGroup:
        """Parse one list entry; an unknown key or a value out of range fails with one line."""
        unknown = set(entry) - set(_BLOCK_KEYS) - set(_SCALARS)
        if unknown:
            raise ConfigError(
                f"{where} has unknown keys {sorted(unknown)}; known: {sorted([*_BLOCK_KEYS, *_SCALARS])}"
            )
        for key in ("crop_size", "num_crops"):
            if entry.get(key) is None:
                raise ConfigError(f"{where} needs {key}")
        values: dict[str, Any] = {
            "crop_size": integer(entry["crop_size"], f"{where}.crop_size", 1),
            "num_crops": integer(entry["num_crops"], f"{where}.num_crops", 1),
        }
        for block, keys in _BLOCK_KEYS.items():
            given = entry.get(block) or {}
            if not isinstance(given, Mapping):
                raise ConfigError(f"{where}.{block} must be a mapping of {list(keys)}, got {given!r}")
            bad = set(given) - set(keys)
            if bad:
                raise ConfigError(f"{where}.{block} has unknown keys {sorted(bad)}; known: {list(keys)}")
            for key, value in given.items():
                name = f"{where}.{block}.{key}"
                if key == "enabled":
                    if not isinstance(value, bool):
                        raise ConfigError(f"{name} must be true or false, got {value!r}")
                    if block == "rrc":
                        values["rrc"] = value
                    elif not value and float(given.get("prob", 0) or 0) > 0:
                        raise ConfigError(
                            f"{name} is false but {block}.prob is {given.get('prob')}: solo-learn applies a "
                            "block whenever its prob is > 0; set the prob to 0 to switch it off"
                        )
                    continue
                field = key if block in ("rrc", "color_jitter") and key != "prob" else f"{block}_prob"
                values[field] = _in_range(number(value, name), name, key)
        if values.get("crop_min_scale", 0.08) > values.get("crop_max_scale", 1.0):
            raise ConfigError(f"{where}.rrc.crop_min_scale must not exceed crop_max_scale")
        for key in ("mean", "std"):
            if entry.get(key) is not None:
                values[key] = _triple(entry[key], f"{where}.{key}", positive=key == "std")
        return cls(**values)

    def describe(self) -> str:
        ops = [
            f"rrc {self.crop_min_scale:g}-{self.crop_max_scale:g}" if self.rrc else "resize",
            *(
                f"{name} p={p:g}"
                for name, p in (
                    ("color_jitter", self.color_jitter_prob),
                    ("grayscale", self.grayscale_prob),
                    ("blur", self.gaussian_blur_prob),
                    ("solarize", self.solarization_prob),
                    ("equalize", self.equalization_prob),
                    ("flip", self.horizontal_flip_prob),
                )
                if p > 0
            ),
        ]
        return f"{self.num_crops} x {self.crop_size}px ({', '.join(ops)})"


def parse_crop_groups(entries: Sequence[Mapping[str, Any]]) -> tuple[CropGroup, ...]:
    """solo-learn's ``augmentations`` list; the first group's size is the large crop size, and large
    crops come first (solo-learn counts every group of that size as large)."""
    if not entries:
        raise ConfigError("augmentations must list at least one crop group")
    groups = tuple(CropGroup.from_config(e, f"augmentations[{i}]") for i, e in enumerate(entries))
    large = groups[0].crop_size
    seen_small = False
    for i, g in enumerate(groups):
        if g.crop_size > large:
            raise ConfigError(
                f"augmentations[{i}].crop_size {g.crop_size} is larger than the first group's {large}: "
                "list the large crops first, as solo-learn expects"
            )
        if g.crop_size != large:
            seen_small = True
        elif seen_small:
            raise ConfigError(
                f"augmentations[{i}] is a large crop after a small one: list the large crops first, "
                "as solo-learn's batches put them first"
            )
    return groups


def unread_crop_keys(entries: Sequence[Mapping[str, Any]]) -> list[str]:
    """The ``enabled`` keys of blocks other than ``rrc``: solo-learn's pipeline never reads them."""
    return [
        f"augmentations[{i}].{block}.enabled"
        for i, entry in enumerate(entries)
        for block in _BLOCK_KEYS
        if block != "rrc" and isinstance(entry.get(block), Mapping) and "enabled" in entry[block]
    ]


def build_crop_augment(
    group: CropGroup, mean: Sequence[float] = IMAGENET_MEAN, std: Sequence[float] = IMAGENET_STD
) -> nn.Module:
    """Per-sample pipeline ``[B, 3, H, W]`` in [0, 1] -> normalised ``[B, 3, crop, crop]`` for ``group``
    (its own mean/std when it names them, else ``mean``/``std``)."""
    size = (group.crop_size, group.crop_size)
    ops: list[nn.Module] = []
    if group.rrc:
        ops.append(AntialiasedResizedCrop(group.crop_size, (group.crop_min_scale, group.crop_max_scale)))
    else:
        ops.append(K.Resize(size, resample="BICUBIC", antialias=True))
    ops.append(_Clamp())  # bicubic resampling overshoots [0, 1]; PIL's clips
    if group.color_jitter_prob > 0:
        ops.append(
            K.ColorJitter(
                group.brightness, group.contrast, group.saturation, group.hue, p=group.color_jitter_prob
            )
        )
    if group.grayscale_prob > 0:
        ops.append(K.RandomGrayscale(p=group.grayscale_prob))
    if group.gaussian_blur_prob > 0:
        kernel = 2 * math.ceil(3 * BLUR_SIGMA[1]) + 1
        ops.append(K.RandomGaussianBlur(kernel, BLUR_SIGMA, p=group.gaussian_blur_prob))
    if group.solarization_prob > 0:
        ops.append(K.RandomSolarize(thresholds=0.0, additions=0.0, p=group.solarization_prob))
    if group.equalization_prob > 0:
        ops.append(K.RandomEqualize(p=group.equalization_prob))
    if group.horizontal_flip_prob > 0:
        ops.append(K.RandomHorizontalFlip(p=group.horizontal_flip_prob))
    ops.append(
        K.Normalize(mean=torch.tensor(group.mean or tuple(mean)), std=torch.tensor(group.std or tuple(std)))
    )
    return nn.Sequential(*ops)


class AntialiasedResizedCrop(nn.Module):
    """kornia's random resized crop (its box sampling, per sample), resized like PIL: bicubic with
    antialiasing when a box is larger than the output (a generator rendering above the crop size), so
    small crops of large images do not alias. Boxes no larger than the output take kornia's batched path."""

    def __init__(self, size: int, scale: tuple[float, float]) -> None:
        super().__init__()
        self.size = int(size)
        self.crop = K.RandomResizedCrop((self.size, self.size), scale=scale, resample="BICUBIC")

    def forward(self, x: Tensor) -> Tensor:
        if max(x.shape[-2:]) <= self.size:  # every box upsamples: nothing to antialias
            return self.crop(x)
        boxes = self.crop.forward_parameters(x.shape)["src"].round().long()  # [B, 4, 2] corners (x, y)
        out = []
        for image, box in zip(x, boxes, strict=True):
            (x0, y0), (x1, y1) = box[0].tolist(), box[2].tolist()
            patch = image[None, :, y0 : y1 + 1, x0 : x1 + 1]
            out.append(
                F.interpolate(
                    patch, size=(self.size, self.size), mode="bicubic", align_corners=False, antialias=True
                )
            )
        return torch.cat(out)


class _Clamp(nn.Module):
    def forward(self, x: Tensor) -> Tensor:
        return x.clamp(0.0, 1.0)


def _in_range(value: float, name: str, key: str) -> float:
    if key == "hue":
        if not 0 <= value <= 0.5:
            raise ConfigError(f"{name} must be in [0, 0.5], got {value!r}")
    elif key in ("prob", "crop_min_scale", "crop_max_scale"):
        if not 0 <= value <= 1 or (key != "prob" and value == 0):
            bound = "[0, 1]" if key == "prob" else "(0, 1]"
            raise ConfigError(f"{name} must be in {bound}, got {value!r}")
    elif not value >= 0:
        raise ConfigError(f"{name} must be >= 0, got {value!r}")
    return value


def _triple(value: Any, name: str, positive: bool) -> tuple[float, float, float]:
    if isinstance(value, str) or not isinstance(value, Sequence) or len(value) != 3:
        raise ConfigError(f"{name} must be three numbers (R, G, B), got {value!r}")
    out = tuple(number(v, name) for v in value)
    if positive and not all(v > 0 for v in out):
        raise ConfigError(f"{name} must be > 0, got {value!r}")
    return (out[0], out[1], out[2])
