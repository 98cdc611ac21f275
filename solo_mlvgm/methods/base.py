"""Shared base of the lightly-backend methods: backbone, online linear probe, optimiser and scheduler.

Configs use solo-learn's keys (``backbone.name``, ``method_kwargs.*``, ``optimizer.{name,lr,classifier_lr,
weight_decay,kwargs}``, ``scheduler.{name,warmup_epochs,min_lr}``, ``max_epochs``), so one file serves both
backends. A method fills its ``method_kwargs`` defaults and rejects unknown keys in ``validate_cfg``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Mapping
from typing import Any, ClassVar, cast

import lightning.pytorch as pl
import torch
import torch.nn.functional as F
from lightly.utils.lars import LARS
from lightly.utils.scheduler import cosine_warmup_schedule
from omegaconf import DictConfig, OmegaConf, open_dict
from torch import Tensor, nn
from torch.optim.lr_scheduler import LambdaLR

from solo_mlvgm.checks import number
from solo_mlvgm.errors import ConfigError
from solo_mlvgm.methods.backbones import build_backbone

OPTIMIZERS = ("sgd", "lars", "adam", "adamw")
SCHEDULERS = ("warmup_cosine", "none")


def check_warmup_ends_in_the_run(warmup_epochs: float, max_epochs: int) -> None:
    """Refuse a warm-up that lasts the whole run: the rates would never reach their set values (both
    backends; a config's default warm-up too, e.g. mlvgm_simsiam's one epoch under ``max_epochs=1``).
    Callers have refused a negative warm-up already (``number(..., minimum=0.0)``)."""
    if warmup_epochs >= max_epochs:
        raise ConfigError(
            f"scheduler.warmup_epochs must be in [0, max_epochs={max_epochs}), got {warmup_epochs:g}: a shorter "
            f"run needs a shorter warm-up (e.g. scheduler.warmup_epochs={max_epochs / 2:g}) or a larger max_epochs"
        )


class SSLMethod(pl.LightningModule):
    """A two-view self-supervised method trained on solo-learn batches ``[indexes, [v1, v2], targets]``."""

    defaults: ClassVar[dict[str, Any]] = {}

    def __init__(self, cfg: DictConfig, num_classes: int = 0) -> None:
        """``cfg`` in solo-learn's schema, checked by ``validate_cfg``; ``num_classes``: the online probe's
        classes (0: the data has no labels, no probe)."""
        super().__init__()
        self.cfg = cfg
        self.save_hyperparameters(
            {"cfg": OmegaConf.to_container(cfg, resolve=True), "num_classes": num_classes}
        )
        self.backbone, self.feature_dim = build_backbone(
            cfg.backbone.name, bool(cfg.backbone.small_image_stem)
        )
        self.backbone.to(memory_format=torch.channels_last)  # faster convolutions on CPU and GPU
        self.classifier = nn.Linear(self.feature_dim, num_classes) if num_classes > 0 else None

    # -------------------------------------------------------------- config
    @classmethod
    def validate_cfg(cls, cfg: DictConfig) -> DictConfig:
        """Fill this method's ``method_kwargs`` defaults and check every value, before any training."""
        fill_method_kwargs(cfg, cls.defaults)
        check_method_kwargs_values(cfg.method_kwargs)
        opt = cfg.optimizer
        if opt.name not in OPTIMIZERS:
            raise ConfigError(f"unknown optimizer '{opt.name}'; known: {', '.join(OPTIMIZERS)}")
        if cfg.scheduler.name not in SCHEDULERS:
            raise ConfigError(f"unknown scheduler '{cfg.scheduler.name}'; known: {', '.join(SCHEDULERS)}")
        for key in ("lr", "classifier_lr", "batch_size"):
            if not number(opt[key], f"optimizer.{key}") > 0:
                raise ConfigError(f"optimizer.{key} must be > 0, got {opt[key]}")
        if number(opt.weight_decay, "optimizer.weight_decay") < 0:
            raise ConfigError(f"optimizer.weight_decay must be >= 0, got {opt.weight_decay}")
        warmup = number(cfg.scheduler.get("warmup_epochs", 0), "scheduler.warmup_epochs", 0.0)
        number(cfg.scheduler.get("min_lr", 0.0), "scheduler.min_lr")
        if cfg.scheduler.name != "none":
            check_warmup_ends_in_the_run(warmup, int(cfg.max_epochs))
        probe = [{"params": [nn.Parameter(torch.zeros(1))]}]  # builds the optimiser once to check its kwargs
        _build_optimizer(opt.name, probe, float(opt.lr), float(opt.weight_decay), _split_kwargs(opt)[1])
        return cfg

    # ----------------------------------------------------------- training
    def ssl_loss(self, views: list[Tensor]) -> tuple[Tensor, Tensor]:
        """(self-supervised loss, backbone features of the first view)."""
        raise NotImplementedError

    def trainable_modules(self) -> Iterator[nn.Module]:
        """Modules the optimiser updates besides the classifier (momentum copies excluded)."""
        raise NotImplementedError

    def static_lr_modules(self) -> Iterator[nn.Module]:
        """Trainable modules whose learning rate the scheduler leaves constant (SimSiam's predictor)."""
        yield from ()

    def lr_scaled_modules(self) -> Iterator[tuple[nn.Module, float]]:
        """(module, factor): trainable modules that learn at factor x the configured rate (a predictor)."""
        yield from ()

    def forward(self, images: Tensor) -> Tensor:
        return self.backbone(images)

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        checkpoint[OPTIMISER_RECORD] = optimiser_record(self.cfg)

    def training_step(self, batch: list, batch_idx: int) -> Tensor:
        _, views, targets = batch
        views = [v.contiguous(memory_format=torch.channels_last) for v in views]
        loss, features = self.ssl_loss(views)
        self.log("train_loss", loss, prog_bar=True)
        # A source without labels (targets -1) has num_classes 0, so no classifier: no NaN, no accuracy.
        if self.classifier is not None:
            logits = self.classifier(features.detach())
            class_loss = F.cross_entropy(logits, targets)
            acc1 = (logits.argmax(dim=1) == targets).float().mean()
            self.log("train_class_loss", class_loss)
            self.log("train_acc1", acc1, prog_bar=True)
            loss = loss + class_loss
        return loss

    # ---------------------------------------------------------- optimiser
    def configure_optimizers(self) -> Any:  # Lightning's optimizer-and-scheduler dict
        optimizer = self.build_optimizer(self.trainer.world_size)
        lr = optimizer.defaults["lr"]
        total = self.total_steps = max(1, int(self.trainer.estimated_stepping_batches))  # honours max_steps
        if self.cfg.scheduler.name == "none":
            return {"optimizer": optimizer}
        steps_per_epoch = math.ceil(self.trainer.num_training_batches / self.trainer.accumulate_grad_batches)
        warmup_epochs = float(self.cfg.scheduler.get("warmup_epochs", 0))
        warmup_steps = int(warmup_epochs * steps_per_epoch)
        warmup = min(total - 1, warmup_steps)
        if warmup_steps >= total > 1 and self.trainer.is_global_zero:  # max_steps cut the run short
            print(
                f"note: scheduler.warmup_epochs={warmup_epochs:g} is {warmup_steps} steps, not fewer than this "
                f"run's {total} (max_steps): the learning rate warms up until its last step"
            )
        end = float(self.cfg.scheduler.get("min_lr", 0.0)) / lr

        def cosine(step: int) -> float:  # a function, not a partial: checkpoints stay weights_only-loadable
            return cosine_warmup_schedule(step, total, 1.0, end, warmup, 0.0)

        def constant(step: int) -> float:
            return 1.0

        lambdas: list[Callable[[int], float]] = [
            constant if group.get("static_lr") else cosine for group in optimizer.param_groups
        ]
        scheduler = LambdaLR(optimizer, lambdas)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}

    def build_optimizer(self, world_size: int) -> torch.optim.Optimizer:
        """The configured optimiser over the trainable modules and the classifier, for ``world_size``
        devices (also used without a Trainer, by the speed benchmark)."""
        opt = self.cfg.optimizer
        # As solo-learn does: configured rates are per 256 images of global batch.
        scale = int(opt.batch_size) * world_size / 256
        lr, classifier_lr = float(opt.lr) * scale, float(opt.classifier_lr) * scale
        exclude, kwargs = _split_kwargs(opt)
        static = {id(p) for m in self.static_lr_modules() for p in m.parameters()}
        factor = {id(p): float(f) for m, f in self.lr_scaled_modules() for p in m.parameters()}
        params = [p for m in self.trainable_modules() for p in m.parameters() if p.requires_grad]

        def kind(p: nn.Parameter) -> tuple[bool, float]:  # (constant lr, lr multiple): one group each
            return id(p) in static, factor.get(id(p), 1.0)

        groups = []
        for is_static, f in sorted({kind(p) for p in params}):  # scheduled before static, as before
            extra = ({"static_lr": True} if is_static else {}) | ({"lr": lr * f} if f != 1.0 else {})
            chosen = [p for p in params if kind(p) == (is_static, f)]
            groups += [{**g, **extra} for g in _decay_groups(chosen, exclude)]
        if self.classifier is not None:
            groups.append(
                {
                    "params": list(self.classifier.parameters()),
                    "lr": classifier_lr,
                    "weight_decay": 0.0,
                }
            )
        return _build_optimizer(opt.name, groups, lr, float(opt.weight_decay), kwargs)


