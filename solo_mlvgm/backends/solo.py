"""The solo backend: solo-learn's own methods and linear evaluation on our data sources. This is the one
module that imports solo-learn.

Importing it needs solo-learn (1.0.6, installed from its repository). ``SoloBackend()`` registers, once,
in solo-learn's own registries:

- ``solo.methods.METHODS["mi_quant"]``: the MI-quantification method, buildable by name from a solo-style
  cfg (``generator``, ``level``, ``method_kwargs``, ``optimizer``, ``backbone``, ``max_steps``);
- ``BaseMethod._BACKBONES["convnet6"]`` (and ``"convnet6_standardised"``): our CPU-sized backbones, so the
  toy-world configs run unchanged.

``build_solo_method`` turns one of our run configs into ``solo.methods.METHODS[cfg.method]`` through
solo-learn's own ``parse_cfg``. What solo-learn expects but our runs do not have is filled here, so a user
never meets it:

- the dataset whitelist and class count: a generator run gets a dataset name made from its generator and
  views (``mlvgm-<generator>-<hash>``, so anything solo keys on the dataset, its AutoResumer included, tells
  generators apart), registered with the generator's class count while ``parse_cfg`` runs; an image folder
  is solo's ``custom`` dataset, its classes counted by solo from the folder;
- ``devices`` as a list (solo takes ``len(cfg.devices)``), the trainer's strategy kept ours;
- no labels: the online classifier's cross-entropy over targets that are all -1 is NaN in solo; here its
  loss is a zero that keeps the classifier in the graph, and its metrics are not logged; kNN evaluation
  and the momentum classifier are switched off;
- ``classifier_lr`` scaled per 256 images like ``lr`` (solo only scales it when a validation path is set);
- checkpoints: SimSiam's scheduler carries a ``functools.partial`` that ``torch.load(weights_only=True)``
  rejects under torch >= 2.6; it is left out of the saved scheduler state (it is rebuilt by
  ``configure_optimizers`` on resume), and the run exports a backbone-only ``backbone.pt`` as always;
- solo's AutoResumer and Checkpointer are not used: runs resume with ``resume_from_checkpoint``.

The generator never becomes part of solo's module: batches come from our datamodules (Continuous Sampling
renders them on the device after the transfer), so it is never checkpointed, DDP-wrapped, converted to
channels_last, or put in training mode by solo.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.metadata
import inspect
import json
import logging
import math
import traceback
import warnings
from collections.abc import Iterator
from functools import cache, partial
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any

import lightning.pytorch as pl
import torch
from omegaconf import DictConfig, OmegaConf, open_dict
from torch import Tensor, nn

with warnings.catch_warnings():  # solo-learn's imports warn about deprecated torch/timm APIs
    warnings.simplefilter("ignore")
    import solo.args.linear as solo_linear_args
    import solo.args.pretrain as solo_pretrain_args
    from solo.methods import METHODS
    from solo.methods.base import BaseMethod
    from solo.methods.linear import LinearModel
    from solo.utils.checkpointer import Checkpointer
    from solo.utils.misc import make_contiguous

from solo_mlvgm.backends import Splits
from solo_mlvgm.backends.solo_config import SoloFileRun, block_enabled
from solo_mlvgm.checks import number
from solo_mlvgm.data.continuous import steps_per_epoch
from solo_mlvgm.errors import ConfigError
from solo_mlvgm.generators.base import MultiLatentGenerator
from solo_mlvgm.methods import METHODS as OUR_METHODS
from solo_mlvgm.methods.backbones import BACKBONES, build_backbone
from solo_mlvgm.methods.base import (
    OPTIMISER_RECORD,
    check_method_kwargs_types,
    check_method_kwargs_values,
    check_warmup_ends_in_the_run,
    optimiser_record,
)
from solo_mlvgm.quantify.method import MIQuant
from solo_mlvgm.settings import GeneratorSpec, LinearSpec, PretrainSpec, TrainerSpec
from solo_mlvgm.trainer import make_trainer
from solo_mlvgm.views.pixel import normalize

# solo-learn entries that are not two-view pretraining methods of ours to run from main_pretrain.py
NOT_PRETRAINING = ("base", "linear", "mi_quant")
# the online classifier's metrics (solo's BaseMethod logs them every step)
CLASSIFIER_METRICS = ("train_class_loss", "train_acc1", "train_acc5")


def solo_version() -> str:
    try:
        return importlib.metadata.version("solo-learn")
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


# ------------------------------------------------------------------ backbones
class OurBackbone:
    """A solo-style backbone factory ``(method, **kwargs) -> module`` for a backbone solo-learn lacks
    (``convnet6``, ``convnet6_standardised``), with ``num_features`` as solo reads it. A class, not a
    closure: solo-learn keeps the factory on the module, which ddp_spawn pickles."""

    def __init__(self, name: str) -> None:
        self.name = self.__name__ = name

    def __call__(self, method: str | None = None, small_image_stem: bool = False, **kwargs: Any) -> nn.Module:
        if kwargs:
            raise TypeError(
                f"backbone '{self.name}' takes no kwargs {sorted(kwargs)} (only small_image_stem)"
            )
        net, dim = build_backbone(self.name, bool(small_image_stem))
        net.num_features = dim  # type: ignore[assignment]  # solo reads num_features (ResNets: inplanes)
        return net


def solo_cifar_stem(net: nn.Module) -> None:
    """solo-learn's stem for small images, as its ``BaseMethod`` sets it for CIFAR (3x3, stride 1,
    padding 2, no max-pool)."""
    net.conv1 = nn.Conv2d(3, 64, kernel_size=3, stride=1, padding=2, bias=False)
    net.maxpool = nn.Identity()


class SoloResNet:
    """solo-learn's own ResNet factory for our run configs, whose ``backbone.small_image_stem`` asks for
    solo-learn's CIFAR stem (solo-learn itself keys it to ``data.dataset``); every other kwarg goes to
    solo-learn's factory (torchvision's, e.g. ``zero_init_residual``). Used for the online and the
    momentum backbone alike, since solo-learn builds both through the factory."""

    def __init__(self, name: str) -> None:
        self.name = self.__name__ = name

    def __call__(self, method: str | None = None, small_image_stem: bool = False, **kwargs: Any) -> nn.Module:
        net = BaseMethod._BACKBONES[self.name](method, **kwargs)
        if small_image_stem:
            solo_cifar_stem(net)
        return net


# ours only where solo-learn has no backbone of that name; solo-learn's ResNets take small_image_stem
OUR_BACKBONES = {name: OurBackbone(name) for name in BACKBONES if name not in BaseMethod._BACKBONES}
STEM_BACKBONES = {name: SoloResNet(name) for name in BaseMethod._BACKBONES if name.startswith("resnet")}


class SoloMIQuant(MIQuant):
    """``mi_quant`` as solo-learn builds it: ``METHODS["mi_quant"](cfg)`` from a solo-style cfg with a
    ``generator`` block and the ``level`` (or group) to quantify. ``main_quantify.py`` passes the generator
    it already built. Its batches are step numbers; a solo-learn batch ``[indexes, views, targets]`` is
    accepted too, its images unused: the method renders its own pairs from the generator."""

    def __init__(
        self,
        cfg: DictConfig,
        generator: MultiLatentGenerator | None = None,
        indices: tuple[int, ...] | None = None,
    ) -> None:
        cfg = self.add_and_assert_specific_cfg(cfg)
        if generator is None:
            generator = GeneratorSpec.from_config(cfg.generator).build()
        level = str(cfg.level)
        super().__init__(cfg, generator, indices or generator.resolve(level), level)

    @staticmethod
    def add_and_assert_specific_cfg(cfg: DictConfig) -> DictConfig:
        """solo's convention: fill defaults and check the cfg (here: our checks, as ``ConfigError``)."""
        if not cfg.get("level"):
            raise ConfigError("mi_quant under solo-learn needs cfg.level: the level or group to quantify")
        return MIQuant.validate_cfg(cfg)

    def training_step(self, batch: Any, batch_idx: int) -> None:
        if isinstance(batch, list | tuple):  # a solo-learn batch: the step number is what matters
            batch = torch.tensor(self.trainer.fit_loop.total_batch_idx)
        return super().training_step(batch, batch_idx)


