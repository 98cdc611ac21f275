"""Self-supervised pretraining: validate the whole config, build everything, then train.

Every user error (unknown generator, level, method, backbone; negative magnitude; missing data path;
bad trainer settings) is raised as ``ConfigError`` by ``build_pretraining``, before the trainer starts
and before anything is written into the run folder.
"""

from __future__ import annotations

import contextlib
import logging
import time
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import lightning.pytorch as pl
import torch
from lightning.fabric.utilities.exceptions import MisconfigurationException
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.loggers import CSVLogger
from lightning.pytorch.utilities import rank_zero_only
from omegaconf import DictConfig, OmegaConf, open_dict

from solo_mlvgm.data.continuous import ContinuousSampling
from solo_mlvgm.data.dali import DaliImageFolder, DaliImageFolderData
from solo_mlvgm.data.real import ImageFolderData
from solo_mlvgm.errors import ConfigError
from solo_mlvgm.generators import GENERATORS, build_generator
from solo_mlvgm.generators.base import MultiLatentGenerator
from solo_mlvgm.methods import method_class
from solo_mlvgm.methods.collapse import DEFAULT_THRESHOLD, CollapseMonitor
from solo_mlvgm.runs import BACKBONE_FILE, point_latest, save_backbone, save_config, write_json
from solo_mlvgm.views.grid import save_level_grid
from solo_mlvgm.views.spec import ViewSpec

BACKENDS = ("auto", "solo", "lightly")
SOLO_INSTALL = (
    "install it from its repository: git clone https://github.com/vturrisi/solo-learn && "
    "pip install --no-deps -e solo-learn (README, 'solo-learn backend')"
)
DATA_SOURCES = ("continuous", "image_folder", "dali")
AUTOCAST_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16, "none": None}


def generator_autocast(name: str) -> torch.dtype | None:
    """The dtype of ``data.autocast`` (the generator's precision on a GPU)."""
    if name not in AUTOCAST_DTYPES:
        raise ConfigError(f"data.autocast must be one of {list(AUTOCAST_DTYPES)}, got '{name}'")
    return AUTOCAST_DTYPES[name]


@dataclass
class Pretraining:
    cfg: DictConfig
    method: pl.LightningModule  # an SSLMethod (lightly) or a solo-learn method (solo)
    data: pl.LightningDataModule
    trainer: pl.Trainer
    generator: MultiLatentGenerator | None
    spec: ViewSpec
    run_dir: Path
    collapse: CollapseMonitor


