"""Continuous Sampling in solo-learn's n-crop format: crop groups (solo-learn's ``augmentations``) applied on
the device to views rendered every step.

With n crops in all, the first crop is taken from the anchor image and every further crop from its own
positive: the anchor's planned levels perturbed with a fresh draw per crop (``ViewSampler.views``). So each
anchor gets n - 1 independent positives, small crops included, for the render cost of one batch of n views
-- where a file loader can only crop the same image again. Without a perturbation (``views: synth``) every
crop comes from the anchor image, as with a file loader.

``repeat_anchors``: the epoch is a fixed set of anchors, the same base latents at the same sample index
every epoch, with new positives and crops each time -- for methods that cluster a dataset whose samples
return every epoch (solo-learn's DeepClusterV2 keeps per-index assignments from one epoch to the next).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.data import DataLoader, TensorDataset

from solo_mlvgm.data.continuous import Batch, BatchTickets, ContinuousSampling
from solo_mlvgm.data.export import render_labelled
from solo_mlvgm.data.seeding import stream_seed
from solo_mlvgm.generators.base import MultiLatentGenerator
from solo_mlvgm.views.crops import CropGroup, build_crop_augment
from solo_mlvgm.views.sampler import MultiView
from solo_mlvgm.views.spec import ViewSpec


class MultiCropSampling(ContinuousSampling):
    """Per-device batches ``[indexes, [crop_1, ..., crop_n], targets]``, crops in the groups' order (large
    crops first, as solo-learn expects); ``views.pixel`` is replaced by the groups' pipelines."""

    def __init__(
        self,
        generator: MultiLatentGenerator,
        spec: ViewSpec,
        groups: Sequence[CropGroup],
        mean: Sequence[float],
        std: Sequence[float],
        batch_size: int,
        epoch_size: int,
        seed: int = 0,
        autocast_dtype: torch.dtype | None = torch.bfloat16,
        channels_last: bool = False,
        rank: int | None = None,
        world_size: int | None = None,
        repeat_anchors: bool = False,
        validation: tuple[Tensor, Tensor] | None = None,
    ) -> None:
        super().__init__(
            generator,
            spec,
            batch_size=batch_size,
            epoch_size=epoch_size,
            seed=seed,
            autocast_dtype=autocast_dtype,
            channels_last=channels_last,
            rank=rank,
            world_size=world_size,
        )
        self.groups = tuple(groups)
        self.crop_augments = nn.ModuleList([build_crop_augment(g, mean, std) for g in self.groups])
        self.augment = self.crop_augments  # moved to the device with the generator
        self.num_crops = sum(g.num_crops for g in self.groups)
        self.repeat_anchors = bool(repeat_anchors)
        self.validation = validation  # uint8 labelled images (validation_split) for solo-learn's validation
        self.val_crop = self.groups[0].crop_size
        self.mean, self.std = tuple(mean), tuple(std)

    def val_dataloader(self) -> DataLoader | list:
        """The labelled validation split in solo-learn's ``[X, targets]`` batches (none: an empty list)."""
        if self.validation is None:
            return []
        return DataLoader(
            TensorDataset(*self.validation),
            batch_size=self.batch_size,
            shuffle=False,
            collate_fn=self._collate_val,
        )

    def _collate_val(self, samples: list[tuple[Tensor, Tensor]]) -> list[Tensor]:
        """Float images ready for the model, also for callbacks that read the loader directly (solo-learn's
        AutoUMAP does, skipping the batch-transfer hook)."""
        images, labels = zip(*samples, strict=True)
        return [self.validation_transform(torch.stack(images)), torch.stack(labels)]

    def train_dataloader(self) -> BatchTickets:
        tickets = super().train_dataloader()
        # what solo-learn reads as the dataset's size (DeepClusterV2): the anchors of one epoch, all ranks
        tickets.dataset = range(self.steps_per_epoch * self.batch_size * self.world_size)
        return tickets

    def _anchor_step(self, step: int, slot: int | None = None) -> int:
        """The batch whose anchors batch ``step`` draws: itself, or its place in the epoch (``slot``, the
        ticket's number, which stays right when Lightning shortens epochs, e.g. ``limit_train_batches``)."""
        if not self.repeat_anchors:
            return step
        return slot if slot is not None else step % self.steps_per_epoch

    @torch.no_grad()
    def validation_transform(self, images: Tensor) -> Tensor:
        """solo-learn's validation transform: uint8 images resized to the large crop size (antialiased) and
        normalised as the crops are."""
        x = images.float() / 255
        if x.shape[-1] != self.val_crop:
            x = F.interpolate(
                x, size=(self.val_crop, self.val_crop), mode="bicubic", align_corners=False, antialias=True
            )
        mean = torch.tensor(self.mean, device=x.device)[None, :, None, None]
        std = torch.tensor(self.std, device=x.device)[None, :, None, None]
        return (x.clamp(0, 1) - mean) / std

    @torch.no_grad()
    def draw_views(
        self, step: int, device: torch.device | str | None = None, slot: int | None = None
    ) -> MultiView:
        """The un-augmented anchor and positives of global batch ``step`` for this rank (one image per
        crop): a pure function of (seed, rank, step)."""
        device = self._placed(device)
        rng = torch.Generator(device=device).manual_seed(stream_seed(self.seed, self.rank, step))
        base = None
        if self.repeat_anchors:  # the epoch's fixed anchors; the positives' noise still follows ``step``
            anchors = torch.Generator(device=device).manual_seed(
                stream_seed(self.seed, self.rank, self._anchor_step(step, slot)) ^ 0xA4C4
            )
            base = self.generator.sample_base(self.batch_size, generator=anchors)
        with self._autocast(device):
            return self.sampler.views(self.batch_size, self.num_crops, rng, base=base)

    @torch.no_grad()
    def render(self, step: int, device: torch.device | str | None = None, slot: int | None = None) -> Batch:
        """The training batch of global batch ``step`` (``slot``: its number within the epoch)."""
        views = self.draw_views(step, device, slot)
        device = views.base.device
        crops = []
        with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
            torch.manual_seed(stream_seed(self.seed, self.rank, step) ^ 0x5EED)
            images = iter(views.images)
            for group, augment in zip(self.groups, self.crop_augments, strict=True):
                for _ in range(group.num_crops):
                    crops.append(augment(next(images).float()))
        indexes = self.indexes(self._anchor_step(step, slot), device)
        targets = views.labels if views.labels is not None else torch.full_like(indexes, -1)
        return [indexes, crops, targets.long()]


def validation_split(generator: MultiLatentGenerator, n: int, seed: int) -> tuple[Tensor, Tensor]:
    """``n`` labelled, unperturbed images from the generator's evaluation stream (``val``: never drawn for
    training, nor by the linear evaluation's splits), kept as uint8 at the generator's resolution, as image
    files would be (``MultiCropSampling.validation_transform`` resizes and normalises each batch)."""
    images, labels = render_labelled(generator, n, seed, "val")
    return images.mul(255).round().clamp(0, 255).to(torch.uint8), labels