def register_in_solo() -> None:
    """Our backbones and ``mi_quant`` in solo-learn's registries (idempotent)."""
    for name, factory in OUR_BACKBONES.items():
        BaseMethod._BACKBONES.setdefault(name, factory)
    METHODS["mi_quant"] = SoloMIQuant


# -------------------------------------------------------------------- methods
if TYPE_CHECKING:  # the mixin goes before a solo-learn method class: type checkers see that base

    class _SoloBase(BaseMethod): ...

else:
    _SoloBase = object


class _OurData(_SoloBase):
    """Mixed in before a solo-learn method, for our run configs: solo-learn's backbones (its ResNets taking
    ``small_image_stem``) and ours where it has none, and no NaN or misleading metric without labels."""

    _BACKBONES = {**BaseMethod._BACKBONES, **OUR_BACKBONES, **STEM_BACKBONES}

    @property
    def has_labels(self) -> bool:
        return not bool(self.cfg.data.no_labels)

    def _base_shared_step(self, X: Tensor, targets: Tensor) -> dict:
        if self.has_labels:
            return super()._base_shared_step(X, targets)
        out = self(X)
        # Every target is -1: cross-entropy with ignore_index=-1 would be NaN. A zero loss that still
        # touches the classifier keeps DDP's used-parameter check happy and changes nothing.
        zero = out["logits"].sum() * 0.0
        out.update({"loss": zero, "acc1": zero.detach(), "acc5": zero.detach()})
        return out

    def log_dict(self, dictionary: dict, *args: Any, **kwargs: Any) -> None:
        if not self.has_labels:
            dictionary = {k: v for k, v in dictionary.items() if k not in CLASSIFIER_METRICS}
        if dictionary:
            super().log_dict(dictionary, *args, **kwargs)

    # our configs' static_pred_lr and pred_lr_scale, checked in solo_pretrain_cfg
    honours_predictor_keys = True

    @property
    def pred_lr_scale(self) -> float:
        return float(self.cfg.method_kwargs.get("pred_lr_scale", 1.0)) if self.honours_predictor_keys else 1.0

    @property
    def learnable_params(self) -> list[dict]:
        params = super().learnable_params
        static = self.honours_predictor_keys and self.cfg.method_kwargs.get("static_pred_lr", False)
        for group in params:
            if group.get("name") == "predictor":
                if static:
                    group["static_lr"] = True
                if self.pred_lr_scale != 1.0:
                    group["lr"] = self.lr * self.pred_lr_scale
        return params

    def configure_optimizers(self) -> Any:
        result = super().configure_optimizers()
        if self.pred_lr_scale != 1.0 and isinstance(result, tuple | list):
            # solo-learn holds a static-lr group at its base lr: a scaled predictor's is its own
            (optimizer,), (scheduler,) = result
            held = scheduler["scheduler"] if isinstance(scheduler, dict) else scheduler
            if isinstance(held.get_lr, partial) and "lrs_to_replace" in held.get_lr.keywords:
                keywords = held.get_lr.keywords
                held.get_lr = partial(
                    held.get_lr.func,
                    get_lr=keywords["get_lr"],
                    param_group_indexes=keywords["param_group_indexes"],
                    lrs_to_replace=[
                        optimizer.param_groups[i]["initial_lr"] for i in keywords["param_group_indexes"]
                    ],
                )
        return result

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        # A static-lr predictor (SimSiam's; BYOL's with static_pred_lr) wraps the scheduler's get_lr in a
        # functools.partial, which torch.load(weights_only=True) rejects; configure_optimizers rebuilds it.
        for state in checkpoint.get("lr_schedulers", []):
            state.pop("get_lr", None)
        checkpoint[OPTIMISER_RECORD] = optimiser_record(self.cfg)
        super().on_save_checkpoint(checkpoint)


