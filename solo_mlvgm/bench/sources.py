"""The data sources the benchmark compares. Each yields solo-learn batches ``[indexes, [view_1, view_2],
targets]`` on the training device, for as many steps as a point needs:

- ``continuous``: Continuous Sampling, generator resident on the device, latents drawn there;
- ``torch``: the torch DataLoader over the exported ImageFolder (PIL decode, augmentations on the workers by
  default, ``bench.torch.augment_on=device`` for kornia on the device);
- ``dali``: the DALI pipeline over the same folder (GPU pipeline with a GPU, CPU pipeline otherwise);
- ``ffcv``: FFCV over the folder written once to a ``.beton`` file (where FFCV is installed; its own module);
- ``limit``: one batch already on the device, reused: the data cost is zero.

A source is one ``DataSource`` class registered under its ``bench.sources`` name with ``@register_source``:
built from its own ``bench.<name>`` settings (``from_config``) and opened per point against the run's shared
``SourceContext``. The driver only reads the class's attributes and methods, so adding a source is one class
plus its config keys.

The folder sources chain reshuffled passes over the export into one long epoch, so no timed window ever
holds an epoch restart (workers respawned, pipelines reset) that a run over a large dataset would pay once
in hundreds of steps and Continuous Sampling never pays.
"""

from __future__ import annotations

import contextlib
import gc
import itertools
import math
from abc import ABC, abstractmethod
from collections.abc import Callable, Generator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, TypeVar

import torch
from lightning.fabric.utilities.apply_func import move_data_to_device
from omegaconf import DictConfig, OmegaConf

from solo_mlvgm.checks import integer
from solo_mlvgm.data.continuous import Batch, ContinuousSampling
from solo_mlvgm.data.dali import PREFETCH_DEPTH as DALI_PREFETCH_DEPTH
from solo_mlvgm.data.dali import DaliImageFolder, dali_missing
from solo_mlvgm.data.real import AUGMENT_PLACES, ImageFolderData
from solo_mlvgm.errors import ConfigError
from solo_mlvgm.generators.base import MultiLatentGenerator
from solo_mlvgm.views.spec import ViewSpec


@dataclass(frozen=True)
class SourceContext:
    """What every source shares, so that all of them make the same batches."""

    generator: MultiLatentGenerator
    spec: ViewSpec
    device: torch.device
    size: int  # output size of the views
    seed: int = 0
    autocast_dtype: torch.dtype | None = torch.bfloat16
    channels_last: bool = False
    folder: Path | None = None  # the exported ImageFolder (sources with ``needs_export``)
    folder_size: int = 0  # images in the export


S = TypeVar("S", bound="DataSource")


class DataSource(ABC):
    """One way of feeding the training step. The class attributes tell the driver what the source needs;
    ``open`` gives its batches for one point and releases its workers, threads and device memory after."""

    name: ClassVar[str] = ""  # its bench.sources name, set by ``register_source``
    label: ClassVar[str] = ""  # in the terminal tables and the plot
    needs_export: ClassVar[bool] = False  # reads ``SourceContext.folder``: the driver exports it first
    uses_generator: ClassVar[bool] = True  # False: the generator leaves the device while this source runs
    timed_alone: ClassVar[bool] = True  # also timed without the training step (the "alone" rate)

    @classmethod
    def from_config(cls: type[S], bench: DictConfig) -> S:
        """The source with its ``bench.<name>`` settings; a bad one is a ``ConfigError`` before any work."""
        return cls()

    def missing_reason(self) -> str | None:
        """Why the source cannot run here (an optional package is absent), or None."""
        return None

    def prefetch_depth(self) -> int:
        """Batches the source prepares ahead of the step: the warm-up drains at least these, so no timed
        window is served from a queue filled while the clock was stopped."""
        return 0

    def describe(self) -> dict[str, Any]:
        """The source's settings, recorded in the run's setup (bench.json)."""
        return {}

    def generator_only(self, ctx: SourceContext, batch_size: int) -> Callable[[], object] | None:
        """One call renders what the source asks of the generator per batch, nothing else: the generator's
        rate for the roofline of this source. None for sources without one."""
        return None

    @abstractmethod
    def batches(self, ctx: SourceContext, batch_size: int, steps: int) -> Iterator[Batch]:
        """Endless device batches, planned for ``steps`` of them. A generator function, so nothing is built
        before the first batch is asked for (the point's memory watch is on by then)."""

    def closing(self) -> contextlib.AbstractContextManager[None]:
        """Wraps the release of the batches (FFCV keeps numba's harmless finalizer errors quiet)."""
        return contextlib.nullcontext()

    def release_device(self, ctx: SourceContext) -> None:
        """Hands the device memory the closed source held back to the device."""
        if ctx.device.type == "cuda":
            torch.cuda.empty_cache()

    @contextlib.contextmanager
    def open(self, ctx: SourceContext, batch_size: int, steps: int) -> Iterator[Iterator[Batch]]:
        """An endless iterator of device batches planned for ``steps`` batches (a folder source's epoch
        covers them); the source's workers, threads and device memory are released on exit."""
        batches = self.batches(ctx, batch_size, steps)
        try:
            yield batches
        finally:
            with self.closing():
                if isinstance(batches, Generator):
                    batches.close()  # runs the source's own clean-up (FFCV stops its epoch thread)
                del batches
                gc.collect()  # DataLoader workers and DALI pipelines end with their last reference
            self.release_device(ctx)


