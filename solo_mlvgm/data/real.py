"""Real-data baseline: an ImageFolder through the torch DataLoader, with the same pixel presets on the device.

Images are decoded and resized on the loader workers, then augmented per sample on the device exactly as
Continuous Sampling batches are, so a generator run and a real-data run differ only in the data source.
"""

from __future__ import annotations

from pathlib import Path

import lightning.pytorch as pl
import torch
from torch import Tensor
from torch.utils.data import DataLoader, Dataset
from torchvision import datasets, transforms

from solo_mlvgm.errors import ConfigError
from solo_mlvgm.views.pixel import build_pixel_augment


class IndexedImageFolder(Dataset):
    """ImageFolder that also returns the sample index (solo-learn's batches start with indexes)."""

    def __init__(self, root: str | Path, resolution: int) -> None:
        root = Path(root)
        if not root.is_dir():
            raise ConfigError(f"image folder '{root}' does not exist")
        tf = transforms.Compose(
            [transforms.Resize(resolution), transforms.CenterCrop(resolution), transforms.PILToTensor()]
        )
        try:
            self.folder = datasets.ImageFolder(str(root), transform=tf)
        except (FileNotFoundError, RuntimeError) as err:
            raise ConfigError(f"image folder '{root}' has no class folders with images: {err}") from None

    def __len__(self) -> int:
        return len(self.folder)

    def __getitem__(self, index: int) -> tuple[int, Tensor, int]:
        image, target = self.folder[index]
        return index, image, target


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
    ) -> None:
        super().__init__()
        self.dataset = IndexedImageFolder(train_path, resolution)
        if len(self.dataset) < batch_size:
            raise ConfigError(
                f"image folder '{train_path}' has {len(self.dataset)} images, fewer than one batch ({batch_size})"
            )
        self.num_classes = len(self.dataset.folder.classes)
        self.augment = build_pixel_augment(pixel, resolution, crop_min_scale)
        self._augment_device = torch.device("cpu")
        self.batch_size, self.num_workers = int(batch_size), int(num_workers)

    def train_dataloader(self) -> DataLoader:
        return DataLoader(
            self.dataset,
            batch_size=self.batch_size,
            shuffle=True,
            drop_last=True,
            num_workers=self.num_workers,
            persistent_workers=self.num_workers > 0,
            pin_memory=torch.cuda.is_available(),
        )

    def on_after_batch_transfer(self, batch: list[Tensor], dataloader_idx: int) -> list:
        indexes, images, targets = batch
        if images.device != self._augment_device:  # moved once, not every step
            self.augment.to(images.device)
            self._augment_device = images.device
        images = images.float().div_(255)
        views = self.augment(torch.cat([images, images])).chunk(2)
        return [indexes.long(), list(views), targets.long()]
