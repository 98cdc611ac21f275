"""Pixel-space augmentations applied per sample on the training device (kornia), plus normalisation."""

from __future__ import annotations

import functools

import kornia.augmentation as K
import torch
from torch import Tensor, nn
from torchvision.transforms import v2

from solo_mlvgm.errors import ConfigError

PIXEL_PRESETS = ("simclr", "no_color", "none")
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def check_pixel_options(preset: str, crop_min_scale: float) -> None:
    """Reject an unknown preset or a crop scale outside (0, 1] with one clear line."""
    if preset not in PIXEL_PRESETS:
        raise ConfigError(f"unknown pixel preset '{preset}'; known: {', '.join(PIXEL_PRESETS)}")
    if not 0 < crop_min_scale <= 1:
        raise ConfigError(f"crop_min_scale must be in (0, 1], got {crop_min_scale}")


def build_pixel_augment(
    preset: str,
    size: int,
    crop_min_scale: float = 0.2,
) -> nn.Module:
    """Per-sample augmentation ``[B, 3, H, W]`` in [0, 1] -> normalised ``[B, 3, size, size]``.

    ``simclr``: random resized crop, flip, colour jitter (0.4, 0.4, 0.4, 0.1, p=0.8), grayscale (p=0.2);
    ``no_color``: crop and flip only (the paper's preset for multi-level views); ``none``: resize only.
    """
    check_pixel_options(preset, crop_min_scale)
    ops: list[K.AugmentationBase2D] = []
    if preset == "none":
        ops.append(K.Resize((size, size)))
    else:
        ops += [K.RandomResizedCrop((size, size), scale=(crop_min_scale, 1.0)), K.RandomHorizontalFlip()]
    return K.AugmentationSequential(*ops, *_color_and_normalize(preset))


def build_color_augment(preset: str) -> nn.Module:
    """Only the colour part of a preset and the normalisation, for loaders that crop and flip themselves
    (FFCV decodes straight into the crop)."""
    check_pixel_options(preset, 1.0)
    return K.AugmentationSequential(*_color_and_normalize(preset))


def _color_and_normalize(preset: str) -> list[K.AugmentationBase2D]:
    ops: list[K.AugmentationBase2D] = []
    if preset == "simclr":
        # ColorJitter, not ColorJiggle: kornia's ColorJiggle adds its brightness factor (a dark pixel at 0.2
        # goes anywhere in [0, 0.6]) and scales contrast and saturation by other rules; ColorJitter follows
        # torchvision's (the loader path's), as SimCLR's recipe does.
        ops += [K.ColorJitter(0.4, 0.4, 0.4, 0.1, p=0.8), K.RandomGrayscale(p=0.2)]
    ops.append(K.Normalize(mean=torch.tensor(IMAGENET_MEAN), std=torch.tensor(IMAGENET_STD)))
    return ops


def build_pixel_transform(
    preset: str, size: int, crop_min_scale: float = 0.2, resize_to: int | None = None
) -> nn.Module:
    """The same preset for one decoded PIL image on a loader worker (torchvision): -> normalised float
    ``[3, size, size]``. The crop is taken from the whole image, as solo-learn's real-data pipeline does;
    ``none`` resizes and centre-crops to ``resize_to`` (default ``size``), then resizes to ``size``."""
    check_pixel_options(preset, crop_min_scale)
    ops: list[nn.Module] = [v2.PILToTensor()]
    if preset == "none":
        ops += [v2.Resize(resize_to or size), v2.CenterCrop(resize_to or size), v2.Resize((size, size))]
    else:
        ops += [v2.RandomResizedCrop((size, size), scale=(crop_min_scale, 1.0)), v2.RandomHorizontalFlip()]
    if preset == "simclr":
        ops += [v2.RandomApply([v2.ColorJitter(0.4, 0.4, 0.4, 0.1)], p=0.8), v2.RandomGrayscale(p=0.2)]
    ops += [v2.ToDtype(torch.float32, scale=True), v2.Normalize(mean=IMAGENET_MEAN, std=IMAGENET_STD)]
    return v2.Compose(ops)


@functools.cache
def _mean_std(device: torch.device, dtype: torch.dtype) -> tuple[Tensor, Tensor]:
    """ImageNet mean and std as [1, 3, 1, 1] tensors, made once per device and dtype (not every step)."""
    return (
        torch.tensor(IMAGENET_MEAN, device=device, dtype=dtype)[None, :, None, None],
        torch.tensor(IMAGENET_STD, device=device, dtype=dtype)[None, :, None, None],
    )


def normalize(images: Tensor) -> Tensor:
    """Normalise [0, 1] images like the pixel presets do, for evaluation without augmentation."""
    mean, std = _mean_std(images.device, images.dtype)
    return (images - mean) / std
