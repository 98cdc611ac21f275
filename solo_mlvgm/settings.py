"""Run settings parsed once, at the entry layer, into typed and validated specs.

Our own config groups (``generator``, ``data``, the trainer keys, the run's seed, backend and resume
settings) become frozen dataclasses here; code below the entry layer takes these (and the solo-learn
schema keys below) rather than our groups as a dict, and nothing writes back into the config. solo-learn's own keys (``method``, ``method_kwargs``,
``optimizer``, ``scheduler``, ``backbone``) keep solo-learn's schema and go to the backend as they are, so
one config file serves both backends. Every check raises a one-line ``ConfigError`` before any work.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import torch
from omegaconf import DictConfig, OmegaConf

from solo_mlvgm.checks import flag, integer, number
from solo_mlvgm.errors import ConfigError
from solo_mlvgm.generators import GENERATORS, build_generator
from solo_mlvgm.generators.base import MultiLatentGenerator
from solo_mlvgm.methods.collapse import (
    DEFAULT_RANK_THRESHOLD,
    DEFAULT_THRESHOLD,
    check_rank_threshold,
    check_threshold,
)
from solo_mlvgm.views.crops import CropGroup
from solo_mlvgm.views.pixel import IMAGENET_MEAN, IMAGENET_STD, check_pixel_options
from solo_mlvgm.views.spec import ViewSpec

BACKEND_NAMES = ("auto", "solo", "lightly")
DATA_SOURCES = ("continuous", "image_folder", "dali")
AUTOCAST_DTYPES: dict[str, torch.dtype | None] = {"bf16": torch.bfloat16, "fp16": torch.float16, "none": None}


def backend_name(cfg: DictConfig) -> str:
    """``backend`` as asked (auto | solo | lightly); which one runs is ``backends.resolve_backend``'s call."""
    backend = str(cfg.get("backend", "auto"))
    if backend not in BACKEND_NAMES:
        raise ConfigError(f"backend {backend!r} is not available; available: {', '.join(BACKEND_NAMES)}")
    return backend


def generator_autocast(name: str) -> torch.dtype | None:
    """The dtype of ``data.autocast`` (the generator's precision on a GPU)."""
    if name not in AUTOCAST_DTYPES:
        raise ConfigError(f"data.autocast must be one of {list(AUTOCAST_DTYPES)}, got {name!r}")
    return AUTOCAST_DTYPES[name]


# ---------------------------------------------------------------- generator
@dataclass(frozen=True)
class GeneratorSpec:
    """A ``generator`` block: the registry name, an optional local checkpoint, constructor arguments."""

    name: str
    checkpoint: str | None
    options: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_config(cls, block: DictConfig) -> GeneratorSpec:
        if OmegaConf.is_missing(block, "checkpoint"):
            known = GENERATORS.get(str(block.get("name")))
            hint = known.checkpoint_hint if known is not None else "its weights file"
            raise ConfigError(
                f"generator '{block.name}' needs generator.checkpoint=<path> ({hint}); "
                "generator.checkpoint=null builds random weights (for timing only)"
            )
        options = OmegaConf.to_container(block, resolve=True)
        if not isinstance(options, dict) or "name" not in options:
            raise ConfigError("generator config needs a 'name'")
        name, checkpoint = str(options.pop("name")), options.pop("checkpoint", None)
        if name not in GENERATORS:
            raise ConfigError(f"unknown generator {name!r}; known: {', '.join(sorted(GENERATORS))}")
        return cls(
            name, None if checkpoint is None else str(checkpoint), {str(k): v for k, v in options.items()}
        )

    def build(self) -> MultiLatentGenerator:
        """The frozen generator (reads the checkpoint, if any)."""
        return build_generator(self.name, checkpoint=self.checkpoint, **self.options)


# ------------------------------------------------------------------ trainer
@dataclass(frozen=True)
class TrainerSpec:
    """The Lightning trainer's device and length settings."""

    accelerator: str = "auto"
    devices: Any = 1  # an int, "auto", or a list of device indices, as Lightning takes it
    precision: str = "32-true"
    strategy: str = "auto"
    max_epochs: int = 1
    max_steps: int = -1
    log_every_n_steps: int = 10
    extra: dict[str, Any] = field(
        default_factory=dict
    )  # further Lightning Trainer arguments (solo-learn files)

    @classmethod
    def from_config(
        cls, cfg: DictConfig, extra: dict[str, Any] | None = None, strategy_default: str = "auto"
    ) -> TrainerSpec:
        devices = cfg.get("devices", 1)
        if OmegaConf.is_list(devices):
            devices = [integer(d, "devices", 0) for d in devices]
        max_steps = integer(cfg.get("max_steps", -1), "max_steps")
        if max_steps < -1 or max_steps == 0:
            raise ConfigError(f"max_steps must be >= 1 (or -1: no limit), got {max_steps}")
        return cls(
            accelerator=str(cfg.get("accelerator", "auto")),
            devices=devices,
            precision=str(cfg.get("precision", "32-true")),
            strategy=str(cfg.get("strategy") or strategy_default),
            max_epochs=integer(cfg.get("max_epochs", 1), "max_epochs", 1),
            max_steps=max_steps,
            log_every_n_steps=integer(cfg.get("log_every_n_steps", 10), "log_every_n_steps", 0),
            extra=dict(extra or {}),
        )


