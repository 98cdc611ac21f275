"""solo-learn's own pretrain config files, unchanged, on Continuous Sampling (``data.format=mlvgm``).

::

    python main_pretrain.py --config-path <solo-learn>/scripts/pretrain/cifar --config-name simsiam.yaml \\
        data.format=mlvgm +generator=toyworld +views=toyworld_multilevel wandb.enabled=False ...

``parse_solo_file`` reads such a config once, before any work, and sorts every key the file (and the
command line) sets into one of three kinds, or refuses it with one line that names it:

- **honoured**: used as solo-learn's own ``main_pretrain.py`` uses it (the method, backbone, optimiser,
  scheduler and momentum blocks go unchanged to solo-learn's method class; ``augmentations`` become crop
  groups rendered on the device; Lightning Trainer arguments go to the trainer; ``checkpoint.*`` drives
  solo-learn's Checkpointer; ``auto_resume`` resumes the newest run of the same config if it did not
  finish; ``auto_umap`` runs solo-learn's AutoUMAP on the validation split);
  ``data.dataset`` keeps its meaning for normalisation, solo-learn's CIFAR ResNet stem and the epoch
  size (the dataset's training-set size), while classes come from the generator;
- **not applicable**: keys of file loaders that Continuous Sampling has no use for (``data.train_path``,
  ``data.num_workers``, ``dali.*``), said so in the run's record and banner; a ``data.val_path`` means
  "validate every epoch", on a labelled split rendered from the generator's evaluation stream instead
  (``data.val_size`` images, 5,000 by default), which gives solo-learn's ``val_acc1`` and kNN;
- **not read**: keys solo-learn itself never reads, which have no effect under its own script either:
  ``method_kwargs`` its method class does not read (e.g. ``temperature`` in solo-learn's ``simsiam.yaml``),
  top-level keys that are neither solo-learn's nor Lightning Trainer arguments (``augmentations_cfg`` in
  its imagenet-100 ``simsiam.yaml``; a typo shows up here), keys of the run-level blocks (``checkpoint``,
  ``auto_resume``, ``wandb``, ``knn_eval``, ``auto_umap``) solo-learn does not read there, and ``enabled`` in
  augmentation blocks but ``rrc``.

What this version cannot honour is refused when switched on: ``auto_umap`` and ``knn_eval`` without a
validation split or without what they need (umap-learn, seaborn, pandas, wandb; torchmetrics < 0.12), ``wandb``
without the wandb package, ``data.fraction``.
DeepClusterV2, which keeps cluster assignments per sample index across epochs, gets an epoch of fixed
anchors (``data.epoch_size`` of them) with new positives and crops every epoch.
"""

from __future__ import annotations

import importlib.util
import inspect
import re
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
from omegaconf import DictConfig, ListConfig, OmegaConf

from solo_mlvgm.checks import flag, integer, number
from solo_mlvgm.data.crops import MultiCropSampling
from solo_mlvgm.errors import ConfigError
from solo_mlvgm.methods.collapse import (
    DEFAULT_RANK_THRESHOLD,
    DEFAULT_THRESHOLD,
    check_rank_threshold,
    check_threshold,
)
from solo_mlvgm.runs import read_status
from solo_mlvgm.settings import DataSpec, GeneratorSpec, PretrainSpec, TrainerSpec, generator_autocast
from solo_mlvgm.views.crops import CropGroup, parse_crop_groups, unread_crop_keys
from solo_mlvgm.views.pixel import IMAGENET_MEAN, IMAGENET_STD
from solo_mlvgm.views.spec import ViewSpec