def solo_importable() -> bool:
    """Whether solo-learn can be imported (``backend: auto`` then trains with it)."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            import solo.methods  # noqa: F401
    except ImportError:
        return False
    return True


def resolve_backend(requested: str, method: str | None = None) -> str:
    """``solo`` or ``lightly``: ``auto`` is solo when solo-learn is importable and has the method (our
    ``supervised`` baseline is lightly-only; ``method=None``: any), else lightly; ``solo`` without
    solo-learn is an error."""
    if requested not in BACKENDS:
        raise ConfigError(f"backend '{requested}' is not available; available: {', '.join(BACKENDS)}")
    if requested == "lightly":
        return "lightly"
    if not solo_importable():
        if requested == "solo":
            raise ConfigError(f"backend=solo needs solo-learn, which is not importable; {SOLO_INSTALL}")
        return "lightly"
    if requested == "auto" and method is not None:
        from solo_mlvgm import solo as bridge

        return "solo" if method in bridge.pretraining_methods() else "lightly"
    return "solo"


def build_generator_from_cfg(cfg: DictConfig) -> MultiLatentGenerator:
    """The generator of a ``generator`` config block: ``name``, optional ``checkpoint``, the rest as arguments."""
    if OmegaConf.is_missing(cfg, "checkpoint"):
        hint = getattr(GENERATORS.get(str(cfg.name)), "checkpoint_hint", "its weights file")
        raise ConfigError(
            f"generator '{cfg.name}' needs generator.checkpoint=<path> ({hint}); "
            "generator.checkpoint=null builds random weights (for timing only)"
        )
    gcfg = OmegaConf.to_container(cfg, resolve=True)
    if not isinstance(gcfg, dict) or "name" not in gcfg:
        raise ConfigError("generator config needs a 'name'")
    name, checkpoint = gcfg.pop("name"), gcfg.pop("checkpoint", None)
    return build_generator(name, checkpoint=checkpoint, **gcfg)


def load_views_file(path: str) -> DictConfig:
    """A ``views`` block from a YAML file (e.g. a quantification run's recommended_views.yaml)."""
    if not Path(path).is_file():
        raise ConfigError(
            f"views_file '{path}' is not a file (e.g. runs/mi_quant/latest/recommended_views.yaml)"
        )
    views = OmegaConf.load(path)
    if not isinstance(views, DictConfig):
        raise ConfigError(f"views_file '{path}' does not hold a views block (name, pixel, perturb, ...)")
    return views


def build_pretraining(cfg: DictConfig, run_dir: Path) -> Pretraining:
    """Check and build method, data source and trainer; raise ``ConfigError`` on any bad input."""
    backend = resolve_backend(str(cfg.get("backend", "auto")), str(cfg.method))
    resume = cfg.get("resume_from_checkpoint")
    if resume and not Path(resume).is_file():
        raise ConfigError(
            f"resume_from_checkpoint '{resume}' is not a file (use a run's checkpoints/last.ckpt)"
        )
    if int(cfg.seed) < 0:
        raise ConfigError(f"seed must be >= 0, got {cfg.seed}")
    if backend == "lightly":
        cls = method_class(cfg.method)
        cfg = cls.validate_cfg(cfg)
    else:
        from solo_mlvgm import solo as bridge

        bridge.check_method(str(cfg.method))
    collapse = CollapseMonitor(cfg.get("collapse_threshold", DEFAULT_THRESHOLD))
    trainer = _build_trainer(cfg, run_dir, collapse)
    if cfg.get("views_file"):
        with open_dict(cfg):
            cfg.views = load_views_file(cfg.views_file)
    spec = ViewSpec.from_config(cfg.views)
    source = cfg.data.source
    if source not in DATA_SOURCES:
        raise ConfigError(f"unknown data.source '{source}'; known: {', '.join(DATA_SOURCES)}")
    batch_size = int(cfg.optimizer.batch_size)

    generator: MultiLatentGenerator | None = None
    data: pl.LightningDataModule
    if source == "continuous":
        generator = build_generator_from_cfg(cfg.generator)
        data = ContinuousSampling(
            generator,
            spec,
            batch_size=batch_size,
            epoch_size=int(cfg.data.epoch_size),
            seed=int(cfg.seed),
            crop_size=cfg.data.get("crop_size"),
            autocast_dtype=generator_autocast(str(cfg.data.autocast)),
            channels_last=bool(cfg.data.get("channels_last", False)),
            world_size=trainer.world_size,
        )
        num_classes = generator.num_classes
    else:
        if not cfg.data.get("train_path"):
            raise ConfigError(f"data={source} needs data.train_path=<folder of class subfolders>")
        if source == "dali":
            data = DaliImageFolderData(
                DaliImageFolder(
                    cfg.data.train_path,
                    batch_size=batch_size,
                    size=int(cfg.data.resolution),
                    pixel=spec.pixel,
                    crop_min_scale=spec.crop_min_scale,
                    device=_dali_device(str(cfg.data.get("device", "auto")), trainer),
                    num_threads=int(cfg.data.num_threads),
                    seed=int(cfg.seed),
                )
            )
        else:
            data = ImageFolderData(
                cfg.data.train_path,
                resolution=int(cfg.data.resolution),
                batch_size=batch_size,
                pixel=spec.pixel,
                crop_min_scale=spec.crop_min_scale,
                num_workers=int(cfg.data.num_workers),
                augment_on=str(cfg.data.get("augment_on", "device")),
            )
        num_classes = data.num_classes
    given = cfg.data.get("num_classes", "auto")
    if given != "auto" and int(given) not in (0, int(num_classes)):
        raise ConfigError(
            f"data.num_classes={given} does not match the data's {num_classes} classes (use auto, or 0 for no probe)"
        )
    with open_dict(cfg):
        if given == "auto":
            cfg.data.num_classes = int(num_classes)
        cfg.backend = backend
    method: pl.LightningModule
    if backend == "lightly":
        method = cls(cfg)
    else:
        method = bridge.build_solo_method(
            cfg,
            num_classes=int(cfg.data.num_classes),
            num_devices=trainer.num_devices,
            num_nodes=trainer.num_nodes,
            train_path=cfg.data.get("train_path") if source in ("image_folder", "dali") else None,
        )
    return Pretraining(cfg, method, data, trainer, generator, spec, run_dir, collapse)


def _dali_device(device: str, trainer: pl.Trainer) -> str:
    """``auto``: the GPU pipeline when the trainer runs on a GPU, else the CPU pipeline."""
    if device != "auto":
        return device
    return "gpu" if type(trainer.accelerator).__name__.startswith("CUDA") else "cpu"


def _build_trainer(cfg: DictConfig, run_dir: Path, collapse: CollapseMonitor) -> pl.Trainer:
    if int(cfg.max_epochs) < 1:
        raise ConfigError(f"max_epochs must be >= 1, got {cfg.max_epochs}")
    return make_trainer(
        cfg,
        default_root_dir=str(run_dir),
        max_epochs=int(cfg.max_epochs),
        max_steps=int(cfg.get("max_steps", -1)),
        logger=CSVLogger(str(run_dir), name="", version="logs"),
        callbacks=[
            ModelCheckpoint(dirpath=str(run_dir / "checkpoints"), save_last=True, save_top_k=0),
            collapse,
        ],
        log_every_n_steps=int(cfg.get("log_every_n_steps", 10)),
    )


@contextlib.contextmanager
def quiet_lightning() -> Iterator[None]:
    """Silence Lightning's device banner: it would precede a one-line config error, and our own summary
    names the device."""
    banner = logging.getLogger("lightning.pytorch.utilities.rank_zero")
    level = banner.level
    banner.setLevel(logging.WARNING)
    try:
        yield
    finally:
        banner.setLevel(level)


def make_trainer(cfg: DictConfig, **kwargs: object) -> pl.Trainer:
    """A Trainer on the config's device settings (accelerator, devices, precision, strategy) plus
    ``kwargs``; bad settings raise ``ConfigError`` without Lightning's device banner."""
    with quiet_lightning():
        try:
            return pl.Trainer(
                accelerator=str(cfg.accelerator),
                devices=cfg.devices,
                precision=cfg.precision,
                strategy=str(cfg.get("strategy", "auto")),
                enable_model_summary=False,
                num_sanity_val_steps=0,
                **kwargs,
            )
        except (MisconfigurationException, ValueError, TypeError) as err:
            raise ConfigError(f"trainer settings: {err}".splitlines()[0]) from None


@rank_zero_only
def _write_start(job: Pretraining) -> None:
    cfg, run_dir = job.cfg, job.run_dir
    run_dir.mkdir(parents=True, exist_ok=True)
    save_config(run_dir / "config.yaml", cfg)
    trainer = job.trainer
    device = (
        f"{type(trainer.accelerator).__name__.removesuffix('Accelerator').lower()} x {trainer.num_devices}"
    )
    backend = str(cfg.backend)
    if backend == "solo":
        from solo_mlvgm import solo as bridge

        backend = f"solo (solo-learn {bridge.solo_version()}, {type(job.method).__name__})"
        save_config(run_dir / "solo_config.yaml", job.method.cfg)
    print(
        f"backend: {backend} | method: {cfg.method} | backbone: {cfg.backbone.name} | "
        f"data: {cfg.data.source} | device: {device} | precision: {trainer.precision}"
    )
    if job.generator is not None:
        rows = save_level_grid(run_dir / "view_grid.png", job.generator, spec=job.spec, seed=int(cfg.seed))
        print(
            f"generator: {cfg.generator.name} with levels {job.generator.level_names}; views '{job.spec.name}': "
            f"{ {k: v.describe() for k, v in job.spec.perturb.items()} } + pixel '{job.spec.pixel}'"
        )
        print(f"view grid ({', '.join(rows)}): {run_dir / 'view_grid.png'}")
    elif job.spec.perturb:
        print(
            f"note: views.perturb {list(job.spec.perturb)} does not apply to image-folder data; "
            f"only pixel preset '{job.spec.pixel}' is used"
        )


@rank_zero_only
def _write_end(job: Pretraining, seconds: float) -> None:
    cfg, run_dir, trainer = job.cfg, job.run_dir, job.trainer
    save_backbone(run_dir / BACKBONE_FILE, job.method.backbone, cfg)
    metrics = {k: float(v) for k, v in trainer.callback_metrics.items()}
    collapse = job.collapse.summary()
    write_json(
        run_dir / "pretrain.json",
        {
            "backend": cfg.backend,
            "seconds": seconds,
            "steps": int(trainer.global_step),
            "metrics": metrics,
            "collapse": collapse,
        },
    )
    point_latest(run_dir)
    print(
        f"pretraining done in {seconds:.0f} s ({trainer.global_step} steps); backbone: {run_dir / BACKBONE_FILE}"
    )
    if collapse["monitored"] and collapse["final"] is not None:
        verdict = "COLLAPSED" if collapse["collapsed"] else "healthy"
        print(
            f"collapse signal ({collapse['metric']}, about 1 healthy, 0 collapsed): final {collapse['final']:.3f}, "
            f"lowest {collapse['lowest']:.3f}, threshold {collapse['threshold']}: {verdict}"
        )


def run_pretraining(cfg: DictConfig, run_dir: Path) -> Path:
    """Train and write the run folder: config.yaml, view_grid.png, checkpoints/last.ckpt, backbone.pt."""
    pl.seed_everything(int(cfg.seed), workers=True, verbose=False)
    warnings.filterwarnings("ignore", message=".*isinstance\\(treespec, LeafSpec\\).*")  # Lightning-internal
    # solo-learn's methods define a validation step; these runs have no validation data
    warnings.filterwarnings("ignore", message=".*`validation_step` but have no `val_dataloader`.*")
    job = build_pretraining(cfg, run_dir)
    _write_start(job)
    start = time.perf_counter()
    job.trainer.fit(job.method, datamodule=job.data, ckpt_path=job.cfg.get("resume_from_checkpoint") or None)
    _write_end(job, time.perf_counter() - start)
    return run_dir