def fill_method_kwargs(cfg: DictConfig, defaults: dict[str, Any]) -> DictConfig:
    """Set ``cfg.method_kwargs`` to the method's defaults updated by the given values; unknown keys fail."""
    given = dict(cfg.get("method_kwargs") or {})
    unknown = set(given) - set(defaults)
    if unknown:
        raise ConfigError(
            f"method '{cfg.method}' has no method_kwargs {sorted(unknown)}; known: {sorted(defaults)}"
        )
    check_method_kwargs_types(given, defaults)
    with open_dict(cfg):
        cfg.method_kwargs = {**defaults, **given}
    return cfg


def check_method_kwargs_types(given: Mapping[str, Any], defaults: Mapping[str, Any]) -> None:
    """Each given key that has a default holds a value of the default's kind (number or flag)."""
    for key, value in given.items():
        if key not in defaults:
            continue
        default = defaults[key]
        if _is_number(default) and not _is_number(value):
            raise ConfigError(f"method_kwargs.{key} must be a number, got '{value}'")
        if isinstance(default, bool) and not isinstance(value, bool):
            raise ConfigError(f"method_kwargs.{key} must be true or false, got '{value}'")


OPTIMISER_RECORD = "solo_mlvgm_optimiser"  # checkpoint key: the settings a resumed run cannot change


