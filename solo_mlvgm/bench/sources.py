"""The data sources the benchmark compares. Each yields solo-learn batches ``[indexes, [view_1, view_2],
targets]`` on the training device, endlessly (epochs of a finite folder follow each other):

- ``continuous``: Continuous Sampling, generator resident on the device, latents drawn there;
- ``torch``: the torch DataLoader over the exported ImageFolder (PIL decode, augmentations on the workers by
  default, ``bench.torch.augment_on=device`` for kornia on the device);
- ``dali``: the DALI pipeline over the same folder (GPU pipeline with a GPU, CPU pipeline otherwise);
- ``ffcv``: FFCV over the folder written once to a ``.beton`` file (where FFCV is installed);
- ``limit``: one batch already on the device, reused: the data cost is zero.
"""

from __future__ import annotations

import contextlib
import itertools
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import torch
from lightning.fabric.utilities.apply_func import move_data_to_device

from solo_mlvgm.data.continuous import ContinuousSampling
from solo_mlvgm.data.dali import DaliImageFolder, dali_missing
from solo_mlvgm.data.real import ImageFolderData
from solo_mlvgm.generators.base import MultiLatentGenerator
from solo_mlvgm.views.spec import ViewSpec

SOURCES = ("limit", "continuous", "torch", "dali", "ffcv")
FOLDER_SOURCES = ("torch", "dali", "ffcv")


@dataclass
class SourceSetup:
    """What every source is built from, so that all of them make the same batches."""

    generator: MultiLatentGenerator
    spec: ViewSpec
    device: torch.device
    size: int  # output size of the views
    folder: Path | None  # the exported ImageFolder (folder sources)
    seed: int = 0
    autocast_dtype: torch.dtype | None = torch.bfloat16
    channels_last: bool = True
    torch_workers: int = 2
    torch_augment_on: str = "workers"
    dali_threads: int = 2
    ffcv_workers: int = 2
    ffcv_cache: Path | None = None


def missing_reason(name: str) -> str | None:
    """Why a source cannot run here (an optional package is absent), or None."""
    if name == "dali":
        return dali_missing()
    if name == "ffcv":
        from solo_mlvgm.bench.ffcv_source import ffcv_missing

        return ffcv_missing()
    return None


def continuous_sampling(setup: SourceSetup, batch_size: int) -> ContinuousSampling:
    return ContinuousSampling(
        setup.generator,
        setup.spec,
        batch_size=batch_size,
        epoch_size=batch_size,
        seed=setup.seed,
        crop_size=setup.size,
        autocast_dtype=setup.autocast_dtype,
        channels_last=setup.channels_last,
        rank=0,
        world_size=1,
    )


def _endless(epoch: Callable[[], Iterator[list]]) -> Iterator[list]:
    while True:
        yield from epoch()


@contextlib.contextmanager
def open_source(name: str, setup: SourceSetup, batch_size: int) -> Iterator[Iterator[list]]:
    """An endless iterator of device batches from source ``name``; its workers stop on exit."""
    device = setup.device
    if name in ("continuous", "limit"):
        cs = continuous_sampling(setup, batch_size)
        if name == "limit":
            batch = cs.render(0, device)
            yield itertools.repeat(batch)
        else:
            yield (cs.render(step, device) for step in itertools.count())
        return
    if setup.folder is None:
        raise ValueError(f"source '{name}' needs the exported folder")
    if name == "torch":
        data = ImageFolderData(
            setup.folder,
            resolution=setup.generator.resolution,
            batch_size=batch_size,
            pixel=setup.spec.pixel,
            crop_min_scale=setup.spec.crop_min_scale,
            num_workers=setup.torch_workers,
            augment_on=setup.torch_augment_on,
            crop_size=setup.size,
        )
        loader = data.train_dataloader()
        try:
            yield _endless(
                lambda: (data.on_after_batch_transfer(move_data_to_device(b, device), 0) for b in loader)
            )
        finally:
            del loader  # persistent workers end with their loader
        return
    if name == "dali":
        dali = DaliImageFolder(
            setup.folder,
            batch_size,
            setup.size,
            pixel=setup.spec.pixel,
            crop_min_scale=setup.spec.crop_min_scale,
            device="gpu" if device.type == "cuda" else "cpu",
            num_threads=setup.dali_threads,
            seed=setup.seed,
        )
        yield _endless(lambda: (move_data_to_device(b, device) for b in dali))
        return
    if name == "ffcv":
        from solo_mlvgm.bench.ffcv_source import ffcv_batches

        yield ffcv_batches(setup, batch_size)
        return
    raise ValueError(f"unknown source '{name}'; known: {', '.join(SOURCES)}")