@cache
def solo_method_class(name: str) -> type:
    """``METHODS[name]`` with our data handling mixed in (``_OurData``)."""
    return _compose(name, _OurData, OURS_PREFIX)


OURS_PREFIX, FILE_PREFIX = "_ours_", "_file_"


def _compose(name: str, mixin: type, prefix: str) -> type:
    """A solo-learn method class with ``mixin`` first, named so that pickle finds it again in a fresh
    process (ddp_spawn pickles the module): ``<this module>.<prefix><method>``, see ``__getattr__``."""
    base = METHODS[name]
    return type(base.__name__, (mixin, base), {"__module__": __name__, "__qualname__": f"{prefix}{name}"})


def __getattr__(attr: str) -> type:
    """The composed method classes by their pickled names (a new process has not built them yet)."""
    if attr.startswith(OURS_PREFIX) and attr[len(OURS_PREFIX) :] in METHODS:
        return solo_method_class(attr[len(OURS_PREFIX) :])
    if attr.startswith(FILE_PREFIX) and attr[len(FILE_PREFIX) :] in METHODS:
        return solo_file_method_class(attr[len(FILE_PREFIX) :])
    raise AttributeError(f"module {__name__!r} has no attribute {attr!r}")


def pretraining_methods() -> list[str]:
    return sorted(n for n in METHODS if n not in NOT_PRETRAINING)


def check_method(name: str) -> None:
    if name not in METHODS or name in NOT_PRETRAINING:
        hint = (
            " (run python main_quantify.py --config-name mi_quant)"
            if name == "mi_quant"
            else " (it is a method of the lightly backend: backend=lightly)"
            if name in OUR_METHODS
            else ""
        )
        raise ConfigError(
            f"method '{name}' is not a solo-learn pretraining method{hint}; known: {', '.join(pretraining_methods())}"
        )


# --------------------------------------------------------------------- config
@contextlib.contextmanager
def registered_dataset(module: ModuleType, dataset: str, num_classes: int) -> Iterator[None]:
    """``dataset`` in a solo ``args`` module's whitelist with ``num_classes``, while ``parse_cfg`` runs."""
    supported, counts = module._SUPPORTED_DATASETS, module._N_CLASSES_PER_DATASET
    added = dataset not in supported
    if added:
        supported.append(dataset)
    before = counts.get(dataset)
    counts[dataset] = int(num_classes)
    try:
        yield
    finally:
        if added:
            supported.remove(dataset)
        if before is None:
            counts.pop(dataset, None)
        else:
            counts[dataset] = before


def generator_dataset_name(spec: PretrainSpec) -> str:
    """A dataset name for a generator run: the generator's name plus a hash of generator and views."""
    assert spec.generator is not None
    data = {"generator": repr(spec.generator), "views": repr(spec.views)}
    digest = hashlib.sha1(json.dumps(data, sort_keys=True).encode()).hexdigest()[:8]
    return f"mlvgm-{spec.generator.name}-{digest}"


def _plain(cfg: DictConfig) -> DictConfig:
    out = OmegaConf.create(OmegaConf.to_container(cfg, resolve=True))
    assert isinstance(out, DictConfig)
    OmegaConf.set_struct(out, False)
    return out


def _parse(
    parse_cfg, module: ModuleType, cfg: DictConfig, dataset: str | None, num_classes: int
) -> DictConfig:
    """solo-learn's own ``parse_cfg``; its bare assertions become one-line ``ConfigError``s."""
    registered = (
        registered_dataset(module, dataset, max(1, num_classes)) if dataset else contextlib.nullcontext()
    )
    try:
        with registered, warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return parse_cfg(cfg)
    except (AssertionError, KeyError, TypeError, ValueError, AttributeError) as err:
        raise ConfigError(f"solo-learn rejected the config: {_reason(err)}") from None


def _reason(err: BaseException) -> str:
    """One line for an error raised inside solo-learn; a bare ``assert`` is shown by its source line
    (e.g. ``assert self.whitening_size <= self.batch_size``)."""
    text = f"{type(err).__name__} {err}".strip().splitlines()[0]
    if isinstance(err, AssertionError) and not str(err):
        frames = traceback.extract_tb(err.__traceback__)
        if frames and frames[-1].line:
            text = f"{frames[-1].line} failed (in {Path(frames[-1].filename).name})"
    return text


def _optimizer_block(cfg: DictConfig) -> None:
    """Our ``optimizer.kwargs.exclude_bias_n_norm`` is solo's ``optimizer.exclude_bias_n_norm_wd``."""
    kwargs = cfg.optimizer.get("kwargs") or {}
    if "exclude_bias_n_norm" in kwargs:
        cfg.optimizer.exclude_bias_n_norm_wd = bool(kwargs["exclude_bias_n_norm"])
        if cfg.optimizer.name != "lars":  # LARS takes it as a constructor argument too
            del cfg.optimizer.kwargs["exclude_bias_n_norm"]


# solo-learn's BYOL loss, 2 - 2 cos summed over both view orders, has 4x the gradient of ours (lightly's
# negative cosine, averaged over the two): with SGD, a quarter of the lr and 4x the weight decay make
# the same updates (seed 0 of mlvgm_byol: 92.82 on solo-learn with these, 43.22 without, 93.06 ours).
BYOL_LOSS_SCALE = 4.0
SOLO_WARMUP_EPOCHS = 10.0  # solo-learn's parse_cfg default for scheduler.warmup_epochs


def _same_byol_recipe(optimizer: DictConfig) -> None:
    """Our BYOL recipe in solo-learn's loss scale (SGD only: Adam's and LARS's steps do not scale with the
    loss the same way), said in one line."""
    lr, wd = float(optimizer.lr), float(optimizer.get("weight_decay", 0.0))
    optimizer.lr, optimizer.weight_decay = lr / BYOL_LOSS_SCALE, wd * BYOL_LOSS_SCALE
    print(
        f"note: solo-learn's BYOL loss has {BYOL_LOSS_SCALE:g}x the gradient of ours, so optimizer.lr "
        f"{lr:g} -> {optimizer.lr:g} and optimizer.weight_decay {wd:g} -> {optimizer.weight_decay:g} "
        "(the same SGD updates)"
    )


