"""Self-supervised pretraining: validate the whole config, build everything, then train.

Every user error (unknown generator, level, method, backbone; negative magnitude; missing data path;
bad trainer settings) is raised as ``ConfigError`` by ``build_pretraining``, before the trainer starts
and before anything is written into the run folder.
"""

from __future__ import annotations

import time
import warnings
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import torch
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.loggers import CSVLogger
from lightning.pytorch.utilities import rank_zero_only
from omegaconf import DictConfig, open_dict
from torch import nn

from solo_mlvgm.backends import SOLO_INSTALL, Backend, resolve_backend, solo_importable
from solo_mlvgm.backends.solo_config import GIVEN_FILE, KeyReport, is_solo_file, parse_solo_file
from solo_mlvgm.data.continuous import ContinuousSampling
from solo_mlvgm.data.crops import MultiCropSampling, validation_split
from solo_mlvgm.data.dali import DaliImageFolder, DaliImageFolderData
from solo_mlvgm.data.real import ImageFolderData
from solo_mlvgm.errors import ConfigError
from solo_mlvgm.generators.base import MultiLatentGenerator
from solo_mlvgm.methods.base import OPTIMISER_RECORD, optimiser_record
from solo_mlvgm.methods.collapse import CollapseMonitor
from solo_mlvgm.runs import BACKBONE_FILE, point_latest, save_backbone, save_config, write_json
from solo_mlvgm.settings import PretrainSpec, check_run_keys
from solo_mlvgm.trainer import device_label, make_trainer, progress_settings
from solo_mlvgm.views.grid import save_level_grid


@dataclass
class SoloFileExtras:
    """What a run of a solo-learn config file adds: the file as given, the key report, how the backbone
    is rebuilt for linear evaluation."""

    given: DictConfig
    keys: KeyReport
    backbone: dict[str, Any]  # builder, kwargs, method, cifar_stem, normalization, crop size (backbone.pt)


@dataclass
class Pretraining:
    cfg: DictConfig  # the run config as given (saved with the run)
    spec: PretrainSpec  # our settings, parsed once
    backend: Backend
    method: pl.LightningModule  # an SSLMethod (lightly) or a solo-learn method (solo)
    data: pl.LightningDataModule
    num_classes: int  # the online probe's classes (0: none)
    trainer: pl.Trainer
    generator: MultiLatentGenerator | None
    run_dir: Path
    collapse: CollapseMonitor
    record: DictConfig  # the config saved with the run (config.yaml, backbone.pt)
    solo_file: SoloFileExtras | None = None  # set for a solo-learn config file (data.format=mlvgm)


def run_record(method_cfg: DictConfig, spec: PretrainSpec, backend: Backend, num_classes: int) -> DictConfig:
    """The run's config as used: the method's settings with their defaults filled, the views block used,
    and what was resolved (backend, class count). A copy: the given config is not changed."""
    out = method_cfg.copy()
    with open_dict(out):
        out.backend = backend.name
        out.data.num_classes = num_classes
        out.views = spec.views_block
    return out


def check_settings(cfg: DictConfig) -> tuple[PretrainSpec, Backend, DictConfig]:
    """Our settings, the backend and the method's settings checked without building anything (no data
    is read: a comparison checks a row whose image folder is not exported yet)."""
    spec = PretrainSpec.from_config(cfg)
    backend = resolve_backend(spec.backend, spec.method)
    check_run_keys(cfg, backend.name)
    return spec, backend, backend.check_method(cfg)