SOLO_FORMAT = "mlvgm"
GIVEN_FILE = "given_config.yaml"  # the config file as composed by hydra, before anything was filled in
# Training-set sizes of solo-learn's named datasets: an epoch of Continuous Sampling is as long as theirs.
DATASET_SIZES = {
    "cifar10": 50_000,
    "cifar100": 50_000,
    "stl10": 105_000,
    "imagenet100": 126_689,
    "imagenet": 1_281_167,
}
# solo-learn's normalisation per dataset (solo/data/pretrain_dataloader.py); others: ImageNet's or the
# crop group's own mean/std.
DATASET_MEAN_STD = {
    "cifar10": ((0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)),
    "cifar100": ((0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762)),
    "stl10": ((0.4914, 0.4823, 0.4466), (0.247, 0.243, 0.261)),
}
# Methods that keep per-sample state from one epoch to the next (DeepClusterV2's cluster assignments by
# sample index): their epoch is a fixed set of anchors, with new positives and crops every epoch.
REPEAT_ANCHORS = ("deepclusterv2",)
# Keys of ours the file may add (config groups and settings of solo_mlvgm).
OUR_KEYS = ("generator", "views", "backend", "collapse_threshold", "feature_rank_threshold")
OUR_DATA_KEYS = ("format", "epoch_size", "autocast", "channels_last", "val_size")
DEFAULT_VAL_SIZE = 5000  # images of the validation split rendered when the file names a val_path
# Top-level blocks passed unchanged to solo-learn's method class, as its main_pretrain.py does.
METHOD_BLOCKS = (
    "name",
    "method",
    "backbone",
    "method_kwargs",
    "optimizer",
    "scheduler",
    "momentum",
    "performance",
)
# Blocks that must be mappings when present (a value there is a mistake solo-learn would crash on)
BLOCKS = (
    "data",
    *METHOD_BLOCKS[2:],
    "checkpoint",
    "auto_resume",
    "wandb",
    "knn_eval",
    "auto_umap",
    "generator",
    "views",
)
# Trainer arguments the run sets itself (its logger, callbacks, checkpoints, folder, progress display).
OWN_TRAINER_ARGS = ("logger", "callbacks", "enable_checkpointing", "default_root_dir", "enable_progress_bar")
# The keys solo-learn reads in its run-level blocks (its parse_cfg, Checkpointer, AutoResumer, AutoUMAP,
# kNN and main_pretrain.py at the tested commit): any other key there is read by nobody.
BLOCK_KEYS = {
    "checkpoint": ("enabled", "dir", "frequency", "keep_prev"),
    "auto_resume": ("enabled", "max_hours"),
    "wandb": ("enabled", "entity", "project", "offline"),
    "knn_eval": ("enabled", "k", "distance_func"),
    "auto_umap": ("enabled", "dir", "frequency"),
}
NOT_APPLICABLE = {
    "data.train_path": "the generator is the training data",
    "data.num_workers": "batches are rendered on the training device, no loader workers",
    "dali": "DALI reads files; Continuous Sampling renders batches",
    "debug_augmentations": "the crop groups are printed at the start of every run",
    "views.pixel": "the augmentations list makes the pixel part of every view",
    "views.crop_min_scale": "the augmentations list sets the crops",
}


def is_solo_file(cfg: DictConfig) -> bool:
    """A solo-learn pretrain config (it has ``augmentations`` or ``data.format``), not one of ours."""
    data = cfg.get("data")
    return "augmentations" in cfg or (isinstance(data, Mapping) and "format" in data)


@dataclass(frozen=True)
class KeyReport:
    """Every key the config sets, by what the run does with it."""

    honoured: tuple[str, ...]
    not_applicable: dict[str, str] = field(default_factory=dict)  # key -> why it has no effect
    not_read: dict[str, str] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {
            "honoured": list(self.honoured),
            "not_applicable": dict(self.not_applicable),
            "not_read": dict(self.not_read),
        }

    def lines(self) -> list[str]:
        out = [f"keys honoured: {len(self.honoured)} (config.yaml, solo_file_keys)"]
        out += [f"key not applicable: {k} ({why})" for k, why in self.not_applicable.items()]
        out += [f"key not read: {k} ({why})" for k, why in self.not_read.items()]
        return out


@dataclass(frozen=True)
class SoloFileRun:
    """A solo-learn config file parsed for Continuous Sampling: our spec, and solo-learn's cfg to build
    the method from (``parse_cfg`` runs once the trainer's device count is known)."""

    spec: PretrainSpec
    solo_cfg: DictConfig  # the file's solo-learn keys, before solo-learn's parse_cfg
    keys: KeyReport
    checkpoint: dict[str, Any]  # solo-learn's Checkpointer settings (enabled, dir, frequency, keep_prev)
    umap: dict[str, Any]  # solo-learn's AutoUMAP settings (enabled, dir, frequency)
    wandb: dict[str, Any]  # enabled, project, entity, offline
    auto_resumed: Path | None  # the checkpoint auto_resume found, if any


