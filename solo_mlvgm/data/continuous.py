"""Continuous Sampling: every training step renders a fresh batch of positive pairs on the training device.

The dataloader only hands out batch numbers; rendering happens in ``on_after_batch_transfer``, i.e. on the
device the trainer moved the (tiny) batch to. The generator lives here, outside the LightningModule, so it
is never checkpointed, never wrapped by DDP, and stays in eval mode without gradients.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import lightning.pytorch as pl
import torch
from torch import Tensor

from solo_mlvgm.data.seeding import stream_seed
from solo_mlvgm.errors import ConfigError
from solo_mlvgm.generators.base import MultiLatentGenerator
from solo_mlvgm.views.pixel import build_pixel_augment
from solo_mlvgm.views.sampler import ViewPair, ViewSampler
from solo_mlvgm.views.spec import ViewSpec

Batch = list  # [indexes LongTensor[B], [view_1, view_2], targets LongTensor[B]]


class BatchTickets:
    """One ticket per batch of an epoch. A plain iterable, so Lightning never splits it with a sampler, and
    resumable: after a mid-epoch restore it yields only the batches the epoch still owes (Lightning treats an
    iterable with ``state_dict``/``load_state_dict`` as resumable; the position itself lives in the trainer's
    restored progress)."""

    def __init__(self, steps: int, datamodule: pl.LightningDataModule) -> None:
        self.steps, self.datamodule = steps, datamodule
        self.dataset: range | None = None  # set where a method reads the dataset's size

    def __len__(self) -> int:
        return self.steps

    def __iter__(self) -> Iterator[Tensor]:
        trainer, done = self.datamodule.trainer, 0
        if trainer is not None and trainer.fit_loop.epoch_loop.restarting:
            done = trainer.fit_loop.epoch_loop.batch_progress.current.completed
        return (torch.tensor(i) for i in range(done, self.steps))

    def state_dict(self) -> dict:
        return {}

    def load_state_dict(self, state: dict) -> None:
        pass


def steps_per_epoch(epoch_size: int, batch_size: int, world_size: int) -> int:
    """Batches per epoch: ``epoch_size`` images over all ranks, in whole global batches."""
    steps = epoch_size // (batch_size * world_size)
    if steps < 1:
        raise ConfigError(
            f"epoch_size {epoch_size} is smaller than one global batch ({batch_size} x {world_size})"
        )
    return steps


def place_generator(generator: MultiLatentGenerator, device: torch.device, channels_last: bool) -> None:
    """Move the generator to ``device``; on CUDA in channels_last memory format when asked (off by default:
    measured slower for StyleGAN2 and about even for BigBiGAN on an H200)."""
    generator.to(device)
    if device.type == "cuda" and channels_last:
        generator.to(memory_format=torch.channels_last)


class ContinuousSampling(pl.LightningDataModule):
    """Per-device batch of ``batch_size`` positive pairs; an epoch is ``epoch_size`` images over all ranks."""

    def __init__(
        self,
        generator: MultiLatentGenerator,
        spec: ViewSpec,
        batch_size: int,
        epoch_size: int,
        seed: int = 0,
        crop_size: int | None = None,
        autocast_dtype: torch.dtype | None = torch.bfloat16,
        channels_last: bool = False,
        rank: int | None = None,
        world_size: int | None = None,
    ) -> None:
        super().__init__()
        if batch_size <= 0 or epoch_size <= 0:
            raise ConfigError(f"batch_size and epoch_size must be > 0, got {batch_size}, {epoch_size}")
        self.generator = generator.freeze()
        self.sampler = ViewSampler(self.generator, spec)
        self.augment = build_pixel_augment(spec.pixel, crop_size or generator.resolution, spec.crop_min_scale)
        self.batch_size = int(batch_size)
        self.epoch_size = int(epoch_size)
        self.seed = int(seed)
        self.autocast_dtype = autocast_dtype
        self.channels_last = bool(channels_last)
        self._rank, self._world_size = rank, world_size
        self._device: torch.device | None = None
        self.steps_per_epoch  # noqa: B018 - fails now, not at the first step, if the epoch is too short

    # ------------------------------------------------------------ placement
    @property
    def rank(self) -> int:
        if self._rank is not None:
            return self._rank
        return self.trainer.global_rank if self.trainer is not None else 0

    @property
    def world_size(self) -> int:
        if self._world_size is not None:
            return self._world_size
        return self.trainer.world_size if self.trainer is not None else 1

    @property
    def steps_per_epoch(self) -> int:
        return steps_per_epoch(self.epoch_size, self.batch_size, self.world_size)

    # ----------------------------------------------------------- lightning
    def train_dataloader(self) -> BatchTickets:
        return BatchTickets(self.steps_per_epoch, self)

    def on_after_batch_transfer(self, batch: Tensor, dataloader_idx: int) -> Batch:
        # The trainer's count of batches made ready so far (restored from checkpoints, mid-epoch too) is
        # the global batch number, so a resumed run continues with exactly the batches it would have seen.
        assert self.trainer is not None  # Lightning calls this hook only while a trainer runs
        if not self.trainer.training:  # a validation batch (solo-learn files): made ready by its loader
            return batch  # type: ignore[return-value]
        step = self.trainer.fit_loop.epoch_loop.batch_progress.total.ready
        return self.render(step, batch.device, slot=int(batch))

    # ------------------------------------------------------------ sampling
    def _placed(self, device: torch.device | str | None) -> torch.device:
        device = torch.device(device or self.generator.device)
        if self._device != device:  # once per device, not every step
            place_generator(self.generator, device, self.channels_last)
            self.augment.to(device)
            self._device = device
        return device

    @torch.no_grad()
    def draw(self, step: int, device: torch.device | str | None = None) -> ViewPair:
        """The un-augmented view pair of global batch ``step`` for this rank: a pure function of
        (seed, rank, step)."""
        device = self._placed(device)
        rng = torch.Generator(device=device).manual_seed(stream_seed(self.seed, self.rank, step))
        with self._autocast(device):
            return self.sampler(self.batch_size, rng)

    def _autocast(self, device: torch.device) -> contextlib.AbstractContextManager:
        """The generator's precision: ``autocast_dtype`` on CUDA, fp32 elsewhere."""
        if device.type == "cuda" and self.autocast_dtype is not None:
            return torch.autocast(device.type, dtype=self.autocast_dtype)
        return contextlib.nullcontext()

    def indexes(self, step: int, device: torch.device) -> Tensor:
        """Global sample numbers of this rank's part of batch ``step`` (solo-learn's ``indexes``)."""
        start = (step * self.world_size + self.rank) * self.batch_size
        return torch.arange(start, start + self.batch_size, device=device)

    @torch.no_grad()
    def render(self, step: int, device: torch.device | str | None = None, slot: int | None = None) -> Batch:
        """The training batch of global batch ``step`` for this rank, in solo-learn's format, on ``device``
        (``slot``, the batch's number within its epoch, matters to ``MultiCropSampling`` only)."""
        pair = self.draw(step, device)
        device = pair.base.device
        # kornia draws its parameters from the global RNG: fork it so the step seed fixes them too.
        with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
            torch.manual_seed(stream_seed(self.seed, self.rank, step) ^ 0x5EED)
            views = self.augment(torch.cat([pair.anchor, pair.positive]).float()).chunk(2)
        indexes = self.indexes(step, device)
        targets = pair.labels if pair.labels is not None else torch.full_like(indexes, -1)
        return [indexes, list(views), targets.long()]
