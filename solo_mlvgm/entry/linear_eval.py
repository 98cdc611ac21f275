"""Linear evaluation of a pretrained backbone (and, for reference, of a randomly initialised one).

Labelled data is either a split rendered from the run's own generator config (train and test splits fixed
by a seed, from random streams that Continuous Sampling never draws) or ImageFolders given by path.

Two backends on the same splits: ``lightly`` (ours: features computed once, standardised, a linear layer
trained with Adam; ``probe.*``) and ``solo`` (solo-learn's ``LinearModel`` on the frozen backbone, trained
by a Lightning trainer on the normalised images; ``solo_linear.*``, solo-learn's keys). ``backend: auto``
is solo when solo-learn is importable.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig, OmegaConf
from torch import Tensor, nn

from solo_mlvgm.backends import resolve_backend
from solo_mlvgm.checks import integer, number
from solo_mlvgm.data.export import render_labelled
from solo_mlvgm.data.real import IndexedImageFolder
from solo_mlvgm.errors import ConfigError
from solo_mlvgm.methods.backbones import build_backbone
from solo_mlvgm.runs import load_backbone_file, write_json
from solo_mlvgm.settings import GeneratorSpec


def _folder_split(path: str | None, resolution: int, role: str) -> tuple[Tensor, Tensor, int]:
    if not path:
        raise ConfigError(f"data.source=image_folder needs data.{role}_path")
    folder = IndexedImageFolder(path, resolution)
    images = torch.stack([folder[i][1] for i in range(len(folder))]).float().div(255)
    if folder.num_classes == 0:
        raise ConfigError(f"image folder '{path}' has no class folders; linear evaluation needs labels")
    return images, torch.tensor(folder.targets), folder.num_classes


def labelled_splits(cfg: DictConfig, run_cfg: DictConfig) -> tuple[Tensor, Tensor, Tensor, Tensor, int]:
    """(train images, train labels, test images, test labels, number of classes); images in [0, 1]."""
    source = cfg.data.source
    if source == "generator":
        generator = GeneratorSpec.from_config(run_cfg.generator).build()
        if generator.num_classes == 0:
            raise ConfigError(
                f"generator '{run_cfg.generator.name}' has no labels; use data.source=image_folder"
            )
        seed = int(cfg.data.seed)
        train_x, train_y = render_labelled(generator, int(cfg.data.n_train), seed, "train")
        test_x, test_y = render_labelled(generator, int(cfg.data.n_test), seed, "test")
        return train_x, train_y, test_x, test_y, generator.num_classes
    if source == "image_folder":  # at the run's resolution unless data.resolution is given
        res = int(cfg.data.get("resolution") or run_cfg.generator.get("resolution", 32))
        train_x, train_y, k = _folder_split(cfg.data.get("train_path"), res, "train")
        test_x, test_y, k_test = _folder_split(cfg.data.get("val_path"), res, "val")
        if k != k_test:
            raise ConfigError(f"train and val folders have different class counts ({k} vs {k_test})")
        return train_x, train_y, test_x, test_y, k
    raise ConfigError(f"unknown data.source '{source}'; known: generator, image_folder")


def check_linear_cfg(cfg: DictConfig) -> None:
    """The evaluation's own settings, checked before any backbone is read or image rendered."""
    integer(cfg.seed, "seed", 0)
    if cfg.data.source == "generator":
        integer(cfg.data.n_train, "data.n_train", 1)
        integer(cfg.data.n_test, "data.n_test", 1)
        integer(cfg.data.seed, "data.seed", 0)
    elif cfg.data.get("resolution") is not None:
        integer(cfg.data.resolution, "data.resolution", 1)
    p = cfg.probe
    integer(p.epochs, "probe.epochs", 1)
    integer(p.batch_size, "probe.batch_size", 1)
    if not number(p.lr, "probe.lr") > 0:
        raise ConfigError(f"probe.lr must be > 0, got {p.lr}")
    number(p.weight_decay, "probe.weight_decay", 0)


def run_linear_eval(cfg: DictConfig) -> dict:
    """Evaluate ``cfg.pretrained``; print and return top-1/top-5 and write ``linear.json`` beside it."""
    check_linear_cfg(cfg)
    payload = load_backbone_file(cfg.pretrained)
    run_cfg = OmegaConf.create(payload["config"])
    backbone, feature_dim = build_backbone(payload["backbone"], payload["small_image_stem"])
    backbone.load_state_dict(payload["state_dict"])
    backend = resolve_backend(str(cfg.get("backend", "auto")))
    start = time.perf_counter()
    print(
        f"linear evaluation ({backend.name} backend): preparing the labelled {cfg.data.source} splits",
        flush=True,
    )
    splits = labelled_splits(cfg, run_cfg)

    def evaluate(net: nn.Module, which: str) -> dict:
        print(
            f"  {which} backbone: {len(splits[0])} train / {len(splits[2])} test images "
            f"({time.perf_counter() - start:.0f} s so far)",
            flush=True,
        )
        return backend.linear_eval(net, feature_dim, payload["backbone"], splits, cfg, run_cfg)

    torch.manual_seed(int(cfg.seed))
    results: dict[str, Any] = {"backend": backend.name, "pretrained": evaluate(backbone, "pretrained")}
    if cfg.compare_random:
        torch.manual_seed(int(cfg.seed))
        random_backbone, _ = build_backbone(payload["backbone"], payload["small_image_stem"])
        results["random_backbone"] = evaluate(random_backbone, "randomly initialised")
    results["data"] = {
        "source": cfg.data.source,
        "n_train": len(splits[0]),
        "n_test": len(splits[2]),
        "num_classes": splits[4],
    }
    if "random_backbone" in results:
        results["beats_random"] = results["pretrained"]["top1"] > results["random_backbone"]["top1"]
    results["seconds"] = time.perf_counter() - start
    path = Path(cfg.pretrained)
    out = (path if path.is_dir() else path.parent) / "linear.json"
    write_json(out, results)
    r = results["pretrained"]
    what = backend.linear_eval_name
    print(
        f"{what} ({payload['backbone']}, {run_cfg.method} pretrained): "
        f"top-1 {r['top1']:.2f}%  top-5 {r['top5']:.2f}%  on {len(splits[2])} test images"
    )
    if "random_backbone" in results:
        rr = results["random_backbone"]
        print(f"{what} (same backbone, random init):       top-1 {rr['top1']:.2f}%  top-5 {rr['top5']:.2f}%")
        if not results["beats_random"]:
            print(
                f"warning: the pretrained backbone (top-1 {r['top1']:.2f}%) does not beat a randomly "
                f"initialised one ({rr['top1']:.2f}%): pretraining learned nothing useful here "
                "(see the run's pretrain.json, 'collapse')",
                file=sys.stderr,
            )
    print(f"results: {out}")
    return results
