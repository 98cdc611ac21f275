"""SimCLR (Chen et al., 2020): NT-Xent between two views, negatives gathered across ranks."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, ClassVar

from lightly.loss import NTXentLoss
from lightly.models.modules import SimCLRProjectionHead
from omegaconf import DictConfig
from torch import Tensor, nn

from solo_mlvgm.methods.base import SSLMethod
from solo_mlvgm.methods.registry import register_method


@register_method("simclr")
class SimCLR(SSLMethod):
    defaults: ClassVar[dict[str, Any]] = {"proj_hidden_dim": 2048, "proj_output_dim": 256, "temperature": 0.2}

    def __init__(self, cfg: DictConfig, num_classes: int = 0) -> None:
        super().__init__(cfg, num_classes)
        kw = cfg.method_kwargs
        self.projector = SimCLRProjectionHead(self.feature_dim, kw.proj_hidden_dim, kw.proj_output_dim)
        self.criterion = NTXentLoss(temperature=kw.temperature, gather_distributed=True)

    def trainable_modules(self) -> Iterator[nn.Module]:
        yield from (self.backbone, self.projector)

    def ssl_loss(self, views: list[Tensor]) -> tuple[Tensor, Tensor]:
        f0, f1 = self.backbone(views[0]), self.backbone(views[1])
        return self.criterion(self.projector(f0), self.projector(f1)), f0