def build_pretraining(cfg: DictConfig, run_dir: Path) -> Pretraining:
    """Check and build method, data source and trainer; raise ``ConfigError`` on any bad input."""
    if is_solo_file(cfg):
        return build_solo_file_pretraining(cfg, run_dir)
    spec, backend, method_cfg = check_settings(cfg)
    pl.seed_everything(spec.seed, workers=True, verbose=False)  # before any module draws its weights
    collapse = CollapseMonitor(spec.collapse_threshold, rank_threshold=spec.feature_rank_threshold)
    trainer = _build_trainer(spec, run_dir, collapse)
    generator = spec.generator.build() if spec.generator is not None else None
    data = build_data(spec, generator, trainer)
    num_classes = int(generator.num_classes if generator is not None else data.num_classes)  # type: ignore[attr-defined]
    if spec.data.num_classes is not None and spec.data.num_classes not in (0, num_classes):
        raise ConfigError(
            f"data.num_classes={spec.data.num_classes} does not match the data's {num_classes} classes "
            "(use auto, or 0 for no probe)"
        )
    if spec.data.num_classes == 0:
        num_classes = 0
    method = backend.build_method(
        method_cfg,
        spec,
        num_classes=num_classes,
        num_devices=trainer.num_devices,
        num_nodes=trainer.num_nodes,
    )
    if spec.resume_from is not None:
        check_resume_checkpoint(spec.resume_from, method, spec)
    record = run_record(method_cfg, spec, backend, num_classes)
    return Pretraining(
        cfg, spec, backend, method, data, num_classes, trainer, generator, run_dir, collapse, record
    )


def build_solo_file_pretraining(cfg: DictConfig, run_dir: Path) -> Pretraining:
    """A solo-learn pretrain config file with ``data.format=mlvgm``: every key honoured or refused
    (``backends.solo_config``), solo-learn's own method and backbone, its crop groups on rendered views."""
    if not solo_importable():
        raise ConfigError(f"a solo-learn config file (data.format=mlvgm) needs solo-learn; {SOLO_INSTALL}")
    from solo_mlvgm.backends import solo

    backend = resolve_backend("solo")
    run = parse_solo_file(cfg, run_dir.parent, solo.method_sources(str(cfg.get("method"))))
    spec = run.spec
    pl.seed_everything(spec.seed, workers=True, verbose=False)  # before any module draws its weights
    collapse = CollapseMonitor(spec.collapse_threshold, rank_threshold=spec.feature_rank_threshold)
    callbacks, loggers = solo.file_callbacks_and_loggers(run, run.solo_cfg, run_dir)
    trainer = _build_trainer(spec, run_dir, collapse, callbacks, loggers)
    assert spec.generator is not None  # parse_solo_file requires one
    generator = spec.generator.build()
    data = build_data(spec, generator, trainer)
    num_classes = 0 if spec.data.num_classes == 0 else int(generator.num_classes)
    method = solo.build_solo_file_method(
        run, num_classes=num_classes, num_devices=trainer.num_devices, num_nodes=trainer.num_nodes
    )
    if spec.resume_from is not None:
        check_resume_checkpoint(spec.resume_from, method, spec)
    solo.use_parsed_cfg(trainer, method)  # solo-learn's Checkpointer writes args.json from it
    if run.wandb["enabled"]:
        solo.watch_in_wandb(trainer, method, cfg)
    record = cfg.copy()
    with open_dict(record):
        record.backend = backend.name
        record.data.num_classes = num_classes
        record.views = spec.views_block
        record.solo_file_keys = run.keys.as_dict()
    backbone = {
        **solo.solo_backbone_record(method),
        "normalization": {"mean": list(spec.normalization[0]), "std": list(spec.normalization[1])},
        "crop_size": spec.crops[0].crop_size,  # the size it trained at (a ViT takes no other)
    }
    extras = SoloFileExtras(cfg.copy(), run.keys, backbone)
    return Pretraining(
        cfg, spec, backend, method, data, num_classes, trainer, generator, run_dir, collapse, record, extras
    )


