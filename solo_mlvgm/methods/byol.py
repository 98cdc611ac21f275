"""BYOL (Grill et al., 2020): online predictor regresses a momentum target; tau follows a cosine schedule."""

from __future__ import annotations

import copy
from collections.abc import Iterator
from typing import Any, ClassVar

from lightly.loss import NegativeCosineSimilarity
from lightly.models.modules import BYOLPredictionHead, BYOLProjectionHead
from lightly.models.utils import deactivate_requires_grad, update_momentum
from lightly.utils.scheduler import cosine_schedule
from omegaconf import DictConfig
from torch import Tensor, nn

from solo_mlvgm.methods.base import SSLMethod
from solo_mlvgm.methods.registry import register_method


@register_method("byol")
class BYOL(SSLMethod):
    defaults: ClassVar[dict[str, Any]] = {
        "proj_hidden_dim": 4096,
        "proj_output_dim": 256,
        "pred_hidden_dim": 4096,
        "base_tau": 0.99,
        "final_tau": 1.0,
        "static_pred_lr": False,
        "pred_lr_scale": 1.0,
    }

    def __init__(self, cfg: DictConfig, num_classes: int = 0) -> None:
        super().__init__(cfg, num_classes)
        kw = cfg.method_kwargs
        self.projector = BYOLProjectionHead(self.feature_dim, kw.proj_hidden_dim, kw.proj_output_dim)
        self.predictor = BYOLPredictionHead(kw.proj_output_dim, kw.pred_hidden_dim, kw.proj_output_dim)
        self.momentum_backbone = copy.deepcopy(self.backbone)
        self.momentum_projector = copy.deepcopy(self.projector)
        deactivate_requires_grad(self.momentum_backbone)
        deactivate_requires_grad(self.momentum_projector)
        self.criterion = NegativeCosineSimilarity()

    def trainable_modules(self) -> Iterator[nn.Module]:
        yield from (self.backbone, self.projector, self.predictor)

    def static_lr_modules(self) -> Iterator[nn.Module]:
        if self.cfg.method_kwargs.static_pred_lr:  # as SimSiam's: the predictor keeps adapting to the
            yield self.predictor  # target to the end (README, "The three methods")

    def lr_scaled_modules(self) -> Iterator[tuple[nn.Module, float]]:
        yield self.predictor, self.cfg.method_kwargs.pred_lr_scale  # README, "The three methods"

    def ssl_loss(self, views: list[Tensor]) -> tuple[Tensor, Tensor]:
        kw = self.cfg.method_kwargs
        tau = cosine_schedule(self.global_step, self.total_steps, kw.base_tau, kw.final_tau)
        update_momentum(self.backbone, self.momentum_backbone, m=tau)
        update_momentum(self.projector, self.momentum_projector, m=tau)
        f0, f1 = self.backbone(views[0]), self.backbone(views[1])
        p0, p1 = self.predictor(self.projector(f0)), self.predictor(self.projector(f1))
        t0 = self.momentum_projector(self.momentum_backbone(views[0])).detach()
        t1 = self.momentum_projector(self.momentum_backbone(views[1])).detach()
        loss = 0.5 * (self.criterion(p0, t1) + self.criterion(p1, t0))
        self.log("tau", tau)
        return loss, f0