def parse_solo_file(cfg: DictConfig, runs_root: Path, method_sources: Mapping[str, str]) -> SoloFileRun:
    """Check every key of a solo-learn config with ``data.format=mlvgm``; one ``ConfigError`` line on the
    first key that cannot be honoured. ``method_sources``: the source text of the method's solo-learn
    classes (to find the ``method_kwargs`` it reads); ``runs_root``: where this config's runs live."""
    container = OmegaConf.to_container(cfg, resolve=True)
    assert isinstance(container, dict)
    plain: dict[str, Any] = {str(k): v for k, v in container.items()}
    data = dict(plain.get("data") or {})
    if data.get("format") != SOLO_FORMAT:
        raise ConfigError(
            f"this is a solo-learn config (data.format={data.get('format')!r}): add data.format={SOLO_FORMAT} "
            "+generator=<name> to train it on Continuous Sampling (or run it with solo-learn's main_pretrain.py)"
        )
    if "generator" not in plain:
        raise ConfigError(
            "data.format=mlvgm needs a generator: add +generator=toyworld (or bigbigan, stylegan2 with "
            "generator.checkpoint=<path>)"
        )
    backend = str(plain.get("backend", "auto"))
    if backend not in ("auto", "solo"):
        raise ConfigError(
            f"backend={backend}: a solo-learn config file trains solo-learn's methods (backend=solo)"
        )
    for block in BLOCKS:
        if block in plain and not isinstance(plain[block], Mapping):
            raise ConfigError(f"{block} must be a block of keys, got {plain[block]!r}")
    for key in ("method", "optimizer.batch_size", "augmentations"):
        head, _, tail = key.partition(".")
        if plain.get(head) is None or (tail and plain[head].get(tail) is None):
            raise ConfigError(f"a solo-learn config needs {key}")
    method = str(plain.get("method"))
    honoured: list[str] = []
    not_applicable: dict[str, str] = {}
    not_read: dict[str, str] = {}
    trainer_args = set(inspect.signature(pl.Trainer.__init__).parameters) - {"self"}
    read = _method_kwargs_read(method_sources)
    for key, value in _leaves(plain):
        top = key.split(".")[0]
        if key in NOT_APPLICABLE or top in NOT_APPLICABLE:
            not_applicable[key] = NOT_APPLICABLE.get(key, NOT_APPLICABLE.get(top, ""))
        elif top == "method_kwargs" and "." in key and key.split(".")[1] not in read:
            not_read[key] = f"solo-learn's {method} never reads it"
        elif top in BLOCK_KEYS and "." in key and key.split(".")[1] not in BLOCK_KEYS[top]:
            not_read[key] = f"solo-learn reads only {', '.join(BLOCK_KEYS[top])} of {top} (a typo?)"
        elif top in OWN_TRAINER_ARGS:
            raise ConfigError(f"{key} is set by solo_mlvgm runs (logger, callbacks, checkpoints, folder)")
        elif top in (
            *METHOD_BLOCKS,
            *OUR_KEYS,
            "augmentations",
            "checkpoint",
            "auto_resume",
            "wandb",
            "seed",
        ):
            honoured.append(key)
        elif top in ("resume_from_checkpoint", "num_nodes") or top in trainer_args:
            honoured.append(key)
        elif top == "data" and key.split(".")[1] in (*OUR_DATA_KEYS, "dataset", "val_path", "no_labels"):
            honoured.append(key)
        elif top == "data" and key == "data.fraction":
            if number(value, "data.fraction") not in (-1.0, 1.0):
                raise ConfigError(
                    "data.fraction: a fraction of an endless stream has no meaning; set the epoch with "
                    "+data.epoch_size=<images>"
                )
            honoured.append(key)
        elif top == "knn_eval":
            if block_enabled(plain, "knn_eval"):
                _check_knn(data)
            honoured.append(key)
        elif top == "auto_umap":
            if block_enabled(plain, "auto_umap"):
                _check_umap(data)
            honoured.append(key)
        else:  # solo-learn's own files carry such keys (imagenet-100/simsiam.yaml: augmentations_cfg)
            not_read[key] = "neither solo-learn nor Lightning's Trainer reads it (a typo?)"
    wandb = _wandb_settings(plain)
    entries = list(plain.get("augmentations") or [])
    groups = parse_crop_groups(entries)
    for key in unread_crop_keys(entries):
        not_read[key] = "solo-learn applies this block when its prob is > 0; it never reads enabled"
    dataset_name = str(data.get("dataset", "custom"))
    if dataset_name in DATASET_MEAN_STD or dataset_name.startswith("imagenet"):
        for i, entry in enumerate(entries):
            for key in ("mean", "std"):
                if key in entry:
                    not_read[f"augmentations[{i}].{key}"] = (
                        f"solo-learn normalises {dataset_name} with its own statistics"
                    )
    num_large = sum(g.num_crops for g in groups if g.crop_size == groups[0].crop_size)
    if num_large != 2 and method not in ("wmse", "mae"):
        raise ConfigError(
            f"method '{method}' needs 2 large crops (solo-learn's rule), the augmentations give {num_large}"
        )
    dataset = str(data.get("dataset", "custom"))
    groups, (mean, std) = normalised_groups(groups, dataset)
    epoch_size = _epoch_size(data, dataset)
    generator = GeneratorSpec.from_config(cfg.generator)
    views_block = cfg.get("views") or OmegaConf.create({"name": "synth", "perturb": {}})
    views = ViewSpec.from_config(views_block)
    checkpoint = _checkpoint_settings(plain)
    resume = plain.get("resume_from_checkpoint")
    if resume and not Path(str(resume)).is_file():
        raise ConfigError(
            f"resume_from_checkpoint '{resume}' is not a file (use a run's checkpoints/last.ckpt)"
        )
    auto_resumed = None
    if not resume and block_enabled(plain, "auto_resume"):
        max_hours = number((plain.get("auto_resume") or {}).get("max_hours", 36), "auto_resume.max_hours", 0)
        auto_resumed = find_resumable(runs_root, cfg, max_hours)
        resume = str(auto_resumed) if auto_resumed else None
    extra = {
        k: plain[k]
        for k in sorted(trainer_args & set(plain))
        if k
        not in (
            "accelerator",
            "devices",
            "precision",
            "strategy",
            "max_epochs",
            "max_steps",
            "log_every_n_steps",
        )
        and k not in OWN_TRAINER_ARGS
    }
    spec = PretrainSpec(
        name=str(plain.get("name", "run")),
        method=method,
        backend="solo",
        seed=integer(plain.get("seed", 5), "seed", 0),  # solo-learn's default seed
        batch_size=integer(plain["optimizer"]["batch_size"], "optimizer.batch_size", 1),
        views=views,
        generator=generator,
        data=DataSpec(
            "continuous",
            0 if flag(data.get("no_labels", False), "data.no_labels") else None,
            epoch_size=epoch_size,
            autocast=generator_autocast(str(data.get("autocast", "bf16"))),
            channels_last=flag(data.get("channels_last", False), "data.channels_last"),
            repeat_anchors=method in REPEAT_ANCHORS,
            val_size=_val_size(data),
        ),
        trainer=TrainerSpec.from_config(cfg, extra=extra, strategy_default="auto"),
        collapse_threshold=check_threshold(plain.get("collapse_threshold", DEFAULT_THRESHOLD)),
        feature_rank_threshold=check_rank_threshold(
            plain.get("feature_rank_threshold", DEFAULT_RANK_THRESHOLD)
        ),
        resume_from=Path(str(resume)) if resume else None,
        views_block=views_block,
        crops=groups,
        normalization=(mean, std),
    )
    solo_cfg = OmegaConf.create({k: v for k, v in plain.items() if k not in OUR_KEYS})
    assert isinstance(solo_cfg, DictConfig)
    for key in OUR_DATA_KEYS:
        solo_cfg.data.pop(key, None)
    solo_cfg.data.format = "image_folder"  # what solo-learn's parse_cfg knows; the data are ours
    report = KeyReport(tuple(honoured), not_applicable, not_read)
    umap = dict(plain.get("auto_umap") or {})
    umap_settings = {
        "enabled": block_enabled(plain, "auto_umap"),
        "dir": str(umap.get("dir", "auto_umap")),
        "frequency": integer(umap.get("frequency", 1), "auto_umap.frequency", 1),
    }
    return SoloFileRun(spec, solo_cfg, report, checkpoint, umap_settings, wandb, auto_resumed)