def solo_pretrain_cfg(
    cfg: DictConfig, spec: PretrainSpec, *, num_classes: int, num_devices: int, num_nodes: int = 1
) -> DictConfig:
    """Our run config as solo-learn's ``parse_cfg`` makes it: solo-learn's keys from ``cfg``, ours from
    ``spec``."""
    method = spec.method
    train_path = spec.data.train_path
    check_method(method)
    if cfg.get("auto_resume", {}).get("enabled"):
        raise ConfigError(
            "auto_resume is not used with solo_mlvgm runs: resume with "
            "resume_from_checkpoint=<run>/checkpoints/last.ckpt"
        )
    s = _plain(cfg)
    no_labels = int(num_classes) == 0
    kw = s.get("method_kwargs") or {}
    s.method_kwargs = kw
    if "static_pred_lr" in kw and method != "byol":  # ours, honoured by _OurData for BYOL only
        raise ConfigError(
            f"method_kwargs.static_pred_lr applies to byol, not to {method} (SimSiam's predictor lr "
            "is always constant)"
        )
    if "pred_lr_scale" in kw and method not in ("simsiam", "byol"):  # ours, honoured by _OurData
        raise ConfigError(f"method_kwargs.pred_lr_scale applies to simsiam and byol, not to {method}")
    given_kw = set(kw)
    if method in OUR_METHODS:  # the lightly backend's defaults: the same heads on both backends
        defaults = getattr(OUR_METHODS[method], "defaults", {})
        unknown = given_kw - set(defaults)
        if unknown:  # refused as on the lightly backend: the same settings on both
            raise ConfigError(
                f"method '{method}' has no method_kwargs {sorted(unknown)}; known: {sorted(defaults)}"
            )
        check_method_kwargs_types(kw, defaults)
        for key, value in defaults.items():
            kw.setdefault(key, value)
        check_method_kwargs_values(kw)
    momentum = dict(s.get("momentum") or {})
    for key in ("base_tau", "final_tau"):  # ours in method_kwargs, solo's in the momentum block
        if key not in kw:
            continue
        ours = kw.pop(key)
        if key not in momentum:
            momentum[key] = ours
        elif key in given_kw and float(momentum[key]) != float(ours):
            raise ConfigError(
                f"momentum.{key}={momentum[key]} and method_kwargs.{key}={ours} disagree: set one of them"
            )
        # else: momentum.<key> given alone (solo-learn's place for it) is honoured over our default
    if no_labels:
        momentum["classifier"] = False
    s.momentum = momentum
    name = str(s.backbone.name)
    user_kwargs = dict(s.backbone.get("kwargs") or {})
    if name not in BaseMethod._BACKBONES:
        raise ConfigError(
            f"unknown backbone '{name}' for solo-learn; known: {', '.join(sorted(BaseMethod._BACKBONES))}"
        )
    small_image_stem = bool(s.backbone.get("small_image_stem", False))
    if name in OUR_BACKBONES or name in STEM_BACKBONES:
        user_kwargs["small_image_stem"] = small_image_stem
    elif small_image_stem:
        raise ConfigError(
            f"backbone.small_image_stem=true applies to {', '.join(sorted({**OUR_BACKBONES, **STEM_BACKBONES}))}, "
            f"not to solo-learn's '{name}': set backbone.small_image_stem=false"
        )
    s.backbone.kwargs = user_kwargs
    _optimizer_block(s)
    _check_names(s, BaseMethod)
    for key in ("lr", "classifier_lr", "batch_size"):
        if not float(s.optimizer[key]) > 0:
            raise ConfigError(f"optimizer.{key} must be > 0, got {s.optimizer[key]}")
    byol_sgd = method == "byol" and s.optimizer.name == "sgd"
    run_lr = float(s.optimizer.lr) / (BYOL_LOSS_SCALE if byol_sgd else 1.0)  # the lr solo-learn runs
    _check_the_scheduler_keeps_the_rates(s, spec, run_lr, no_labels, int(num_devices) * int(num_nodes))
    if byol_sgd:
        _same_byol_recipe(s.optimizer)
    _switch_off_solo_run_blocks(s)
    dataset = None if train_path else generator_dataset_name(spec)
    s.data = {
        "dataset": dataset or "custom",
        "train_path": str(train_path) if train_path else None,
        "val_path": None,
        "format": "image_folder",
        "no_labels": no_labels,
        "num_workers": spec.data.num_workers,
    }
    generator_px = spec.generator.options.get("resolution", 32) if spec.generator else 32
    crop = int(spec.data.crop_size or spec.data.resolution or generator_px)
    s.augmentations = [{"crop_size": crop, "num_crops": 2}]  # two large crops, made by our datamodule
    s.devices = list(range(int(num_devices)))
    s.num_nodes = int(num_nodes)
    s.strategy = spec.trainer.strategy
    s = _parse(solo_pretrain_args.parse_cfg, solo_pretrain_args, s, dataset, num_classes)
    # solo scales classifier_lr per 256 images only when a validation path is set; ours always is.
    s.optimizer.classifier_lr = (
        float(s.optimizer.classifier_lr) * int(s.optimizer.batch_size) * len(s.devices) * s.num_nodes / 256
    )
    return s


