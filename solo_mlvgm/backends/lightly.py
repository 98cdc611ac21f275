"""The lightly backend: our methods (``methods/``, built on lightly's losses and heads), our MI
quantifier and our linear probe (features computed once, standardised, a linear layer trained with Adam)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import lightning.pytorch as pl
from omegaconf import DictConfig
from torch import nn

from solo_mlvgm.backends import Splits
from solo_mlvgm.generators.base import MultiLatentGenerator
from solo_mlvgm.methods import METHODS, SSLMethod, method_class
from solo_mlvgm.methods.linear_probe import probe_backbone
from solo_mlvgm.quantify.method import MIQuant
from solo_mlvgm.settings import LinearSpec, PretrainSpec


class LightlyBackend:
    name = "lightly"
    linear_eval_name = "linear probe"

    def pretraining_methods(self) -> list[str]:
        return list(METHODS)

    def check_method(self, cfg: DictConfig) -> DictConfig:
        return method_class(str(cfg.method)).validate_cfg(cfg.copy())

    def build_method(
        self,
        method_cfg: DictConfig,
        spec: PretrainSpec,
        *,
        num_classes: int,
        num_devices: int,
        num_nodes: int,
    ) -> SSLMethod:
        return method_class(spec.method)(method_cfg, num_classes)

    def describe(self, method: pl.LightningModule) -> str:
        return self.name

    def write_run_files(self, method: pl.LightningModule, run_dir: Path) -> None:
        return None

    def backbone_record(self, method: pl.LightningModule) -> dict[str, Any] | None:
        return None  # our backbones, rebuilt by name

    def build_quantifier(
        self, cfg: DictConfig, generator: MultiLatentGenerator, level: str, indices: tuple[int, ...]
    ) -> MIQuant:
        return MIQuant(cfg, generator, indices, level)

    def check_linear(self, spec: LinearSpec, backbone_name: str, run_cfg: DictConfig) -> None:
        """Nothing beyond ``LinearSpec``: the probe's settings are parsed there."""

    def linear_eval(
        self,
        backbone: nn.Module,
        feature_dim: int,
        backbone_name: str,
        splits: Splits,
        spec: LinearSpec,
        run_cfg: DictConfig,
    ) -> dict[str, Any]:
        p = spec.probe
        return probe_backbone(
            backbone,
            splits,
            epochs=p.epochs,
            lr=p.lr,
            batch_size=p.batch_size,
            weight_decay=p.weight_decay,
            seed=spec.seed,
        )