# --------------------------------------------------------------------- parts
def _leaves(tree: Mapping[str, Any], prefix: str = "") -> Iterator[tuple[str, Any]]:
    """Dotted keys of every leaf; lists (``augmentations``, ``devices``) are leaves."""
    for key, value in tree.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping) and value and name not in ("method_kwargs",):
            yield from _leaves(value, f"{name}.")
        elif name == "method_kwargs" and isinstance(value, Mapping):
            yield from ((f"method_kwargs.{k}", v) for k, v in value.items())
        else:
            yield name, value


def block_enabled(plain: Mapping[str, Any], block: str) -> bool:
    value = (plain.get(block) or {}).get("enabled", False)
    return flag(value, f"{block}.enabled")


def _method_kwargs_read(sources: Mapping[str, str]) -> set[str]:
    """``method_kwargs`` keys that solo-learn's method classes read (``cfg.method_kwargs.<key>``)."""
    found: set[str] = set()
    for text in sources.values():
        found |= set(re.findall(r"method_kwargs\.(\w+)", text))
        found |= set(re.findall(r"method_kwargs\[\s*[\"'](\w+)[\"']\s*\]", text))
    return found


def normalised_groups(
    groups: tuple[CropGroup, ...], dataset: str
) -> tuple[tuple[CropGroup, ...], tuple[tuple[float, ...], tuple[float, ...]]]:
    """solo-learn's normalisation rule: a named dataset's statistics (a group's ``mean``/``std`` are then
    not read), else the group's own, else ImageNet's. Returns the groups as they normalise and the
    statistics of the first (recorded for linear evaluation)."""
    if dataset in DATASET_MEAN_STD or dataset.startswith("imagenet"):
        mean, std = DATASET_MEAN_STD.get(dataset, (IMAGENET_MEAN, IMAGENET_STD))
        return tuple(replace(g, mean=None, std=None) for g in groups), (tuple(mean), tuple(std))
    first = groups[0]
    return groups, (tuple(first.mean or IMAGENET_MEAN), tuple(first.std or IMAGENET_STD))


