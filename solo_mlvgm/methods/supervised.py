"""Supervised baseline: cross-entropy of a linear head on the backbone, trained on the same batches.

It is the upper bound of a view comparison: same backbone, budget, data source and pixel preset as the
self-supervised rows, but trained with the labels (of the generator or of the image folder). Only the
first view of each pair is used.
"""

from __future__ import annotations

from collections.abc import Iterator

import torch
import torch.nn.functional as F
from omegaconf import DictConfig
from torch import Tensor, nn

from solo_mlvgm.errors import ConfigError
from solo_mlvgm.methods.base import SSLMethod
from solo_mlvgm.methods.registry import register_method


@register_method("supervised")
class Supervised(SSLMethod):
    def __init__(self, cfg: DictConfig, num_classes: int = 0) -> None:
        if num_classes <= 0:
            raise ConfigError(
                "method 'supervised' needs labels: a generator with classes or an image folder of class subfolders"
            )
        super().__init__(cfg, num_classes)

    def trainable_modules(self) -> Iterator[nn.Module]:
        yield self.backbone

    def training_step(self, batch: list, batch_idx: int) -> Tensor:
        _, views, targets = batch  # labelled: num_classes > 0 was checked when the method was built
        assert self.classifier is not None
        images = views[0].contiguous(memory_format=torch.channels_last)
        logits = self.classifier(self.backbone(images))
        loss = F.cross_entropy(logits, targets)
        self.log("train_loss", loss, prog_bar=True)
        self.log("train_acc1", (logits.argmax(dim=1) == targets).float().mean(), prog_bar=True)
        return loss
