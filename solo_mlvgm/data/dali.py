"""Real-data loader on NVIDIA DALI: an ImageFolder decoded and augmented by a DALI pipeline, in solo-learn's
batch format ``[indexes, [view_1, view_2], targets]``.

With a GPU the pipeline decodes with nvJPEG and augments on that GPU; without one it runs on the CPU
(``device_id=None``). The pixel presets have the ops and parameter ranges of the kornia/torchvision ones:
random resized crop (same scale and ratio ranges), horizontal flip and, for ``simclr``, brightness,
contrast, saturation and hue jitter (factors in [0.6, 1.4], hue +-0.1 of the circle, p 0.8) and grayscale
(p 0.2), then ImageNet normalisation. Brightness and saturation follow torchvision's rules; three differences
in form remain (DALI's ``color_twist``): one fixed order of the jitter, contrast around mid-grey rather than
the image's mean, and hue as a rotation in YIQ rather than a shift in HSV. DALI is an optional extra
(``pip install -e ".[dali]"``); ``dali_missing()`` says why it cannot be used.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import torch

from solo_mlvgm.data.real import list_image_folder
from solo_mlvgm.errors import ConfigError
from solo_mlvgm.views.pixel import IMAGENET_MEAN, IMAGENET_STD, check_pixel_options

READER = "reader"
PREFETCH_DEPTH = 2  # batches the pipeline prepares ahead of the step


def dali_missing() -> str | None:
    """None when DALI can be used, else the reason and the install command."""
    try:
        import nvidia.dali  # noqa: F401
        import nvidia.dali.plugin.pytorch  # noqa: F401
    except ImportError as err:
        return f"NVIDIA DALI is not installed ({err}); pip install -e '.[dali]' (or '.[dali-cuda12]')"
    return None


def _view(images, preset: str, size: int, crop_min_scale: float, rgb_scale: list, rgb_std: list):  # noqa: ANN001, ANN202
    """One augmented view of a batch of decoded images (a DALI graph node)."""
    from nvidia.dali import fn, types

    if preset == "none":
        images = fn.resize(images, size=(size, size))
        mirror: Any = 0  # a constant, or a DALI graph node below
    else:
        images = fn.random_resized_crop(images, size=(size, size), random_area=(crop_min_scale, 1.0))
        mirror = fn.random.coin_flip(probability=0.5)
    if preset == "simclr":
        jitter = fn.random.coin_flip(probability=0.8)
        gray = fn.random.coin_flip(probability=0.2)

        def factor(low: float, high: float):  # noqa: ANN202 - 1 when the jitter is not applied
            return 1.0 + jitter * (fn.random.uniform(range=(low, high)) - 1.0)

        images = fn.color_twist(
            images,
            brightness=factor(0.6, 1.4),
            contrast=factor(0.6, 1.4),
            saturation=factor(0.6, 1.4) * (1 - gray),
            hue=jitter * fn.random.uniform(range=(-36.0, 36.0)),  # degrees: 0.1 of the hue circle
        )
    return fn.crop_mirror_normalize(
        images,
        mirror=mirror,
        dtype=types.DALIDataType.FLOAT,
        output_layout="CHW",
        mean=rgb_scale,
        std=rgb_std,
    )


class DaliImageFolder:
    """An iterable of solo-learn batches over an ImageFolder, one epoch per iteration (last partial batch
    dropped). Every option is checked when it is made; the pipeline is built at the first iteration, on the
    shard ``shard(rank, world_size)`` chose (rank 0 of 1 by default). Batches come out on the pipeline's
    device (the current GPU, or the CPU). ``passes`` > 1 chains that many permutations of the folder into one
    epoch (no reset at every pass's end; an image repeats only across a pass boundary)."""

    def __init__(
        self,
        root: str | Path,
        batch_size: int,
        size: int,
        pixel: str = "simclr",
        crop_min_scale: float = 0.2,
        device: str = "auto",
        num_threads: int = 2,
        seed: int = 0,
        passes: int = 1,
    ) -> None:
        missing = dali_missing()
        if missing:
            raise ConfigError(missing)
        check_pixel_options(pixel, crop_min_scale)
        if device not in ("auto", "cpu", "gpu"):
            raise ConfigError(f"DALI device must be auto, cpu or gpu, got '{device}'")
        if device == "gpu" and not torch.cuda.is_available():
            raise ConfigError("DALI device=gpu needs a CUDA device; use device=cpu (or auto)")
        if min(batch_size, num_threads, passes) < 1:
            raise ConfigError(
                f"batch_size, num_threads and passes must be >= 1, got {batch_size}, {num_threads}, {passes}"
            )
        self.listing = list_image_folder(root)
        self.root, self.batch_size, self.size, self.pixel = root, int(batch_size), int(size), pixel
        self.crop_min_scale, self.num_threads, self.seed, self.passes = (
            crop_min_scale,
            num_threads,
            seed,
            passes,
        )
        self.gpu = device == "gpu" or (device == "auto" and torch.cuda.is_available())
        self.num_classes = len(self.listing.classes)
        self._targets = torch.tensor(self.listing.targets, dtype=torch.long)
        self._iterator: Any = None  # a DALIGenericIterator, built on first use (DALI has no type stubs)
        self.rank, self.world_size = 0, 1
        self.shard(0, 1)

    def shard(self, rank: int, world_size: int) -> None:
        """Read only shard ``rank`` of ``world_size`` (before the first iteration)."""
        if self._iterator is not None and (rank, world_size) != (self.rank, self.world_size):
            raise RuntimeError("the DALI pipeline is already built on another shard")
        if len(self.listing.files) // world_size < self.batch_size:
            raise ConfigError(
                f"image folder '{self.root}' has {len(self.listing.files)} images, fewer than one batch "
                f"({self.batch_size}) per rank"
            )
        self.rank, self.world_size = rank, world_size

    def __len__(self) -> int:
        return self.passes * len(self.listing.files) // self.world_size // self.batch_size

    def __iter__(self) -> Iterator[list]:
        if self._iterator is None:
            self._iterator = self._build()
        for outputs in self._iterator:
            out = outputs[0]
            indexes = out["index"].reshape(-1).long()
            if self._targets.device != indexes.device:  # moved once: no host round trip per batch
                self._targets = self._targets.to(indexes.device)
            yield [indexes, [out["view_1"], out["view_2"]], self._targets[indexes]]

    def _build(self):  # noqa: ANN202
        from nvidia.dali import fn, pipeline_def, types
        from nvidia.dali.plugin.pytorch import DALIGenericIterator, LastBatchPolicy

        mean = [255 * m for m in IMAGENET_MEAN]
        std = [255 * s for s in IMAGENET_STD]
        n, seed = len(self.listing.files), self.seed + self.rank
        rng = torch.Generator().manual_seed(seed)
        indexes = (
            list(range(n))
            if self.passes == 1
            else torch.cat([torch.randperm(n, generator=rng) for _ in range(self.passes)]).tolist()
        )
        files = [str(self.listing.files[i]) for i in indexes]

        @pipeline_def
        def pipeline():  # noqa: ANN202
            # The file index rides in the label slot; the class comes from it (solo batches need both).
            encoded, index = fn.readers.file(
                files=files,
                labels=indexes,
                random_shuffle=self.passes == 1,
                shard_id=self.rank,
                num_shards=self.world_size,
                name=READER,
            )
            images = fn.decoders.image(encoded, device="mixed" if self.gpu else "cpu", output_type=types.RGB)
            views = [_view(images, self.pixel, self.size, self.crop_min_scale, mean, std) for _ in range(2)]
            return index, *views

        pipe = pipeline(
            batch_size=self.batch_size,
            num_threads=self.num_threads,
            device_id=torch.cuda.current_device() if self.gpu else None,  # the trainer's (or bench's) GPU
            seed=seed,
            prefetch_queue_depth=PREFETCH_DEPTH,
        )
        pipe.build()
        return DALIGenericIterator(
            pipe,
            ["index", "view_1", "view_2"],
            reader_name=READER,
            last_batch_policy=LastBatchPolicy.DROP,
            auto_reset=True,
        )


class DaliImageFolderData(pl.LightningDataModule):
    """The DALI loader as a datamodule for training on a real ImageFolder (``data=dali``), sharded over the
    trainer's ranks."""

    def __init__(self, loader: DaliImageFolder) -> None:
        super().__init__()
        self.loader = loader
        self.num_classes = loader.num_classes

    def train_dataloader(self) -> DaliImageFolder:
        if self.trainer is not None:
            self.loader.shard(self.trainer.global_rank, self.trainer.world_size)
        return self.loader