_REGISTRY: dict[str, type[DataSource]] = {}
D = TypeVar("D", bound=type[DataSource])


def register_source(name: str) -> Callable[[D], D]:
    """Class decorator: ``bench.sources`` knows the class as ``name``."""

    def register(cls: D) -> D:
        if name in _REGISTRY:
            raise ValueError(f"source '{name}' is already registered ({_REGISTRY[name].__qualname__})")
        cls.name = name
        _REGISTRY[name] = cls
        return cls

    return register


def known_sources() -> list[str]:
    """Registered source names, in registration order."""
    return list(_REGISTRY)


def source_class(name: str) -> type[DataSource]:
    if name not in _REGISTRY:
        raise ConfigError(f"unknown source '{name}'; known: {', '.join(_REGISTRY)}")
    return _REGISTRY[name]


def config_int(bench: DictConfig, key: str, low: int) -> int:
    """``bench.<key>`` as an integer of at least ``low``."""
    return integer(OmegaConf.select(bench, key), f"bench.{key}", low)


def continuous_sampling(ctx: SourceContext, batch_size: int) -> ContinuousSampling:
    return ContinuousSampling(
        ctx.generator,
        ctx.spec,
        batch_size=batch_size,
        epoch_size=batch_size,
        seed=ctx.seed,
        crop_size=ctx.size,
        autocast_dtype=ctx.autocast_dtype,
        channels_last=ctx.channels_last,
        rank=0,
        world_size=1,
    )


@register_source("limit")
class LimitSource(DataSource):
    """One batch already on the device, reused: the data cost is zero, so its rate is the training step's
    own and every other source's ratio refers to it (nothing to time alone)."""

    label = "limit (batch reused)"
    timed_alone = False

    def batches(self, ctx: SourceContext, batch_size: int, steps: int) -> Iterator[Batch]:
        yield from itertools.repeat(continuous_sampling(ctx, batch_size).render(0, ctx.device))


@register_source("continuous")
class ContinuousSource(DataSource):
    """Continuous Sampling: every batch rendered on the device from fresh latents."""

    label = "Continuous Sampling"

    def batches(self, ctx: SourceContext, batch_size: int, steps: int) -> Iterator[Batch]:
        cs = continuous_sampling(ctx, batch_size)
        for step in itertools.count():
            yield cs.render(step, ctx.device)

    def generator_only(self, ctx: SourceContext, batch_size: int) -> Callable[[], object]:
        """Exactly what Continuous Sampling asks of the generator each step (fresh latents, the perturbed
        levels mapped again, anchor and positive rendered), without the pixel augmentation and the batch
        assembly."""
        cs = continuous_sampling(ctx, batch_size)
        steps = itertools.count()
        return lambda: cs.draw(next(steps), ctx.device)


