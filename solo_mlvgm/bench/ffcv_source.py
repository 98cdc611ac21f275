"""FFCV over the exported folder, where FFCV is installed: the folder is written once to a ``.beton`` file
(each image in two fields, one per view, so the two views are decoded and cropped independently), FFCV's
workers decode straight into the random resized crop and flip, and the colour part of the preset and the
normalisation run on the device (FFCV has no hue or grayscale op).

FFCV sets torch's thread count when it is imported (to 1) and when an epoch starts (to its worker count);
the thread count of the run is put back each time, so the training step runs as it does for every other
source."""

from __future__ import annotations

import contextlib
import hashlib
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import torch

from solo_mlvgm.data.real import list_image_folder, load_rgb
from solo_mlvgm.runs import replace_atomically
from solo_mlvgm.views.pixel import build_color_augment

if TYPE_CHECKING:
    from solo_mlvgm.bench.sources import SourceSetup


@contextlib.contextmanager
def keep_torch_threads() -> Iterator[None]:
    threads = torch.get_num_threads()
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def ffcv_missing() -> str | None:
    try:
        with keep_torch_threads():
            import ffcv  # noqa: F401
            import ffcv.loader  # noqa: F401
    except ImportError as err:
        return f"FFCV is not installed ({err}); pip install ffcv (needs libturbojpeg and OpenCV)"
    return None


def _fingerprint(folder: Path) -> str:
    return hashlib.sha1((folder / "manifest.json").read_bytes()).hexdigest()


def write_beton(folder: Path, path: Path, workers: int) -> Path:
    """``path``: the folder's images (twice) and indexes; rewritten when the folder's export changed."""
    from ffcv.fields import IntField, RGBImageField
    from ffcv.writer import DatasetWriter

    stamp = path.with_name(path.name + ".source")
    if path.exists() and stamp.exists() and stamp.read_text() == _fingerprint(folder):
        return path
    listing = list_image_folder(folder)

    class Images:  # what FFCV's writer indexes: (view field, view field, index)
        def __len__(self) -> int:
            return len(listing.files)

        def __getitem__(self, i: int):  # noqa: ANN204
            image = load_rgb(listing.files[i])
            return image, image, i

    fields = {
        "view_1": RGBImageField(write_mode="jpg", jpeg_quality=95),
        "view_2": RGBImageField(write_mode="jpg", jpeg_quality=95),
        "index": IntField(),
    }
    replace_atomically(
        path, lambda tmp: DatasetWriter(str(tmp), fields, num_workers=workers).from_indexed_dataset(Images())
    )
    stamp.write_text(_fingerprint(folder))
    return path


def ffcv_batches(setup: SourceSetup, batch_size: int) -> Iterator[list]:
    """Endless solo-learn batches from FFCV's loader, on the setup's device."""
    from ffcv.fields.basics import IntDecoder
    from ffcv.fields.rgb_image import CenterCropRGBImageDecoder, RandomResizedCropRGBImageDecoder
    from ffcv.loader import Loader, OrderOption
    from ffcv.transforms import RandomHorizontalFlip, Squeeze, ToDevice, ToTensor, ToTorchImage

    assert setup.folder is not None and setup.ffcv_cache is not None
    beton = write_beton(setup.folder, setup.ffcv_cache, setup.ffcv_workers)
    device, size, spec = setup.device, setup.size, setup.spec
    targets = torch.tensor(list_image_folder(setup.folder).targets, device=device)

    def view() -> list:
        if spec.pixel == "none":
            decode = [CenterCropRGBImageDecoder((size, size), ratio=1.0)]
        else:
            decode = [
                RandomResizedCropRGBImageDecoder((size, size), scale=(spec.crop_min_scale, 1.0)),
                RandomHorizontalFlip(),
            ]
        return [*decode, ToTensor(), ToDevice(device, non_blocking=True), ToTorchImage()]

    with keep_torch_threads():
        loader = Loader(
            str(beton),
            batch_size=batch_size,
            num_workers=setup.ffcv_workers,
            order=OrderOption.RANDOM,
            drop_last=True,
            pipelines={
                "view_1": view(),
                "view_2": view(),
                "index": [IntDecoder(), ToTensor(), Squeeze(), ToDevice(device, non_blocking=True)],
            },
        )
    color = build_color_augment(spec.pixel).to(device)
    while True:
        with keep_torch_threads():
            epoch = iter(loader)
        for view_1, view_2, index in epoch:
            views = color(torch.cat([view_1, view_2]).float().div_(255)).chunk(2)
            index = index.long()
            yield [index, list(views), targets[index]]
