"""Real-data loader on NVIDIA DALI: an ImageFolder decoded and augmented by a DALI pipeline, in solo-learn's
batch format ``[indexes, [view_1, view_2], targets]``.

With a GPU the pipeline decodes with nvJPEG and augments on that GPU; without one it runs on the CPU
(``device_id=None``). The pixel presets have the ops and parameter ranges of the kornia/torchvision ones:
random resized crop (same scale and ratio ranges), horizontal flip and, for ``simclr``, brightness,
contrast, saturation and hue jitter (factors in [0.6, 1.4], hue +-0.1 of the circle, p 0.8) and grayscale
(p 0.2), then ImageNet normalisation. Two differences in form, not in cost: DALI's ``color_twist`` applies
the jitter in one fixed order and its brightness is a factor (kornia's is an offset). DALI is an optional extra
(``pip install -e ".[dali]"``); ``dali_missing()`` says why it cannot be used.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import lightning.pytorch as pl
import torch

from solo_mlvgm.data.real import FolderListing, list_image_folder
from solo_mlvgm.errors import ConfigError
from solo_mlvgm.views.pixel import IMAGENET_MEAN, IMAGENET_STD, check_pixel_options

READER = "reader"


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
        mirror = 0
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
        images, mirror=mirror, dtype=types.FLOAT, output_layout="CHW", mean=rgb_scale, std=rgb_std
    )


def check_dali_options(
    root: str | Path,
    batch_size: int,
    pixel: str,
    crop_min_scale: float,
    device: str,
    num_threads: int,
    world_size: int = 1,
) -> FolderListing:
    """Every reason the loader could not start, as one ``ConfigError``, before anything runs; the listing."""
    missing = dali_missing()
    if missing:
        raise ConfigError(missing)
    check_pixel_options(pixel, crop_min_scale)
    if device not in ("auto", "cpu", "gpu"):
        raise ConfigError(f"DALI device must be auto, cpu or gpu, got '{device}'")
    if device == "gpu" and not torch.cuda.is_available():
        raise ConfigError("DALI device=gpu needs a CUDA device; use device=cpu (or auto)")
    if batch_size < 1 or num_threads < 1:
        raise ConfigError(f"batch_size and num_threads must be >= 1, got {batch_size}, {num_threads}")
    listing = list_image_folder(root)
    if len(listing.files) // world_size < batch_size:
        raise ConfigError(
            f"image folder '{root}' has {len(listing.files)} images, fewer than one batch ({batch_size}) per rank"
        )
    return listing


class DaliImageFolder:
    """An iterable of solo-learn batches over an ImageFolder, one epoch per iteration (last partial batch
    dropped), sharded over ranks. Batches come out on the pipeline's device (the GPU, or the CPU)."""

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
        rank: int = 0,
        world_size: int = 1,
        passes: int = 1,
    ) -> None:
        if passes < 1:
            raise ConfigError(f"passes must be >= 1, got {passes}")
        listing = check_dali_options(root, batch_size, pixel, crop_min_scale, device, num_threads, world_size)
        self.gpu = device == "gpu" or (device == "auto" and torch.cuda.is_available())
        self.num_classes = len(listing.classes)
        self.batch_size = int(batch_size)
        self._targets = torch.tensor(listing.targets, dtype=torch.long)
        self._length = passes * len(listing.files) // world_size // batch_size
        self._iterator = self._build(
            listing, size, pixel, crop_min_scale, num_threads, seed, rank, world_size, passes
        )

    def _build(self, listing, size, pixel, crop_min_scale, num_threads, seed, rank, world_size, passes):  # noqa: ANN001, ANN202
        from nvidia.dali import fn, pipeline_def, types
        from nvidia.dali.plugin.pytorch import DALIGenericIterator, LastBatchPolicy

        mean = [255 * m for m in IMAGENET_MEAN]
        std = [255 * s for s in IMAGENET_STD]
        # ``passes`` > 1 chains that many permutations of the folder into one epoch (no reset at every
        # pass's end, and an image repeats only across a pass boundary).
        n = len(listing.files)
        rng = torch.Generator().manual_seed(seed + rank)
        indexes = (
            list(range(n))
            if passes == 1
            else torch.cat([torch.randperm(n, generator=rng) for _ in range(passes)]).tolist()
        )
        files = [str(listing.files[i]) for i in indexes]

        @pipeline_def
        def pipeline():  # noqa: ANN202
            # The file index rides in the label slot; the class comes from it (solo batches need both).
            encoded, index = fn.readers.file(
                files=files,
                labels=indexes,
                random_shuffle=passes == 1,
                shard_id=rank,
                num_shards=world_size,
                name=READER,
            )
            images = fn.decoders.image(encoded, device="mixed" if self.gpu else "cpu", output_type=types.RGB)
            views = [_view(images, pixel, size, crop_min_scale, mean, std) for _ in range(2)]
            return index, *views

        device_id = torch.cuda.current_device() if self.gpu else None  # the trainer's (or bench's) device
        pipe = pipeline(
            batch_size=self.batch_size,
            num_threads=num_threads,
            device_id=device_id,
            seed=seed + rank,
            prefetch_queue_depth=2,
        )
        pipe.build()
        return DALIGenericIterator(
            pipe,
            ["index", "view_1", "view_2"],
            reader_name=READER,
            last_batch_policy=LastBatchPolicy.DROP,
            auto_reset=True,
        )

    def __len__(self) -> int:
        return self._length

    def __iter__(self) -> Iterator[list]:
        for outputs in self._iterator:
            out = outputs[0]
            indexes = out["index"].reshape(-1).long()
            targets = self._targets[indexes.cpu()].to(indexes.device)
            yield [indexes, [out["view_1"], out["view_2"]], targets]


class DaliImageFolderData(pl.LightningDataModule):
    """The DALI loader as a datamodule for training on a real ImageFolder (``data=dali``)."""

    def __init__(
        self,
        train_path: str | Path,
        batch_size: int,
        size: int,
        pixel: str = "simclr",
        crop_min_scale: float = 0.2,
        device: str = "auto",
        num_threads: int = 2,
        seed: int = 0,
    ) -> None:
        super().__init__()
        self.options = dict(
            root=train_path,
            batch_size=batch_size,
            size=size,
            pixel=pixel,
            crop_min_scale=crop_min_scale,
            device=device,
            num_threads=num_threads,
            seed=seed,
        )
        listing = check_dali_options(train_path, batch_size, pixel, crop_min_scale, device, num_threads)
        self.num_classes = len(listing.classes)
        self._loader: DaliImageFolder | None = None

    def train_dataloader(self) -> DaliImageFolder:
        if self._loader is None:
            trainer = self.trainer
            rank, world = (trainer.global_rank, trainer.world_size) if trainer is not None else (0, 1)
            self._loader = DaliImageFolder(**self.options, rank=rank, world_size=world)
        return self._loader