class FolderSource(DataSource):
    """A loader over the exported ImageFolder. It needs no generator, which leaves the device while it runs;
    its epoch chains enough reshuffled passes over the folder for the planned steps."""

    needs_export = True
    uses_generator = False

    def folder(self, ctx: SourceContext) -> Path:
        if ctx.folder is None:
            raise ValueError(f"source '{self.name}' needs the exported folder")
        return ctx.folder

    def passes(self, ctx: SourceContext, batch_size: int, steps: int) -> int:
        """Passes over the folder that cover ``steps`` batches, the prefetched ones and one more."""
        samples = (steps + self.prefetch_depth() + 1) * batch_size
        return math.ceil(samples / max(1, ctx.folder_size))


@register_source("torch")
class TorchSource(FolderSource):
    """The torch DataLoader of real-data pretraining: PIL decode, augmentations on the workers (or kornia on
    the device with ``augment_on="device"``)."""

    label = "torch DataLoader"

    def __init__(self, num_workers: int = 2, augment_on: str = "workers") -> None:
        self.num_workers, self.augment_on = num_workers, augment_on

    @classmethod
    def from_config(cls, bench: DictConfig) -> TorchSource:
        augment_on = str(OmegaConf.select(bench, "torch.augment_on"))
        if augment_on not in AUGMENT_PLACES:
            raise ConfigError(f"bench.torch.augment_on must be one of {', '.join(AUGMENT_PLACES)}")
        return cls(num_workers=config_int(bench, "torch.num_workers", low=0), augment_on=augment_on)

    def prefetch_depth(self) -> int:
        return 2 * self.num_workers  # prefetch_factor 2 per worker

    def describe(self) -> dict[str, Any]:
        return {"torch_workers": self.num_workers, "torch_augment_on": self.augment_on}

    def batches(self, ctx: SourceContext, batch_size: int, steps: int) -> Iterator[Batch]:
        data = ImageFolderData(
            self.folder(ctx),
            resolution=ctx.generator.resolution,
            batch_size=batch_size,
            pixel=ctx.spec.pixel,
            crop_min_scale=ctx.spec.crop_min_scale,
            num_workers=self.num_workers,
            augment_on=self.augment_on,
            crop_size=ctx.size,
        )
        samples = self.passes(ctx, batch_size, steps) * ctx.folder_size
        loader = data.make_loader(samples=samples, pin_memory=ctx.device.type == "cuda")
        while True:  # a window that outlasts the planned steps (min_window_seconds) starts another epoch
            for batch in loader:
                yield data.on_after_batch_transfer(move_data_to_device(batch, ctx.device), 0)


@register_source("dali")
class DaliSource(FolderSource):
    """NVIDIA DALI over the folder: a GPU pipeline on a CUDA device, the CPU pipeline otherwise."""

    label = "DALI"

    def __init__(self, num_threads: int = 2) -> None:
        self.num_threads = num_threads

    @classmethod
    def from_config(cls, bench: DictConfig) -> DaliSource:
        return cls(num_threads=config_int(bench, "dali.num_threads", low=1))

    def missing_reason(self) -> str | None:
        return dali_missing()

    def prefetch_depth(self) -> int:
        return DALI_PREFETCH_DEPTH

    def describe(self) -> dict[str, Any]:
        return {"dali_threads": self.num_threads}

    def batches(self, ctx: SourceContext, batch_size: int, steps: int) -> Iterator[Batch]:
        dali = DaliImageFolder(
            self.folder(ctx),
            batch_size,
            ctx.size,
            pixel=ctx.spec.pixel,
            crop_min_scale=ctx.spec.crop_min_scale,
            device="gpu" if ctx.device.type == "cuda" else "cpu",
            num_threads=self.num_threads,
            seed=ctx.seed,
            passes=self.passes(ctx, batch_size, steps),
        )
        while True:
            for batch in dali:
                yield move_data_to_device(batch, ctx.device)

    def release_device(self, ctx: SourceContext) -> None:
        if ctx.device.type == "cuda":  # DALI keeps its own memory pools until asked
            from nvidia.dali import backend as dali_backend

            dali_backend.ReleaseUnusedMemory()  # type: ignore[attr-defined]  # a compiled function, not in the stubs
        super().release_device(ctx)


# FFCV's source lives in its own module; importing it registers "ffcv" after the sources above.
from solo_mlvgm.bench import ffcv_source as _ffcv_source  # noqa: E402, F401