def _check_the_scheduler_keeps_the_rates(
    s: DictConfig, spec: PretrainSpec, lr: float, no_labels: bool, world: int
) -> None:
    """Refuse what solo-learn's ``warmup_cosine`` would silently not apply.

    Its warm-up lasts ``warmup_epochs x`` steps per epoch. Under one step (but above 0), step 0 sets every
    group to ``warmup_start_lr`` and the chained cosine carries on from there: the whole run trains at
    that rate. At 0, every group starts at ``optimizer.lr`` and carries on from it, so a group's own rate
    is lost: the online classifier's ``classifier_lr`` and a scheduled predictor's ``pred_lr_scale`` (constant
    groups keep theirs; a method's own fixed rates: ``_check_fixed_rates_survive``)."""
    sched = s.get("scheduler") or {}
    if sched.get("name") != "warmup_cosine":
        return
    warmup = number(sched.get("warmup_epochs", SOLO_WARMUP_EPOCHS), "scheduler.warmup_epochs", 0.0)
    check_warmup_ends_in_the_run(warmup, spec.trainer.max_epochs)  # solo-learn would warm up to the end
    total = _optimiser_steps(spec, world)
    steps = warmup * total / spec.trainer.max_epochs if total else 0.0
    if total is not None and total > 1 and 0 < steps < 1:  # one step in all: step 0 is the warm-up's
        raise ConfigError(
            f"scheduler.warmup_epochs={warmup:g} is {steps:.3g} optimiser steps of this run, under one: "
            "solo-learn's warmup_cosine then holds every group at scheduler.warmup_start_lr for the whole "
            "run; set a warm-up of at least one step, scheduler.warmup_epochs=0, or backend=lightly"
        )
    # a warm-up of W steps, W not whole, never lands on W: the rates end (ceil(W) - 1) / (W - 1) too high
    overshoot = (math.ceil(steps) - 1) / (steps - 1) if steps > 1 else 1.0
    if overshoot > 1.05:  # said, not refused: smoke runs of a few steps land here, harmlessly
        print(
            f"note: scheduler.warmup_epochs={warmup:g} is {steps:.3g} optimiser steps of this run, not a whole "
            f"number: solo-learn's warmup_cosine ends its warm-up at {overshoot:.2g}x every set rate (a whole "
            "number of steps avoids it)"
        )
    if warmup != 0:
        return
    kw = s.get("method_kwargs") or {}
    settings, remedies = [], ["set a warm-up"]
    if (
        spec.method == "byol"
        and not kw.get("static_pred_lr", False)
        and float(kw.get("pred_lr_scale", 1)) != 1
    ):
        settings.append("method_kwargs.pred_lr_scale with a scheduled predictor (static_pred_lr=false)")
        remedies.append("static_pred_lr=true")
    if not no_labels and float(s.optimizer.classifier_lr) != lr:
        settings.append(
            f"optimizer.classifier_lr {float(s.optimizer.classifier_lr):g} (the online classifier's)"
        )
        remedies.append(f"classifier_lr={lr:g}")
    if settings:
        raise ConfigError(
            f"{' and '.join(settings)} {'need' if len(settings) > 1 else 'needs'} scheduler.warmup_epochs > 0 "
            f"on the solo backend (without a warm-up, solo-learn's scheduler runs every scheduled group at "
            f"the run's lr, {lr:g}): {', '.join(remedies)} or backend=lightly"
        )


def _optimiser_steps(spec: PretrainSpec, world: int) -> int | None:
    """The run's optimiser steps as Lightning estimates them for solo-learn's scheduler (an upper bound
    where only ``max_steps`` bounds the run), None where the data's length is not known yet."""
    extra = spec.trainer.extra
    total: int | None = None
    if spec.data.source == "continuous":  # the datamodule's epoch
        batches = steps_per_epoch(spec.data.epoch_size, spec.batch_size, world)
        limit = extra.get("limit_train_batches")
        if isinstance(limit, int) and not isinstance(limit, bool):
            batches = min(batches, limit)
        elif isinstance(limit, float):
            batches = int(batches * limit)
        accumulate = int(extra.get("accumulate_grad_batches", 1) or 1)
        total = spec.trainer.max_epochs * math.ceil(batches / accumulate)
    if spec.trainer.max_steps > 0:
        total = spec.trainer.max_steps if total is None else min(total, spec.trainer.max_steps)
    return total


# The schedulers solo-learn's configure_optimizers builds and runs, as it compares the names ("none" in
# any case in its pretraining methods only); the other names on its lists fail or misbehave once training
# starts.
SCHEDULERS_THAT_RUN = ("warmup_cosine", "step", "none")
SCHEDULERS_THAT_DO_NOT = {
    "reduce": "its pretraining methods do not build it; its linear model gives Lightning no metric to monitor",
    "exponential": "its pretraining methods do not build it; its linear model decays by optimizer.weight_decay",
    "cosine": "its configure_optimizers does not build it",
}


def _check_names(s: DictConfig, owner: type) -> None:
    """The optimiser is one ``owner`` (solo-learn's BaseMethod or LinearModel) knows, and the scheduler
    one that ``owner`` runs."""
    known = owner._OPTIMIZERS  # type: ignore[attr-defined]
    if s.optimizer.name not in known:
        raise ConfigError(f"unknown optimizer '{s.optimizer.name}'; known: {', '.join(known)}")
    name = s.scheduler.name
    if name in SCHEDULERS_THAT_DO_NOT:
        raise ConfigError(
            f"scheduler.name={name} does not run on the solo backend (solo-learn: "
            f"{SCHEDULERS_THAT_DO_NOT[name]}): use one of {', '.join(SCHEDULERS_THAT_RUN)}"
        )
    any_case_none = owner is BaseMethod and isinstance(name, str) and name.lower() == "none"
    if name not in SCHEDULERS_THAT_RUN and not any_case_none:
        raise ConfigError(f"unknown scheduler {name!r}; known: {', '.join(SCHEDULERS_THAT_RUN)}")


def _check_optimizer(s: DictConfig) -> None:
    probe = [nn.Parameter(torch.zeros(1))]
    try:
        BaseMethod._OPTIMIZERS[s.optimizer.name](
            probe,
            lr=float(s.optimizer.lr),
            weight_decay=float(s.optimizer.weight_decay),
            **s.optimizer.kwargs,
        )
    except (TypeError, ValueError) as err:
        raise ConfigError(f"optimizer.kwargs do not fit optimizer '{s.optimizer.name}': {err}") from None


class _DropMessage(logging.Filter):
    def __init__(self, text: str) -> None:
        super().__init__()
        self.text = text

    def filter(self, record: logging.LogRecord) -> bool:
        return self.text not in record.getMessage()