def check_resume_checkpoint(path: Path, method: pl.LightningModule, spec: PretrainSpec) -> None:
    """A checkpoint to resume from is opened safely (``weights_only``: no code from the file runs) and must
    hold this method's weights, same names and shapes, and have training left, before the run starts
    (a run past max_epochs/max_steps would train nothing and still be recorded as finished)."""
    if not zipfile.is_zipfile(path):  # torch writes zip archives: text, or a file cut short, is not one
        raise ConfigError(
            f"resume_from_checkpoint '{path}' is not a torch checkpoint file (not a complete zip archive: "
            "another kind of file, or one cut short)"
        )
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # foreign pickled code, a damaged archive: refused alike, never executed
        reason = "damaged archive"
        if "weights_only" in str(err) or "Unsupported global" in str(err):
            reason = "it holds objects other than tensors and plain values"
        raise ConfigError(
            f"resume_from_checkpoint '{path}' is not a readable Lightning checkpoint ({reason})"
        ) from None
    state = checkpoint.get("state_dict") if isinstance(checkpoint, dict) else None
    if not isinstance(state, dict):
        raise ConfigError(f"resume_from_checkpoint '{path}' has no state_dict: not a Lightning checkpoint")
    expected = {k: tuple(v.shape) for k, v in method.state_dict().items()}
    found = {k: tuple(v.shape) for k, v in state.items() if isinstance(v, torch.Tensor)}
    if expected != found:
        missing, extra = sorted(set(expected) - set(found)), sorted(set(found) - set(expected))
        shapes = sorted(k for k in set(expected) & set(found) if expected[k] != found[k])
        detail = (
            f"missing {missing[:3]}"
            if missing
            else f"unexpected {extra[:3]}"
            if extra
            else f"different shapes for {shapes[:3]}"
        )
        raise ConfigError(
            f"resume_from_checkpoint '{path}' was saved by another method or architecture ({detail})"
        )
    check_same_optimiser(path, checkpoint, method)
    epochs_done = int(checkpoint.get("epoch", -1)) + 1  # Lightning records the epoch it finished
    steps_done = int(checkpoint.get("global_step", 0))
    if epochs_done >= spec.trainer.max_epochs or 0 < spec.trainer.max_steps <= steps_done:
        raise ConfigError(
            f"resume_from_checkpoint '{path}' already trained {epochs_done} epochs ({steps_done} steps): "
            "raise max_epochs (or max_steps) to continue it"
        )


def check_same_optimiser(path: Path, checkpoint: dict, method: pl.LightningModule) -> None:
    """Lightning restores the optimiser's state from the checkpoint (learning rates, weight decay,
    momentum): settings changed since would silently not apply, so they are refused. Checkpoints without
    the record (older lightly ones carry their config; older solo-learn ones nothing) are read as well as
    they allow."""
    saved = checkpoint.get(OPTIMISER_RECORD)
    if saved is None:
        config = (checkpoint.get("hyper_parameters") or {}).get("cfg")
        saved = optimiser_record(config) if isinstance(config, dict) else None
    cfg = method.cfg  # both backends' methods keep their run config
    if not isinstance(saved, dict) or not isinstance(cfg, DictConfig):
        return
    now = optimiser_record(cfg)
    differ = sorted(k for k in set(saved) | set(now) if saved.get(k) != now.get(k))
    if differ:
        detail = ", ".join(f"{k} {saved.get(k)} -> {now.get(k)}" for k in differ[:4])
        raise ConfigError(
            f"resume_from_checkpoint '{path}' was trained with other optimiser settings ({detail}); a "
            "resumed run continues the optimiser state saved in it, so they would not apply: resume with "
            "the checkpoint's settings, or start a new run"
        )