def optimiser_record(cfg: DictConfig | Mapping[str, Any]) -> dict[str, Any]:
    """The settings saved in a checkpoint's optimiser state (``optimizer.*`` and the predictor's lr
    multiple), flattened: a resumed run restores that state, so new values there would not apply."""
    if isinstance(cfg, DictConfig):
        cfg = cast(dict[str, Any], OmegaConf.to_container(cfg, resolve=True))

    def flat(prefix: str, value: Any) -> dict[str, Any]:
        if isinstance(value, Mapping):
            return {k: v for key, sub in value.items() for k, v in flat(f"{prefix}.{key}", sub).items()}
        return {prefix: value}

    kw = cfg.get("method_kwargs") or {}
    return flat("optimizer", dict(cfg.get("optimizer") or {})) | {
        "method_kwargs.pred_lr_scale": float(kw.get("pred_lr_scale", 1.0))
    }


def check_method_kwargs_values(kw: Mapping[str, Any]) -> None:
    """Every number among the method's settings (sizes, rates, tau) is finite and > 0."""
    for key, value in kw.items():
        if _is_number(value) and not (math.isfinite(value) and value > 0):
            raise ConfigError(f"method_kwargs.{key} must be > 0 and finite, got {value}")


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _decay_groups(params: list[nn.Parameter], exclude_bias_n_norm: bool) -> list[dict[str, Any]]:
    """``params`` as optimiser groups; with ``exclude_bias_n_norm``, biases and norm parameters (1-d) get
    no weight decay (and, for LARS, no adaptive scaling). Empty groups are left out."""
    if not exclude_bias_n_norm:
        return [{"params": params}] if params else []
    decayed, plain = [p for p in params if p.ndim != 1], [p for p in params if p.ndim == 1]
    return [g for g in ({"params": decayed}, {"params": plain, "weight_decay": 0.0}) if g["params"]]


def _split_kwargs(opt: DictConfig) -> tuple[bool, dict]:
    """(exclude_bias_n_norm, the remaining optimizer.kwargs for the optimiser's constructor)."""
    kwargs = dict(opt.get("kwargs") or {})
    return bool(kwargs.pop("exclude_bias_n_norm", False)), kwargs


def _build_optimizer(
    name: str, groups: list[dict], lr: float, wd: float, kwargs: dict
) -> torch.optim.Optimizer:
    if name == "lars" and kwargs.pop("clip_lr", False):  # solo-learn's option; lightly's LARS has none
        raise ConfigError(
            "optimizer.kwargs.clip_lr=true is solo-learn's LARS option, which the lightly backend's "
            "LARS does not have: use backend=solo, or clip_lr=false"
        )
    try:
        if name == "sgd":
            return torch.optim.SGD(
                groups, lr=lr, weight_decay=wd, momentum=kwargs.pop("momentum", 0.9), **kwargs
            )
        if name == "lars":
            eta = kwargs.pop("eta", 0.02)
            return LARS(
                groups,
                lr=lr,
                weight_decay=wd,
                momentum=kwargs.pop("momentum", 0.9),
                trust_coefficient=eta,
                **kwargs,
            )
        if name == "adam":
            return torch.optim.Adam(groups, lr=lr, weight_decay=wd, **kwargs)
        return torch.optim.AdamW(groups, lr=lr, weight_decay=wd, **kwargs)
    except (TypeError, ValueError) as err:
        raise ConfigError(f"optimizer.kwargs do not fit optimizer '{name}': {err}") from None