def _val_size(data: Mapping[str, Any]) -> int:
    """Images of the labelled validation split: where the file names a ``val_path`` (solo-learn then
    validates every epoch), rendered from the generator instead; none without a path or labels."""
    if not data.get("val_path") or flag(data.get("no_labels", False), "data.no_labels"):
        return 0
    return integer(data.get("val_size", DEFAULT_VAL_SIZE), "data.val_size", 1)


def _check_umap(data: Mapping[str, Any]) -> None:
    """solo-learn's AutoUMAP plots the validation split's features with umap-learn, seaborn and pandas."""
    if not _val_size(data):
        raise ConfigError(
            "auto_umap.enabled=True needs the labelled validation split: give data.val_path (any value)"
        )
    missing = [m for m in ("umap", "seaborn", "pandas", "wandb") if importlib.util.find_spec(m) is None]
    if missing:
        raise ConfigError(
            f"auto_umap.enabled=True needs {', '.join(missing)} (pip install umap-learn seaborn pandas wandb: solo-learn's AutoUMAP imports them), "
            "or set auto_umap.enabled=False"
        )


def _check_knn(data: Mapping[str, Any]) -> None:
    """solo-learn's kNN needs the validation split and torchmetrics < 0.12 (its WeightedKNNClassifier
    passes ``compute_on_step``, which later torchmetrics refuse)."""
    if not _val_size(data):
        raise ConfigError(
            "knn_eval.enabled=True needs the labelled validation split: give data.val_path (any value)"
        )
    import torchmetrics

    major, minor = (int(part) for part in torchmetrics.__version__.split(".")[:2])
    if (major, minor) >= (0, 12):
        raise ConfigError(
            f"knn_eval.enabled=True needs torchmetrics < 0.12 (solo-learn's kNN classifier), found "
            f"{torchmetrics.__version__}: pip install 'torchmetrics<0.12', or set knn_eval.enabled=False"
        )


def _epoch_size(data: Mapping[str, Any], dataset: str) -> int:
    if data.get("epoch_size") is not None:
        return integer(data["epoch_size"], "data.epoch_size", 1)
    if dataset not in DATASET_SIZES:
        raise ConfigError(
            f"data.dataset={dataset!r} has no known size to make an epoch of: add +data.epoch_size=<images>"
        )
    return DATASET_SIZES[dataset]


def _checkpoint_settings(plain: Mapping[str, Any]) -> dict[str, Any]:
    block = dict(plain.get("checkpoint") or {})
    return {
        "enabled": flag(block.get("enabled", False), "checkpoint.enabled"),
        "dir": str(block.get("dir", "trained_models")),
        "frequency": integer(block.get("frequency", 1), "checkpoint.frequency", 1),
        "keep_prev": flag(block.get("keep_prev", False), "checkpoint.keep_prev"),
    }


def _wandb_settings(plain: Mapping[str, Any]) -> dict[str, Any]:
    block = dict(plain.get("wandb") or {})
    enabled = flag(block.get("enabled", False), "wandb.enabled")
    if enabled:
        try:
            import wandb  # noqa: F401
        except ImportError:
            raise ConfigError(
                "wandb.enabled=True needs the wandb package (pip install wandb), or set wandb.enabled=False"
            ) from None
    entity = block.get("entity")
    return {
        "enabled": enabled,
        "project": str(block.get("project", "solo-learn")),
        "entity": None if entity in (None, "None") else str(entity),
        "offline": flag(block.get("offline", False), "wandb.offline"),
    }