def build_data(
    spec: PretrainSpec, generator: MultiLatentGenerator | None, trainer: pl.Trainer
) -> pl.LightningDataModule:
    """The run's data module: Continuous Sampling from the generator, or an image folder (torch or DALI)."""
    d = spec.data
    if generator is not None and spec.crops:
        return MultiCropSampling(
            generator,
            spec.views,
            spec.crops,
            *spec.normalization,
            batch_size=spec.batch_size,
            epoch_size=d.epoch_size,
            seed=spec.seed,
            autocast_dtype=d.autocast,
            channels_last=d.channels_last,
            world_size=trainer.world_size,
            repeat_anchors=d.repeat_anchors,
            validation=validation_split(generator, d.val_size, spec.seed) if d.val_size else None,
        )
    if generator is not None:
        return ContinuousSampling(
            generator,
            spec.views,
            batch_size=spec.batch_size,
            epoch_size=d.epoch_size,
            seed=spec.seed,
            crop_size=d.crop_size,
            autocast_dtype=d.autocast,
            channels_last=d.channels_last,
            world_size=trainer.world_size,
        )
    assert d.train_path is not None and d.resolution is not None  # DataSpec checked both
    if d.source == "dali":
        return DaliImageFolderData(
            DaliImageFolder(
                d.train_path,
                batch_size=spec.batch_size,
                size=d.crop_size or d.resolution,
                pixel=spec.views.pixel,
                crop_min_scale=spec.views.crop_min_scale,
                device=_dali_device(d.dali_device, trainer),
                num_threads=d.num_threads,
                seed=spec.seed,
            )
        )
    return ImageFolderData(
        d.train_path,
        resolution=d.resolution,
        batch_size=spec.batch_size,
        pixel=spec.views.pixel,
        crop_min_scale=spec.views.crop_min_scale,
        num_workers=d.num_workers,
        augment_on=d.augment_on,
        crop_size=d.crop_size,
    )


def _dali_device(device: str, trainer: pl.Trainer) -> str:
    """``auto``: the GPU pipeline when the trainer runs on a GPU, else the CPU pipeline."""
    if device != "auto":
        return device
    return "gpu" if type(trainer.accelerator).__name__.startswith("CUDA") else "cpu"


def _build_trainer(
    spec: PretrainSpec,
    run_dir: Path,
    collapse: CollapseMonitor,
    callbacks: list | None = None,
    loggers: list | None = None,
) -> pl.Trainer:
    t = spec.trainer
    progress = progress_settings()
    return make_trainer(
        t,
        enable_progress_bar=progress["enable_progress_bar"],
        default_root_dir=str(run_dir),
        max_epochs=t.max_epochs,
        max_steps=t.max_steps,
        logger=[CSVLogger(str(run_dir), name="", version="logs"), *(loggers or [])],
        callbacks=[
            # every epoch (Lightning saves last.ckpt only beside a saved checkpoint): the latest epoch's
            # file, and last.ckpt linked to it, so a killed run resumes from its last finished epoch
            ModelCheckpoint(
                dirpath=str(run_dir / "checkpoints"),
                filename="epoch{epoch}",
                auto_insert_metric_name=False,
                save_top_k=1,
                save_last="link",
                every_n_epochs=1,
            ),
            collapse,
            *progress["callbacks"],
            *(callbacks or []),
        ],
        log_every_n_steps=t.log_every_n_steps,
    )


@rank_zero_only
def _write_start(job: Pretraining) -> None:
    spec, run_dir = job.spec, job.run_dir
    run_dir.mkdir(parents=True, exist_ok=True)
    save_config(run_dir / "config.yaml", job.record)
    job.backend.write_run_files(job.method, run_dir)
    if job.solo_file is not None:
        save_config(run_dir / GIVEN_FILE, job.solo_file.given)
    print(
        f"backend: {job.backend.describe(job.method)} | method: {spec.method} | backbone: {job.cfg.backbone.name} | "
        f"data: {spec.data.source} | device: {device_label(job.trainer)} | precision: {job.trainer.precision}"
    )
    if job.generator is not None:
        assert spec.generator is not None
        rows = save_level_grid(run_dir / "view_grid.png", job.generator, spec=spec.views, seed=spec.seed)
        print(
            f"generator: {spec.generator.name} with levels {job.generator.level_names}; views '{spec.views.name}': "
            f"{ {k: v.describe() for k, v in spec.views.perturb.items()} } + "
            + ("the crops below" if spec.crops else f"pixel '{spec.views.pixel}'")
        )
        print(f"view grid ({', '.join(rows)}): {run_dir / 'view_grid.png'}")
    if spec.crops:
        mean, std = spec.normalization
        print(f"crops (solo-learn's augmentations, normalised with mean {mean} std {std}):")
        for i, group in enumerate(spec.crops):
            print(f"  group {i}: {group.describe()}")
        if spec.views.perturb:
            print(f"  every crop after the first is its own positive of the anchor ({spec.views.name} views)")
        else:
            print(f"  every crop is cut from the anchor image ({spec.views.name} views perturb no level)")
        if spec.data.val_size:
            print(
                f"  validation: {spec.data.val_size} labelled images from the generator's evaluation stream, "
                f"every epoch (solo-learn's val_acc1)"
            )
        if spec.data.repeat_anchors:
            print(
                f"  {spec.method}: the same {spec.data.epoch_size} anchors every epoch (it keeps per-sample "
                "state across epochs), new positives and crops each time"
            )
    if job.solo_file is not None:
        for line in job.solo_file.keys.lines():
            print(line)
    if job.generator is None and spec.views.perturb:
        print(
            f"note: views.perturb {list(spec.views.perturb)} does not apply to image-folder data; "
            f"only pixel preset '{spec.views.pixel}' is used"
        )


