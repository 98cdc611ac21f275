"""SimSiam (Chen & He, 2021): symmetric negative cosine between predictor and stop-gradient projection."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, ClassVar

from lightly.loss import NegativeCosineSimilarity
from lightly.models.modules import SimSiamPredictionHead, SimSiamProjectionHead
from omegaconf import DictConfig
from torch import Tensor, nn

from solo_mlvgm.methods.base import SSLMethod
from solo_mlvgm.methods.registry import register_method


@register_method("simsiam")
class SimSiam(SSLMethod):
    defaults: ClassVar[dict[str, Any]] = {
        "proj_hidden_dim": 2048,
        "proj_output_dim": 2048,
        "pred_hidden_dim": 512,
        "pred_lr_scale": 1.0,
    }

    def __init__(self, cfg: DictConfig, num_classes: int = 0) -> None:
        super().__init__(cfg, num_classes)
        kw = cfg.method_kwargs
        self.projector = SimSiamProjectionHead(self.feature_dim, kw.proj_hidden_dim, kw.proj_output_dim)
        self.predictor = SimSiamPredictionHead(kw.proj_output_dim, kw.pred_hidden_dim, kw.proj_output_dim)
        self.criterion = NegativeCosineSimilarity()

    def trainable_modules(self) -> Iterator[nn.Module]:
        yield from (self.backbone, self.projector, self.predictor)

    def static_lr_modules(self) -> Iterator[nn.Module]:
        yield self.predictor  # the paper's (and solo-learn's) fixed predictor lr: it must keep adapting

    def lr_scaled_modules(self) -> Iterator[tuple[nn.Module, float]]:
        yield self.predictor, self.cfg.method_kwargs.pred_lr_scale  # README, "The three methods"

    def ssl_loss(self, views: list[Tensor]) -> tuple[Tensor, Tensor]:
        f0, f1 = self.backbone(views[0]), self.backbone(views[1])
        z0, z1 = self.projector(f0), self.projector(f1)
        p0, p1 = self.predictor(z0), self.predictor(z1)
        loss = 0.5 * (self.criterion(p0, z1.detach()) + self.criterion(p1, z0.detach()))
        return loss, f0