def find_resumable(runs_root: Path, cfg: DictConfig, max_hours: float) -> Path | None:
    """solo-learn's ``auto_resume`` on our run folders: the newest run under ``runs_root`` (folder names
    are start times) started with the same config; its ``checkpoints/last.ckpt`` when that run did not
    finish (running when killed, interrupted or failed) and is younger than ``max_hours``. A run that
    finished -- a resumed one included -- leaves nothing to resume."""
    if not runs_root.is_dir():
        return None
    wanted = _comparable(cfg)
    for run in sorted((p for p in runs_root.iterdir() if p.is_dir() and p.name != "latest"), reverse=True):
        saved = run / GIVEN_FILE
        if not saved.is_file() or _comparable(OmegaConf.load(saved)) != wanted:
            continue
        last = run / "checkpoints" / "last.ckpt"
        if read_status(run) not in ("running", "interrupted", "failed") or not last.exists():
            return None
        if (time.time() - last.stat().st_mtime) / 3600 > max_hours:
            return None
        return last
    return None


def _comparable(cfg: Any) -> Any:
    """The config without the keys that may differ between a run and its resumption."""
    plain = OmegaConf.to_container(cfg, resolve=True) if isinstance(cfg, DictConfig | ListConfig) else cfg
    if not isinstance(plain, dict):
        return plain
    return {k: v for k, v in plain.items() if k not in ("resume_from_checkpoint", "auto_resume")}


# ------------------------------------------------- solo-learn's own main_pretrain.py
def mlvgm_datamodule(cfg: DictConfig) -> pl.LightningDataModule:
    """Continuous Sampling for solo-learn's own ``main_pretrain.py``: the datamodule a solo-learn config with
    ``data.format=mlvgm``, a ``generator`` block (``+generator=toyworld``) and optionally ``views``
    describes, after solo-learn's ``parse_cfg``. Crops follow its ``augmentations`` (one positive per crop),
    normalisation and epoch size its ``data.dataset`` (or ``data.epoch_size``), batches its
    ``optimizer.batch_size`` per device, randomness its ``seed``; the world size is the trainer's.

    The lines to add to solo-learn's script (README, "solo-learn's own config files")::

        from solo_mlvgm.backends.solo_config import mlvgm_datamodule
        ...
        if cfg.data.format == "mlvgm":  # before the validation loader and the data branches
            datamodule, val_loader = mlvgm_datamodule(cfg), None
        ...
        trainer.fit(model, datamodule=datamodule, ckpt_path=ckpt_path)
    """
    plain = OmegaConf.to_container(cfg, resolve=True)
    assert isinstance(plain, dict)
    data = dict(plain.get("data") or {})
    if data.get("format") != SOLO_FORMAT or "generator" not in plain:
        raise ConfigError(
            "mlvgm_datamodule needs data.format=mlvgm and a generator block (+generator=<name>)"
        )
    dataset = str(data.get("dataset", "custom"))
    groups, (mean, std) = normalised_groups(
        parse_crop_groups(list(plain.get("augmentations") or [])), dataset
    )
    views = ViewSpec.from_config(plain.get("views") or {"name": "synth", "perturb": {}})
    generator = GeneratorSpec.from_config(cfg.generator).build()
    classes = data.get("num_classes")  # solo-learn's online classifier, from data.dataset
    if classes is not None and not data.get("no_labels") and generator.num_classes > int(classes):
        raise ConfigError(
            f"solo-learn's online classifier has {classes} classes (data.dataset={dataset}) but generator "
            f"'{cfg.generator.get('name')}' has {generator.num_classes}: train with solo_mlvgm's main_pretrain.py "
            "(it takes the generator's classes)"
        )
    return MultiCropSampling(
        generator,
        views,
        groups,
        mean,
        std,
        batch_size=integer(plain["optimizer"]["batch_size"], "optimizer.batch_size", 1),
        epoch_size=_epoch_size(data, dataset),
        seed=integer(plain.get("seed", 5), "seed", 0),
        autocast_dtype=generator_autocast(str(data.get("autocast", "bf16"))),
        repeat_anchors=str(plain.get("method")) in REPEAT_ANCHORS,
    )