@contextlib.contextmanager
def _quiet_solo() -> Iterator[None]:
    """solo-learn's constructors warn through the root logger that step-wise schedulers "might generate
    issues when resuming"; resuming is covered here (the scheduler state is saved and restored)."""
    drop = _DropMessage("scheduler_interval=step")
    root = logging.getLogger()
    root.addFilter(drop)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        root.removeFilter(drop)


def build_solo_method(
    cfg: DictConfig, spec: PretrainSpec, *, num_classes: int, num_devices: int, num_nodes: int = 1
) -> pl.LightningModule:
    """``solo.methods.METHODS[cfg.method]`` (with ``_OurData``) built from our run config, as solo's
    main_pretrain.py builds it: parse_cfg, construction, make_contiguous, channels_last."""
    s = solo_pretrain_cfg(cfg, spec, num_classes=num_classes, num_devices=num_devices, num_nodes=num_nodes)
    model = _construct(solo_method_class(str(s.method)), s)
    _check_fixed_rates_survive(model, s)
    return model


def _check_fixed_rates_survive(model: pl.LightningModule, s: DictConfig) -> None:
    """A parameter group that solo-learn's method gives its own fixed lr (All4One's transformer encoder:
    0.1) runs at the run's lr under ``warmup_cosine`` without a warm-up, as ``classifier_lr`` would
    (``_check_the_scheduler_keeps_the_rates``, which also covers the classifier and the predictor)."""
    if s.scheduler.name != "warmup_cosine" or float(s.scheduler.warmup_epochs) != 0:
        return
    groups: list[dict] = model.learnable_params  # type: ignore[assignment]  # solo-learn's property
    run_lr = float(s.optimizer.lr)
    fixed = [
        f"{group.get('name', f'parameter group {i}')} (lr {group['lr']:g})"
        for i, group in enumerate(groups)
        if "lr" in group
        and not group.get("static_lr")
        and group.get("name") not in ("classifier", "predictor")
        and group["lr"] != run_lr
    ]
    if fixed:
        raise ConfigError(
            f"solo-learn's {s.method} gives {', '.join(fixed)} its own lr, which needs "
            "scheduler.warmup_epochs > 0 on the solo backend (without a warm-up, solo-learn's scheduler "
            f"runs every scheduled group at the run's lr, {run_lr:g}): set a warm-up"
        )


def _construct(cls: type, s: DictConfig) -> pl.LightningModule:
    """As solo-learn's main_pretrain.py: the optimiser's kwargs checked, construction (its bare assertions
    as one ``ConfigError`` line), make_contiguous, channels_last."""
    _check_optimizer(s)
    try:
        with _quiet_solo():
            model = cls(s)
    except (AssertionError, KeyError, TypeError, ValueError, AttributeError) as err:
        raise ConfigError(
            f"solo-learn could not build method '{s.method}' from this config: {_reason(err)}"
        ) from None
    make_contiguous(model)
    if not s.performance.disable_channel_last:
        model = model.to(memory_format=torch.channels_last)
    return model


def _switch_off_solo_run_blocks(s: DictConfig) -> None:
    """solo-learn's checkpoint, auto-resume, wandb and kNN blocks switched off: our runs write their own checkpoints
    and CSV logs and have no validation split; one asked for in our run config is refused, not dropped."""
    for block, why in (
        ("checkpoint", "the run writes checkpoints/last.ckpt every epoch (resume_from_checkpoint)"),
        ("wandb", "the run logs to <run>/logs (CSV); use a solo-learn config file for wandb"),
        (
            "knn_eval",
            "it needs a labelled validation split, which these runs do not render (solo-learn's own "
            "config files with data.val_path do: README, solo-learn's own config files)",
        ),
    ):
        if block_enabled(s, block):
            raise ConfigError(f"{block}.enabled=true is not used by these run configs: {why}")
    s.checkpoint = {"enabled": False}
    s.auto_resume = {"enabled": False}
    s.wandb = {"enabled": False}
    s.knn_eval = {**dict(s.get("knn_eval") or {}), "enabled": False}


# ---------------------------------------------------------------------- linear
PROVISIONAL_CLASSES = 10  # for checking solo_linear before the splits (and their class count) exist


def _linear_dataset(spec: LinearSpec, run_cfg: DictConfig) -> str | None:
    """The dataset name solo-learn's linear cfg is given: None (``custom``) for an image folder."""
    return None if spec.train_path else f"mlvgm-{run_cfg.generator.name}-linear"


def solo_linear_cfg(
    spec: LinearSpec, backbone_name: str, num_classes: int, dataset: str | None
) -> DictConfig:
    """solo-learn's linear cfg (``solo.args.linear.parse_cfg``) from ``solo_linear`` of linear.yaml."""
    if spec.solo_linear is None:
        raise ConfigError("backend=solo needs the solo_linear block of configs/linear.yaml")
    train_path = spec.train_path
    if num_classes < 5:
        raise ConfigError(
            f"solo-learn's linear method reports top-5 and needs >= 5 classes, got {num_classes}"
        )
    s = _plain(spec.solo_linear)
    s.name = "linear"
    s.backbone = {"name": backbone_name, "kwargs": {}}
    s.pretrained_feature_extractor = spec.pretrained
    s.data = {
        "dataset": "custom" if train_path else dataset,
        "train_path": str(train_path) if train_path else None,
        "val_path": spec.val_path if train_path else None,
        "format": "image_folder",
        "num_workers": 0,
    }
    s.devices = [0]
    _switch_off_solo_run_blocks(s)
    s = _parse(solo_linear_args.parse_cfg, solo_linear_args, s, None if train_path else dataset, num_classes)
    _check_names(s, LinearModel)
    _check_optimizer(s)
    return s


def build_linear_model(backbone: nn.Module, feature_dim: int, s: DictConfig) -> LinearModel:
    """solo-learn's ``LinearModel`` around a (frozen) backbone of ``feature_dim`` features."""
    if not hasattr(backbone, "inplanes"):
        backbone.num_features = int(feature_dim)  # type: ignore[assignment]  # solo reads it (non-ResNets)
    with _quiet_solo():
        model = LinearModel(backbone, cfg=s)
    make_contiguous(model)
    if not s.performance.disable_channel_last:
        model = model.to(memory_format=torch.channels_last)
    return model