def input_size_of_run(job: Pretraining) -> int:
    """The size of the images the backbone trained on: the crops of a solo-learn file, else data.crop_size,
    else the image folder's resolution or the generator's."""
    spec = job.spec
    if spec.crops:
        return spec.crops[0].crop_size
    if spec.data.crop_size is not None:
        return spec.data.crop_size
    if job.generator is not None:
        return int(job.generator.resolution)
    assert spec.data.resolution is not None  # DataSpec sets it for image folders
    return spec.data.resolution


@rank_zero_only
def _write_end(job: Pretraining, seconds: float) -> None:
    run_dir, trainer = job.run_dir, job.trainer
    backbone = job.method.backbone
    assert isinstance(backbone, nn.Module)  # both backends' methods hold their backbone here
    extra = job.solo_file.backbone if job.solo_file is not None else job.backend.backbone_record(job.method)
    save_backbone(run_dir / BACKBONE_FILE, backbone, job.record, extra, input_size=input_size_of_run(job))
    metrics = {k: float(v) for k, v in trainer.callback_metrics.items()}
    collapse, rank = job.collapse.summary(), job.collapse.feature_rank_summary()
    write_json(
        run_dir / "pretrain.json",
        {
            "backend": job.backend.name,
            "seconds": seconds,
            "steps": int(trainer.global_step),
            "metrics": metrics,
            "collapse": collapse,
            "feature_rank": rank,
        },
    )
    point_latest(run_dir)
    print(
        f"pretraining done in {seconds:.0f} s ({trainer.global_step} steps); backbone: {run_dir / BACKBONE_FILE}"
    )
    for signal, title, gloss in (
        (collapse, "collapse signal", "about 1 healthy, 0 collapsed"),
        (rank, "feature rank", "the backbone's effective rank over its dimensions"),
    ):
        if signal["monitored"] and signal["final"] is not None:
            verdict = "COLLAPSED" if signal["collapsed"] else "healthy"
            print(
                f"{title} ({signal['metric']}, {gloss}): final {signal['final']:.3f}, "
                f"lowest {signal['lowest']:.3f}, threshold {signal['threshold']}: {verdict}"
            )


def run_pretraining(cfg: DictConfig, run_dir: Path) -> Path:
    """Train and write the run folder: config.yaml, view_grid.png, checkpoints/last.ckpt, backbone.pt."""
    warnings.filterwarnings("ignore", message=".*isinstance\\(treespec, LeafSpec\\).*")  # Lightning-internal
    # solo-learn's methods define a validation step; these runs have no validation data
    warnings.filterwarnings("ignore", message=".*`validation_step` but have no `val_dataloader`.*")
    # a resumed run writes its checkpoints into its own new folder, by design
    warnings.filterwarnings("ignore", message=".*The dirpath has changed from.*")
    job = build_pretraining(cfg, run_dir)
    _write_start(job)
    start = time.perf_counter()
    resume = str(job.spec.resume_from) if job.spec.resume_from else None
    job.trainer.fit(job.method, datamodule=job.data, ckpt_path=resume)
    _write_end(job, time.perf_counter() - start)
    return run_dir
