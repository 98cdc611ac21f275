"""Real-data baseline: an ImageFolder through the torch DataLoader, in solo-learn's batch format.

Two placements of the augmentations, the same presets either way:
- ``device`` (default): the workers decode and resize, and the views are augmented per sample on the device
  with kornia, exactly as Continuous Sampling batches are, so a generator run and a real-data run differ only
  in the data source;
- ``workers``: the workers decode and augment with torchvision (solo-learn's own real-data pipeline).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import lightning.pytorch as pl
import torch
from PIL import Image
from torch import Tensor, nn
from torch.utils.data import DataLoader, Dataset, RandomSampler
from torchvision import transforms
from torchvision.datasets.folder import IMG_EXTENSIONS

from solo_mlvgm.errors import ConfigError
from solo_mlvgm.views.pixel import build_pixel_augment, build_pixel_transform

UNLABELLED = "unlabelled"  # the one folder of an export from a generator without labels
AUGMENT_PLACES = ("device", "workers")


@dataclass(frozen=True)
class FolderListing:
    """The images of a folder of class subfolders, sorted; targets -1 and no classes for ``unlabelled/``."""

    files: list[Path]
    targets: list[int]
    classes: list[str]


def list_image_folder(root: str | Path) -> FolderListing:
    root = Path(root)
    if not root.is_dir():
        raise ConfigError(f"image folder '{root}' does not exist")
    folders = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    files: list[Path] = []
    targets: list[int] = []
    labelled = [p.name for p in folders] != [UNLABELLED]
    for label, folder in enumerate(folders):
        found = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMG_EXTENSIONS)
        files += found
        targets += [label if labelled else -1] * len(found)
    if not files:
        raise ConfigError(f"image folder '{root}' has no class folders with images")
    return FolderListing(files, targets, [p.name for p in folders] if labelled else [])


def load_rgb(path: Path) -> Image.Image:
    with Image.open(path) as image:
        return image.convert("RGB")


class IndexedImageFolder(Dataset):
    """Images of a class-folder tree as (index, transformed image, target); solo-learn's batches start with
    indexes. Without a transform an image is resized and centre-cropped to ``resolution`` as uint8 CHW."""

    def __init__(self, root: str | Path, resolution: int, transform: nn.Module | None = None) -> None:
        listing = list_image_folder(root)
        self.files, self.targets, self.classes = listing.files, listing.targets, listing.classes
        self.transform = transform or transforms.Compose(
            [transforms.Resize(resolution), transforms.CenterCrop(resolution), transforms.PILToTensor()]
        )

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, index: int) -> tuple[int, Tensor, int]:
        return index, self.transform(load_rgb(self.files[index])), self.targets[index]


class TwoViews(nn.Module):
    """Two independent draws of a per-image transform (the workers' augmentation)."""

    def __init__(self, transform: nn.Module) -> None:
        super().__init__()
        self.transform = transform

    def forward(self, image: Image.Image) -> Tensor:
        return torch.stack([self.transform(image), self.transform(image)])


class ImageFolderData(pl.LightningDataModule):
    """Two augmented views per image of a finite ImageFolder, in solo-learn's batch format."""

    def __init__(
        self,
        train_path: str | Path,
        resolution: int,
        batch_size: int,
        pixel: str = "simclr",
        crop_min_scale: float = 0.2,
        num_workers: int = 2,
        augment_on: str = "device",
        crop_size: int | None = None,
    ) -> None:
        super().__init__()
        if augment_on not in AUGMENT_PLACES:
            raise ConfigError(f"augment_on must be one of {', '.join(AUGMENT_PLACES)}, got '{augment_on}'")
        if num_workers < 0:
            raise ConfigError(f"num_workers must be >= 0, got {num_workers}")
        size = int(crop_size or resolution)
        self.augment_on = augment_on
        if augment_on == "workers":
            view = build_pixel_transform(pixel, size, crop_min_scale, resize_to=int(resolution))
            self.dataset = IndexedImageFolder(train_path, resolution, transform=TwoViews(view))
            self.augment: nn.Module | None = None
        else:
            self.dataset = IndexedImageFolder(train_path, resolution)
            self.augment = build_pixel_augment(pixel, size, crop_min_scale)
        if len(self.dataset) < batch_size:
            raise ConfigError(
                f"image folder '{train_path}' has {len(self.dataset)} images, fewer than one batch ({batch_size})"
            )
        self.num_classes = self.dataset.num_classes
        self._augment_device = torch.device("cpu")
        self.batch_size, self.num_workers = int(batch_size), int(num_workers)

    def train_dataloader(self) -> DataLoader:
        return self.make_loader()

    def make_loader(self, samples: int | None = None, pin_memory: bool | None = None) -> DataLoader:
        """The shuffled loader; ``samples`` > the folder size chains reshuffled passes into one long epoch
        (no worker restart at epoch ends)."""
        sampler = RandomSampler(self.dataset, num_samples=samples)
        return DataLoader(
            self.dataset,
            batch_size=self.batch_size,
            sampler=sampler,
            drop_last=True,
            num_workers=self.num_workers,
            persistent_workers=self.num_workers > 0,
            pin_memory=torch.cuda.is_available() if pin_memory is None else pin_memory,
        )

    def on_after_batch_transfer(self, batch: list[Tensor], dataloader_idx: int) -> list:
        indexes, images, targets = batch
        if self.augment is None:  # [B, 2, 3, S, S], augmented and normalised on the workers
            return [indexes.long(), [images[:, 0], images[:, 1]], targets.long()]
        if images.device != self._augment_device:  # moved once, not every step
            self.augment.to(images.device)
            self._augment_device = images.device
        images = images.float().div_(255)
        views = self.augment(torch.cat([images, images])).chunk(2)
        return [indexes.long(), list(views), targets.long()]
