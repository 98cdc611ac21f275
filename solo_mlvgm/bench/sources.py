"""The data sources the benchmark compares. Each yields solo-learn batches ``[indexes, [view_1, view_2],
targets]`` on the training device, for as many steps as a point needs:

- ``continuous``: Continuous Sampling, generator resident on the device, latents drawn there;
- ``torch``: the torch DataLoader over the exported ImageFolder (PIL decode, augmentations on the workers by
  default, ``bench.torch.augment_on=device`` for kornia on the device);
- ``dali``: the DALI pipeline over the same folder (GPU pipeline with a GPU, CPU pipeline otherwise);
- ``ffcv``: FFCV over the folder written once to a ``.beton`` file (where FFCV is installed);
- ``limit``: one batch already on the device, reused: the data cost is zero.

The folder sources chain reshuffled passes over the export into one long epoch, so no timed window ever
holds an epoch restart (workers respawned, pipelines reset) that a run over a large dataset would pay once
in hundreds of steps and Continuous Sampling never pays.
"""

from __future__ import annotations

import contextlib
import gc
import itertools
import math
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import torch
from lightning.fabric.utilities.apply_func import move_data_to_device

from solo_mlvgm.data.continuous import ContinuousSampling
from solo_mlvgm.data.dali import PREFETCH_DEPTH as DALI_PREFETCH_DEPTH
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
    channels_last: bool = False
    torch_workers: int = 2
    torch_augment_on: str = "workers"
    dali_threads: int = 2
    ffcv_workers: int = 2
    ffcv_cache: Path | None = None
    folder_size: int = 0  # images in the export


def missing_reason(name: str) -> str | None:
    """Why a source cannot run here (an optional package is absent), or None."""
    if name == "dali":
        return dali_missing()
    if name == "ffcv":
        from solo_mlvgm.bench.ffcv_source import ffcv_missing

        return ffcv_missing()
    return None


def prefetch_depth(name: str, setup: SourceSetup) -> int:
    """Batches a source prepares ahead of the step: the warm-up drains at least these, so no timed window
    is served from a queue filled while the clock was stopped."""
    if name == "torch":
        return 2 * setup.torch_workers  # prefetch_factor 2 per worker
    if name == "ffcv":
        from solo_mlvgm.bench.ffcv_source import BATCHES_AHEAD

        return BATCHES_AHEAD
    return DALI_PREFETCH_DEPTH if name == "dali" else 0


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


@contextlib.contextmanager
def open_source(name: str, setup: SourceSetup, batch_size: int, steps: int) -> Iterator[Iterator[list]]:
    """An endless iterator of device batches from source ``name``, planned for ``steps`` batches (a folder
    source's epoch covers them); workers, threads and device memory of the source are released on exit."""
    batches = _batches(name, setup, batch_size, steps)
    try:
        yield batches
    finally:
        quiet = contextlib.nullcontext()
        if name == "ffcv":
            from solo_mlvgm.bench.ffcv_source import quiet_numba_finalizers

            quiet = quiet_numba_finalizers()
        with quiet:
            batches.close()  # runs the source's own clean-up (FFCV stops its epoch thread)
            del batches
            gc.collect()  # DataLoader workers and DALI pipelines end with their last reference
        if name == "dali" and setup.device.type == "cuda":
            from nvidia.dali.backend import ReleaseUnusedMemory

            ReleaseUnusedMemory()
        if setup.device.type == "cuda":
            torch.cuda.empty_cache()


def _batches(name: str, setup: SourceSetup, batch_size: int, steps: int) -> Iterator[list]:
    device = setup.device
    if name in ("continuous", "limit"):
        cs = continuous_sampling(setup, batch_size)
        if name == "limit":
            yield from itertools.repeat(cs.render(0, device))
        else:
            for step in itertools.count():
                yield cs.render(step, device)
        return
    if setup.folder is None:
        raise ValueError(f"source '{name}' needs the exported folder")
    samples = (steps + prefetch_depth(name, setup) + 1) * batch_size
    passes = math.ceil(samples / max(1, setup.folder_size))
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
        loader = data.make_loader(samples=passes * setup.folder_size, pin_memory=device.type == "cuda")
        while True:  # a window that outlasts the planned steps (min_window_seconds) starts another epoch
            for batch in loader:
                yield data.on_after_batch_transfer(move_data_to_device(batch, device), 0)
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
            passes=passes,
        )
        while True:
            for batch in dali:
                yield move_data_to_device(batch, device)
    if name == "ffcv":
        from solo_mlvgm.bench.ffcv_source import ffcv_batches

        yield from ffcv_batches(setup, batch_size, passes)
        return
    raise ValueError(f"unknown source '{name}'; known: {', '.join(SOURCES)}")