# ------------------------------------------------------- solo-learn's own files
class _FileData(_OurData):
    """For solo-learn's own config files: solo-learn's backbones stay solo-learn's (ours only add names
    solo-learn lacks, such as ``convnet6``)."""

    _BACKBONES = BaseMethod._BACKBONES
    honours_predictor_keys = False  # not solo-learn keys: its files' method_kwargs are solo-learn's


@cache
def solo_file_method_class(name: str) -> type:
    """``METHODS[name]`` with our data handling and solo-learn's own backbones (``_FileData``)."""
    return _compose(name, _FileData, FILE_PREFIX)


def method_sources(name: str) -> dict[str, str]:
    """Source text of solo-learn's classes behind ``method`` (to see which ``method_kwargs`` they read)."""
    check_method(name)
    return {
        c.__qualname__: inspect.getsource(c)
        for c in METHODS[name].__mro__
        if c.__module__.startswith("solo.")
    }


def solo_file_cfg(run: SoloFileRun, *, num_classes: int, num_devices: int, num_nodes: int) -> DictConfig:
    """The file's solo-learn keys through solo-learn's ``parse_cfg``, with the device count and the
    generator's classes (``data.dataset`` keeps its other meanings)."""
    s = _plain(run.solo_cfg)
    s.devices = list(range(int(num_devices)))
    s.num_nodes = int(num_nodes)
    s.data.no_labels = int(num_classes) == 0
    s.checkpoint = {"enabled": False}  # the run's Checkpointer is built from run.checkpoint
    s.auto_resume = {"enabled": False}  # resolved into run.spec.resume_from
    s.wandb = {"enabled": False}  # the run's logger is built from run.wandb
    dataset = str(s.data.get("dataset", "custom"))
    known = dataset in solo_pretrain_args._N_CLASSES_PER_DATASET
    s.data.train_path = s.data.get("train_path") or "."
    if not known:  # solo-learn would count class folders under train_path: the generator has the classes
        registered = f"mlvgm-{run.spec.generator.name if run.spec.generator else 'data'}"
        s.data.dataset = registered
        s = _parse(solo_pretrain_args.parse_cfg, solo_pretrain_args, s, registered, num_classes)
        s.data.dataset = dataset
    else:
        s = _parse(solo_pretrain_args.parse_cfg, solo_pretrain_args, s, None, num_classes)
    s.data.num_classes = max(1, int(num_classes))
    if int(num_classes) == 0:
        s.momentum = {**dict(s.get("momentum") or {}), "classifier": False}
    return s


def build_solo_file_method(
    run: SoloFileRun, *, num_classes: int, num_devices: int, num_nodes: int
) -> pl.LightningModule:
    """solo-learn's method for a solo-learn config file, built as solo-learn's main_pretrain.py does."""
    s = solo_file_cfg(run, num_classes=num_classes, num_devices=num_devices, num_nodes=num_nodes)
    return _construct(solo_file_method_class(str(s.method)), s)


def build_solo_backbone(
    name: str, kwargs: dict[str, Any], method: str, cifar_stem: bool
) -> tuple[nn.Module, int]:
    """A backbone as solo-learn's methods build it (``BaseMethod.__init__``): ResNets lose their ``fc``
    and get solo-learn's CIFAR stem where the run had it. For linear evaluation of a solo-backend run."""
    register_in_solo()
    if name not in BaseMethod._BACKBONES:
        raise ConfigError(f"unknown solo-learn backbone '{name}'")
    with _quiet_solo():
        net = BaseMethod._BACKBONES[name](method, **kwargs)
    if name.startswith("resnet"):
        dim = int(net.inplanes)
        net.fc = nn.Identity()
        if cifar_stem:
            solo_cifar_stem(net)
    else:
        dim = int(net.num_features)
    return net, dim


def solo_backbone_record(method: pl.LightningModule) -> dict[str, Any]:
    """How ``build_solo_backbone`` rebuilds this method's backbone (saved in ``backbone.pt``)."""
    s: DictConfig = method.cfg  # type: ignore[assignment]  # solo-learn's parsed config (BaseMethod)
    kwargs = dict(OmegaConf.to_container(s.backbone.kwargs, resolve=True))  # type: ignore[arg-type]
    stem = bool(kwargs.pop("small_image_stem", False)) or str(s.data.dataset) in ("cifar10", "cifar100")
    return {
        "builder": "solo-learn",
        "name": str(s.backbone.name),
        "kwargs": kwargs,
        "method": str(s.method),
        "cifar_stem": stem,
    }


class SoloCheckpointer(Checkpointer):
    """solo-learn's Checkpointer (``checkpoint.dir/frequency/keep_prev``), its folder named after the run
    (``<dir>/<method>/<run folder name>/``) rather than a random id."""

    def __init__(self, cfg: DictConfig, run_name: str, **kwargs: Any) -> None:
        super().__init__(cfg, **kwargs)
        self.run_name = run_name

    def initial_setup(self, trainer: pl.Trainer) -> None:
        self.path = self.logdir / self.run_name
        self.ckpt_placeholder = f"{self.cfg.name}-{self.run_name}" + "-ep={}.ckpt"
        self.last_ckpt = None
        if trainer.is_global_zero:
            self.path.mkdir(parents=True, exist_ok=True)