# Trainer arguments our run configs set themselves (TrainerSpec), and those the run sets for itself.
_TRAINER_SPEC_KEYS = {
    "accelerator", "devices", "precision", "strategy", "max_epochs", "max_steps", "log_every_n_steps"
}  # fmt: skip
_TRAINER_SET_BY_RUN = {
    "callbacks": "the run adds its own (checkpoints every epoch, collapse monitor, progress)",
    "logger": "the run logs to <run>/logs (CSV)",
    "default_root_dir": "the run folder is hydra.run.dir",
    "enable_progress_bar": "a bar on a terminal, plain lines otherwise",
    "enable_checkpointing": "checkpoints/last.ckpt is written every epoch (resume_from_checkpoint)",
}


# The top-level keys of our run configs (pretrain_base.yaml and the method configs), and solo-learn's own
# blocks, which its methods read on the solo backend.
RUN_CONFIG_KEYS = frozenset(
    {
        "name", "method", "method_kwargs", "backend", "seed", "backbone", "optimizer", "scheduler",
        "generator", "views", "views_file", "data", "max_epochs", "max_steps", "resume_from_checkpoint",
        "accelerator", "devices", "strategy", "precision", "log_every_n_steps", "collapse_threshold",
        "feature_rank_threshold",
    }
)  # fmt: skip
SOLO_BLOCKS = frozenset(
    {"momentum", "performance", "knn_eval", "auto_umap", "wandb", "checkpoint", "auto_resume"}
)


def _trainer_argument_names() -> set[str]:
    return set(inspect.signature(pl.Trainer.__init__).parameters) - {"self"}


def check_run_keys(cfg: DictConfig, backend: str) -> None:
    """Every top-level key of a run config is one the run reads (ours, a Lightning Trainer argument, or on
    the solo backend a solo-learn block): a typo such as ``+max_epoch=3`` is refused, not ignored."""
    allowed = RUN_CONFIG_KEYS | _trainer_argument_names() | (SOLO_BLOCKS if backend == "solo" else set())
    unknown = sorted(set(cfg) - allowed)
    if not unknown:
        return
    solo_only = [key for key in unknown if key in SOLO_BLOCKS]
    hint = f" ({', '.join(solo_only)}: solo-learn's, read with backend=solo)" if solo_only else ""
    raise ConfigError(
        f"unknown setting(s) {unknown} in the run config{hint}; known: {', '.join(sorted(RUN_CONFIG_KEYS))} "
        "and Lightning Trainer arguments"
    )


def trainer_extras(cfg: DictConfig) -> dict[str, Any]:
    """Further Lightning Trainer arguments given at the top of a run config (``+gradient_clip_val=1``,
    ``+accumulate_grad_batches=4``, ...): passed to the Trainer, not dropped; those the run sets itself
    are refused."""
    extras = {}
    for key in sorted(set(cfg) & (_trainer_argument_names() - _TRAINER_SPEC_KEYS)):
        if key in _TRAINER_SET_BY_RUN:
            raise ConfigError(f"{key} is set by the run itself: {_TRAINER_SET_BY_RUN[key]}; remove it")
        value = cfg[key]
        extras[key] = OmegaConf.to_container(value) if OmegaConf.is_config(value) else value
    return extras


