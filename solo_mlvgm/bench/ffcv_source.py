"""FFCV over the exported folder, where FFCV is installed: the folder is written once to a ``.beton`` file
(each image in two fields, one per view, so the two views are decoded and cropped independently: FFCV
decodes straight into the crop, so it decodes twice per pair where the torch loader and DALI decode once),
FFCV's worker threads decode into the random resized crop and flip, and the colour part of the preset and
the normalisation run on the device (FFCV has no hue or grayscale op).

FFCV sets torch's thread count when it is imported (to 1) and when an epoch thread starts (to its worker
count); the run's thread count is put back each time, so the training step runs as it does for every other
source.
"""

from __future__ import annotations

import contextlib
import hashlib
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from omegaconf import DictConfig

from solo_mlvgm.bench.sources import FolderSource, SourceContext, config_int, register_source
from solo_mlvgm.data.continuous import Batch
from solo_mlvgm.data.real import list_image_folder, load_rgb
from solo_mlvgm.runs import replace_atomically
from solo_mlvgm.views.pixel import build_color_augment

BATCHES_AHEAD = 3  # batches FFCV prepares ahead of the step (its default)

if TYPE_CHECKING:
    from PIL import Image


@contextlib.contextmanager
def keep_torch_threads() -> Iterator[None]:
    threads = torch.get_num_threads()
    try:
        yield
    finally:
        torch.set_num_threads(threads)


@contextlib.contextmanager
def quiet_numba_finalizers() -> Iterator[None]:
    """Collecting FFCV's compiled pipeline makes numba's dispatcher finalizer raise a KeyError (harmless,
    printed as "Exception ignored in"); keep that one off the terminal while a source is released."""
    previous = sys.unraisablehook

    def hook(unraisable: Any) -> None:
        tb = unraisable.exc_traceback
        while tb is not None and tb.tb_next is not None:
            tb = tb.tb_next
        where = tb.tb_frame.f_code.co_filename if tb is not None else ""
        if not (isinstance(unraisable.exc_value, KeyError) and "numba" in where):
            previous(unraisable)

    sys.unraisablehook = hook
    try:
        yield
    finally:
        sys.unraisablehook = previous


def ffcv_missing() -> str | None:
    try:
        with keep_torch_threads():
            import ffcv  # noqa: F401
            import ffcv.loader  # noqa: F401
    except ImportError as err:
        return f"FFCV is not installed ({err}); pip install ffcv (needs libturbojpeg and OpenCV)"
    return None


class FolderForWriter:
    """What FFCV's writer indexes: (view field, view field, index) per image of the folder."""

    def __init__(self, folder: Path) -> None:
        self.files = list_image_folder(folder).files

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, i: int) -> tuple[Image.Image, Image.Image, int]:
        image = load_rgb(self.files[i])
        return image, image, i


def _fingerprint(folder: Path) -> str:
    return hashlib.sha1((folder / "manifest.json").read_bytes()).hexdigest()


def write_beton(folder: Path, path: Path, workers: int) -> Path:
    """``path``: the folder's images (twice) and indexes; rewritten when the folder's export changed."""
    from ffcv.fields import IntField, RGBImageField
    from ffcv.writer import DatasetWriter

    stamp = path.with_name(path.name + ".source")
    if path.exists() and stamp.exists() and stamp.read_text() == _fingerprint(folder):
        return path
    fields = {
        "view_1": RGBImageField(write_mode="jpg", jpeg_quality=95),
        "view_2": RGBImageField(write_mode="jpg", jpeg_quality=95),
        "index": IntField(),
    }
    replace_atomically(
        path,
        lambda tmp: DatasetWriter(str(tmp), fields, num_workers=workers).from_indexed_dataset(
            FolderForWriter(folder)
        ),
    )
    stamp.write_text(_fingerprint(folder))
    return path


@register_source("ffcv")
class FfcvSource(FolderSource):
    """FFCV over the folder, written once to ``<folder>.beton`` beside it (rewritten when the export
    changes)."""

    label = "FFCV"

    def __init__(self, num_workers: int = 2) -> None:
        self.num_workers = num_workers

    @classmethod
    def from_config(cls, bench: DictConfig) -> FfcvSource:
        return cls(num_workers=config_int(bench, "ffcv.num_workers", low=1))

    def missing_reason(self) -> str | None:
        return ffcv_missing()

    def prefetch_depth(self) -> int:
        return BATCHES_AHEAD

    def describe(self) -> dict[str, Any]:
        return {"ffcv_workers": self.num_workers}

    def closing(self) -> contextlib.AbstractContextManager[None]:
        return quiet_numba_finalizers()

    def batches(self, ctx: SourceContext, batch_size: int, steps: int) -> Iterator[Batch]:
        folder = self.folder(ctx)
        beton = write_beton(folder, Path(str(folder) + ".beton"), self.num_workers)
        yield from ffcv_batches(ctx, beton, self.num_workers, batch_size, self.passes(ctx, batch_size, steps))


def ffcv_batches(
    ctx: SourceContext, beton: Path, workers: int, batch_size: int, passes: int
) -> Iterator[Batch]:
    """Solo-learn batches from FFCV's loader over ``beton`` on the context's device: ``passes`` permutations
    of the folder in one epoch, then the same order again if a window outlasts it."""
    from ffcv.fields.basics import IntDecoder
    from ffcv.fields.rgb_image import CenterCropRGBImageDecoder, RandomResizedCropRGBImageDecoder
    from ffcv.loader import Loader, OrderOption
    from ffcv.transforms import RandomHorizontalFlip, Squeeze, ToDevice, ToTensor, ToTorchImage

    assert ctx.folder is not None
    device, size, spec = ctx.device, ctx.size, ctx.spec
    listing = list_image_folder(ctx.folder)
    targets = torch.tensor(listing.targets, device=device)

    def view() -> list:
        if spec.pixel == "none":
            decode = [CenterCropRGBImageDecoder((size, size), ratio=1.0)]
        else:
            decode = [
                RandomResizedCropRGBImageDecoder((size, size), scale=(spec.crop_min_scale, 1.0)),
                RandomHorizontalFlip(),
            ]
        return [*decode, ToTensor(), ToDevice(device, non_blocking=True), ToTorchImage()]

    threads = torch.get_num_threads()
    rng = np.random.default_rng(ctx.seed)
    with keep_torch_threads():
        loader = Loader(
            str(beton),
            batch_size=batch_size,
            num_workers=workers,
            order=OrderOption.SEQUENTIAL,  # over ``passes`` permutations: an image repeats only across passes
            drop_last=True,
            indices=np.concatenate([rng.permutation(len(listing.files)) for _ in range(passes)]),
            batches_ahead=BATCHES_AHEAD,
            pipelines={
                "view_1": view(),
                "view_2": view(),
                "index": [IntDecoder(), ToTensor(), Squeeze(), ToDevice(device, non_blocking=True)],
            },
        )
    color = build_color_augment(spec.pixel).to(device)
    while True:  # a window that outlasts the planned steps (min_window_seconds) starts another epoch
        with keep_torch_threads():
            epoch = iter(loader)
        try:
            for view_1, view_2, index in epoch:
                if torch.get_num_threads() != threads:  # set by the epoch thread when it started
                    torch.set_num_threads(threads)
                views = color(torch.cat([view_1, view_2]).float().div_(255)).chunk(2)
                index = index.long()
                yield [index, list(views), targets[index]]
        finally:
            epoch.close()  # stops the epoch thread (it never ends on its own while batches are pending)