def file_callbacks_and_loggers(run: SoloFileRun, solo_cfg: DictConfig, run_dir: Path) -> tuple[list, list]:
    """solo-learn's Checkpointer (when ``checkpoint.enabled``), the LR monitor, and wandb's logger (when
    ``wandb.enabled``), as solo-learn's main_pretrain.py sets them up."""
    from lightning.pytorch.callbacks import LearningRateMonitor

    callbacks: list = [LearningRateMonitor(logging_interval="step")]
    loggers: list = []
    ck = run.checkpoint
    if ck["enabled"]:
        callbacks.append(
            SoloCheckpointer(
                solo_cfg,
                run_dir.name,
                logdir=Path(ck["dir"]) / str(solo_cfg.method),
                frequency=ck["frequency"],
                keep_prev=ck["keep_prev"],
            )
        )
    if run.umap["enabled"]:
        from solo.utils.auto_umap import AutoUMAP

        # solo-learn's own class, no subclass (callbacks are pickled under ddp_spawn): in the run's folder
        # name, then the logger's version, as AutoUMAP itself appends it
        logdir = Path(run.umap["dir"]) / str(solo_cfg.method) / run_dir.name
        callbacks.append(AutoUMAP(str(solo_cfg.name), logdir=logdir, frequency=run.umap["frequency"]))
    wb = run.wandb
    if wb["enabled"]:
        from lightning.pytorch.loggers.wandb import WandbLogger

        loggers.append(
            WandbLogger(
                name=str(solo_cfg.name),
                project=wb["project"],
                entity=wb["entity"],
                offline=wb["offline"],
                save_dir=str(run_dir),
            )
        )
    return callbacks, loggers


def use_parsed_cfg(trainer: pl.Trainer, method: pl.LightningModule) -> None:
    """solo-learn's Checkpointer records the config as solo-learn parsed it (its args.json is what
    solo-learn's main_knn.py and main_umap.py rebuild a method from)."""
    for callback in trainer.callbacks:  # type: ignore[attr-defined]
        if isinstance(callback, SoloCheckpointer):
            callback.cfg = method.cfg


def watch_in_wandb(trainer: pl.Trainer, method: pl.LightningModule, given: DictConfig) -> None:
    """As solo-learn's main_pretrain.py: wandb watches the gradients and records the config."""
    from lightning.pytorch.loggers.wandb import WandbLogger

    for logger in trainer.loggers:
        if isinstance(logger, WandbLogger):
            logger.watch(method, log="gradients", log_freq=100)
            logger.log_hyperparams(OmegaConf.to_container(given, resolve=True))  # type: ignore[arg-type]


# --------------------------------------------------------------------- backend
class SoloBackend:
    """solo-learn's methods and linear evaluation behind the ``Backend`` interface."""

    name = "solo"
    linear_eval_name = "solo-learn linear"

    def __init__(self) -> None:
        register_in_solo()

    def pretraining_methods(self) -> list[str]:
        return pretraining_methods()

    def check_method(self, cfg: DictConfig) -> DictConfig:
        check_method(str(cfg.method))
        return cfg.copy()

    def build_method(
        self,
        method_cfg: DictConfig,
        spec: PretrainSpec,
        *,
        num_classes: int,
        num_devices: int,
        num_nodes: int,
    ) -> pl.LightningModule:
        return build_solo_method(
            method_cfg, spec, num_classes=num_classes, num_devices=num_devices, num_nodes=num_nodes
        )

    def describe(self, method: pl.LightningModule) -> str:
        return f"solo (solo-learn {solo_version()}, {type(method).__name__})"

    def write_run_files(self, method: pl.LightningModule, run_dir: Path) -> None:
        from solo_mlvgm.runs import save_config

        solo_cfg = method.cfg
        assert isinstance(solo_cfg, DictConfig)  # solo-learn's parsed config, set by BaseMethod
        save_config(run_dir / "solo_config.yaml", solo_cfg)

    def backbone_record(self, method: pl.LightningModule) -> dict[str, Any] | None:
        """solo-learn's backbones are rebuilt by solo-learn; ours (``convnet6``, ``convnet6_standardised``)
        by name."""
        record = solo_backbone_record(method)
        return None if record["name"] in OUR_BACKBONES else record

    def build_quantifier(
        self, cfg: DictConfig, generator: MultiLatentGenerator, level: str, indices: tuple[int, ...]
    ) -> MIQuant:
        """Built by name from solo-learn's ``METHODS`` (where ``register_in_solo`` put it)."""
        level_cfg = cfg.copy()
        with open_dict(level_cfg):
            level_cfg.level = level
        return METHODS["mi_quant"](level_cfg, generator=generator, indices=indices)

    def check_linear(self, spec: LinearSpec, backbone_name: str, run_cfg: DictConfig) -> None:
        """``solo_linear`` through solo-learn's parse before any split is rendered, with a provisional
        class count (the real one, known with the splits, is checked when the model is built)."""
        solo_linear_cfg(spec, backbone_name, PROVISIONAL_CLASSES, _linear_dataset(spec, run_cfg))

    def linear_eval(
        self,
        backbone: nn.Module,
        feature_dim: int,
        backbone_name: str,
        splits: Splits,
        spec: LinearSpec,
        run_cfg: DictConfig,
    ) -> dict[str, Any]:
        """solo-learn's linear method (``LinearModel``, frozen backbone) trained on the train split and
        validated on the test split; top-1/top-5 in percent, as solo-learn computes them."""
        from torch.utils.data import DataLoader, TensorDataset

        train_x, train_y, test_x, test_y, k = splits
        s = solo_linear_cfg(spec, backbone_name, k, _linear_dataset(spec, run_cfg))
        model = build_linear_model(backbone, feature_dim, s)
        batch = int(s.optimizer.batch_size)
        order = torch.Generator().manual_seed(spec.seed)
        train = DataLoader(
            TensorDataset(normalize(train_x), train_y), batch_size=batch, shuffle=True, generator=order
        )
        test = DataLoader(TensorDataset(normalize(test_x), test_y), batch_size=batch)
        trainer = make_trainer(
            TrainerSpec(precision=str(s.get("precision", "32-true"))),
            max_epochs=int(s.max_epochs),
            logger=False,
            enable_checkpointing=False,
            enable_progress_bar=False,
        )
        with warnings.catch_warnings():  # LinearModel defines a validation step; validation runs once, after
            warnings.filterwarnings("ignore", message=".*val_dataloader.*|.*LeafSpec.*")
            trainer.fit(model, train_dataloaders=train)
            train_top1 = trainer.callback_metrics.get("train_acc1_epoch")
            val = trainer.validate(model, test, verbose=False)[0]
        return {
            "top1": float(val["val_acc1"]),
            "top5": float(val["val_acc5"]),
            "train_top1": float(train_top1) if train_top1 is not None else float("nan"),
        }