# --------------------------------------------------------------------- data
@dataclass(frozen=True)
class DataSpec:
    """The ``data`` block: Continuous Sampling from the generator, or an image folder (torch or DALI)."""

    source: str
    num_classes: int | None  # None: from the data ("auto"); 0: no online probe
    epoch_size: int = 25600
    crop_size: int | None = None
    autocast: torch.dtype | None = torch.bfloat16
    channels_last: bool = False
    train_path: str | None = None
    resolution: int | None = None
    num_workers: int = 0
    augment_on: str = "device"
    dali_device: str = "auto"
    num_threads: int = 2
    repeat_anchors: bool = False  # the same anchors every epoch (solo-learn's DeepClusterV2)
    val_size: int = 0  # a labelled validation split of this many rendered images (solo-learn files)

    @property
    def uses_generator(self) -> bool:
        return self.source == "continuous"

    @classmethod
    def from_config(cls, block: DictConfig) -> DataSpec:
        source = str(block.get("source"))
        if source not in DATA_SOURCES:
            raise ConfigError(f"unknown data.source {source!r}; known: {', '.join(DATA_SOURCES)}")
        given = block.get("num_classes", "auto")
        num_classes = None if given == "auto" else integer(given, "data.num_classes", 0)
        crop = block.get("crop_size")
        if source == "continuous":
            return cls(
                source,
                num_classes,
                epoch_size=integer(block.get("epoch_size", 25600), "data.epoch_size", 1),
                crop_size=None if crop is None else integer(crop, "data.crop_size", 1),
                autocast=generator_autocast(str(block.get("autocast", "bf16"))),
                channels_last=flag(block.get("channels_last", False), "data.channels_last"),
            )
        if not block.get("train_path"):
            raise ConfigError(f"data={source} needs data.train_path=<folder of class subfolders>")
        return cls(
            source,
            num_classes,
            crop_size=None if crop is None else integer(crop, "data.crop_size", 1),
            train_path=str(block.train_path),
            resolution=integer(block.get("resolution", 32), "data.resolution", 1),
            num_workers=integer(block.get("num_workers", 0), "data.num_workers", 0),
            augment_on=str(block.get("augment_on", "device")),
            dali_device=str(block.get("device", "auto")),
            num_threads=integer(block.get("num_threads", 2), "data.num_threads", 1),
        )


# ---------------------------------------------------------------- pretrain
@dataclass(frozen=True)
class PretrainSpec:
    """One pretraining run: everything of ours main_pretrain.py needs, checked."""

    name: str
    method: str
    backend: str  # as asked: auto | solo | lightly
    seed: int
    batch_size: int
    views: ViewSpec
    generator: GeneratorSpec | None  # None for image-folder data
    data: DataSpec
    trainer: TrainerSpec
    collapse_threshold: float
    feature_rank_threshold: float
    resume_from: Path | None
    views_block: DictConfig  # the views block used (from views_file when given), recorded with the run
    crops: tuple[CropGroup, ...] = ()  # solo-learn's augmentations (a solo-learn file): replace views.pixel
    normalization: tuple[tuple[float, ...], tuple[float, ...]] = (IMAGENET_MEAN, IMAGENET_STD)

    @classmethod
    def from_config(cls, cfg: DictConfig) -> PretrainSpec:
        backend = backend_name(cfg)
        resume = cfg.get("resume_from_checkpoint")
        if resume and not Path(resume).is_file():
            raise ConfigError(
                f"resume_from_checkpoint '{resume}' is not a file (use a run's checkpoints/last.ckpt)"
            )
        data = DataSpec.from_config(cfg.data)
        views = load_views_file(str(cfg.views_file)) if cfg.get("views_file") else cfg.views
        return cls(
            name=str(cfg.get("name", "run")),
            method=str(cfg.method),
            backend=backend,
            seed=integer(cfg.seed, "seed", 0),
            batch_size=integer(cfg.optimizer.batch_size, "optimizer.batch_size", 1),
            views=ViewSpec.from_config(views),
            generator=GeneratorSpec.from_config(cfg.generator) if data.uses_generator else None,
            data=data,
            trainer=TrainerSpec.from_config(cfg, extra=trainer_extras(cfg)),
            collapse_threshold=check_threshold(cfg.get("collapse_threshold", DEFAULT_THRESHOLD)),
            feature_rank_threshold=check_rank_threshold(
                cfg.get("feature_rank_threshold", DEFAULT_RANK_THRESHOLD)
            ),
            resume_from=Path(resume) if resume else None,
            views_block=views,
        )


def load_views_file(path: str) -> DictConfig:
    """A ``views`` block from a YAML file (e.g. a quantification run's recommended_views.yaml)."""
    if not Path(path).is_file():
        raise ConfigError(
            f"views_file '{path}' is not a file (e.g. runs/mi_quant/latest/recommended_views.yaml)"
        )
    try:
        views = OmegaConf.load(path)
    except Exception as err:  # YAML syntax errors come in several exception types
        raise ConfigError(f"views_file '{path}' is not valid YAML: {str(err).splitlines()[0]}") from None
    if not isinstance(views, DictConfig):
        raise ConfigError(f"views_file '{path}' does not hold a views block (name, pixel, perturb, ...)")
    return views


# ----------------------------------------------------------------- quantify
@dataclass(frozen=True)
class RecommendSpec:
    """How recommended views are made from Table 1 (``recommend`` block of mi_quant.yaml)."""

    overused_below: float
    magnitude_fraction: float
    truncation: float
    pixel: str
    crop_min_scale: float


@dataclass(frozen=True)
class QuantifySpec:
    """One MI-quantification run: everything of ours main_quantify.py needs, checked. The method's own
    settings (``method_kwargs``, ``optimizer``, ``backbone``) keep solo-learn's schema."""

    seed: int
    backend: str
    levels: list[str] | None  # None: every level (StyleGAN2: every group)
    resume: Path | None
    max_steps: int
    generator: GeneratorSpec
    trainer: TrainerSpec
    mc_samples: int
    mc_chunk: int
    recommend: RecommendSpec

    @classmethod
    def from_config(cls, cfg: DictConfig) -> QuantifySpec:
        if cfg.get("method") != "mi_quant":
            raise ConfigError(f"main_quantify.py runs method mi_quant, got method '{cfg.get('method')}'")
        backend = backend_name(cfg)
        names = cfg.get("levels")
        levels = None
        if names is not None:
            levels = [str(names)] if isinstance(names, str) else [str(n) for n in names]
            if not levels:
                raise ConfigError(
                    "levels is empty: name at least one level or group (or null for every level)"
                )
            if len(set(levels)) != len(levels):
                raise ConfigError(f"levels repeats a name: {levels}")
        rec = cfg.recommend
        recommend = RecommendSpec(
            overused_below=number(rec.overused_below, "recommend.overused_below", 0),
            magnitude_fraction=number(rec.magnitude_fraction, "recommend.magnitude_fraction"),
            truncation=number(rec.truncation, "recommend.truncation"),
            pixel=str(rec.pixel),
            crop_min_scale=number(rec.crop_min_scale, "recommend.crop_min_scale"),
        )
        if not recommend.magnitude_fraction > 0:
            raise ConfigError(f"recommend.magnitude_fraction must be > 0, got {recommend.magnitude_fraction}")
        check_pixel_options(recommend.pixel, recommend.crop_min_scale)
        resume = cfg.get("resume")
        return cls(
            seed=integer(cfg.seed, "seed", 0),
            backend=backend,
            levels=levels,
            resume=Path(str(resume)).resolve() if resume else None,
            max_steps=integer(cfg.max_steps, "max_steps", 1),
            generator=GeneratorSpec.from_config(cfg.generator),
            trainer=TrainerSpec.from_config(cfg),
            mc_samples=integer(cfg.monte_carlo.samples, "monte_carlo.samples", 2),
            mc_chunk=integer(cfg.monte_carlo.chunk, "monte_carlo.chunk", 1),
            recommend=recommend,
        )


# ------------------------------------------------------------------- linear
@dataclass(frozen=True)
class ProbeSpec:
    """The lightly backend's linear probe (``probe`` block): Adam on standardised frozen features."""

    epochs: int
    lr: float
    batch_size: int
    weight_decay: float

    @classmethod
    def from_config(cls, block: DictConfig) -> ProbeSpec:
        lr = number(block.lr, "probe.lr")
        if not lr > 0:
            raise ConfigError(f"probe.lr must be > 0, got {lr}")
        return cls(
            epochs=integer(block.epochs, "probe.epochs", 1),
            lr=lr,
            batch_size=integer(block.batch_size, "probe.batch_size", 1),
            weight_decay=number(block.weight_decay, "probe.weight_decay", 0),
        )


@dataclass(frozen=True)
class LinearSpec:
    """One linear evaluation (linear.yaml, or a comparison's ``linear`` block), checked. ``solo_linear``
    keeps solo-learn's schema for the solo backend."""

    pretrained: str  # the run folder or backbone.pt ("" in a comparison, which passes backbones itself)
    seed: int
    backend: str
    compare_random: bool
    source: str  # generator: splits rendered from the run's generator | image_folder
    n_train: int
    n_test: int
    data_seed: int
    train_path: str | None
    val_path: str | None
    resolution: int | None  # image folders: None is the run's generator resolution
    probe: ProbeSpec
    solo_linear: DictConfig | None

    @classmethod
    def from_config(cls, cfg: DictConfig) -> LinearSpec:
        backend = backend_name(cfg)
        d = cfg.data
        source = str(d.source)
        if source not in ("generator", "image_folder"):
            raise ConfigError(f"unknown data.source {source!r}; known: generator, image_folder")
        generator = source == "generator"
        resolution = d.get("resolution")
        return cls(
            pretrained=str(cfg.get("pretrained") or ""),
            seed=integer(cfg.seed, "seed", 0),
            backend=backend,
            compare_random=flag(cfg.get("compare_random", True), "compare_random"),
            source=source,
            n_train=integer(d.n_train, "data.n_train", 1) if generator else 0,
            n_test=integer(d.n_test, "data.n_test", 1) if generator else 0,
            data_seed=integer(d.seed, "data.seed", 0) if generator else 0,
            train_path=None if generator else (str(d.train_path) if d.get("train_path") else None),
            val_path=None if generator else (str(d.val_path) if d.get("val_path") else None),
            resolution=None if resolution is None else integer(resolution, "data.resolution", 1),
            probe=ProbeSpec.from_config(cfg.probe),
            solo_linear=cfg.get("solo_linear"),
        )
