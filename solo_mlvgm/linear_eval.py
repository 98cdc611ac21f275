"""Linear evaluation of a pretrained backbone (and, for reference, of a randomly initialised one).

Labelled data is either a split rendered from the run's own generator config (train and test splits fixed
by a seed, from random streams that Continuous Sampling never draws) or ImageFolders given by path.
"""

from __future__ import annotations

import time
from pathlib import Path

import torch
from omegaconf import DictConfig, OmegaConf
from torch import Tensor, nn

from solo_mlvgm.data.export import render_labelled
from solo_mlvgm.data.real import IndexedImageFolder
from solo_mlvgm.errors import ConfigError
from solo_mlvgm.methods.backbones import build_backbone
from solo_mlvgm.methods.linear_probe import extract_features, train_linear_probe
from solo_mlvgm.pretrain import build_generator_from_cfg
from solo_mlvgm.runs import load_backbone_file, write_json


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
        generator = build_generator_from_cfg(run_cfg.generator)
        if generator.num_classes == 0:
            raise ConfigError(
                f"generator '{run_cfg.generator.name}' has no labels; use data.source=image_folder"
            )
        seed = int(cfg.data.seed)
        train_x, train_y = render_labelled(generator, int(cfg.data.n_train), seed, "train")
        test_x, test_y = render_labelled(generator, int(cfg.data.n_test), seed, "test")
        return train_x, train_y, test_x, test_y, generator.num_classes
    if source == "image_folder":
        res = int(cfg.data.resolution)
        train_x, train_y, k = _folder_split(cfg.data.get("train_path"), res, "train")
        test_x, test_y, k_test = _folder_split(cfg.data.get("val_path"), res, "val")
        if k != k_test:
            raise ConfigError(f"train and val folders have different class counts ({k} vs {k_test})")
        return train_x, train_y, test_x, test_y, k
    raise ConfigError(f"unknown data.source '{source}'; known: generator, image_folder")


def probe(backbone: nn.Module, splits: tuple[Tensor, Tensor, Tensor, Tensor, int], cfg: DictConfig) -> dict:
    train_x, train_y, test_x, test_y, k = splits
    p = cfg.probe
    return train_linear_probe(
        extract_features(backbone, train_x),
        train_y,
        extract_features(backbone, test_x),
        test_y,
        k,
        epochs=int(p.epochs),
        lr=float(p.lr),
        batch_size=int(p.batch_size),
        weight_decay=float(p.weight_decay),
        seed=int(cfg.seed),
    )


def run_linear_eval(cfg: DictConfig) -> dict:
    """Evaluate ``cfg.pretrained``; print and return top-1/top-5 and write ``linear.json`` beside it."""
    payload = load_backbone_file(cfg.pretrained)
    run_cfg = OmegaConf.create(payload["config"])
    backbone, _ = build_backbone(payload["backbone"], payload["small_image_stem"])
    backbone.load_state_dict(payload["state_dict"])
    if cfg.data.source == "image_folder" and cfg.data.get("resolution") is None:
        cfg.data.resolution = int(run_cfg.generator.get("resolution", 32))
    start = time.perf_counter()
    splits = labelled_splits(cfg, run_cfg)
    torch.manual_seed(int(cfg.seed))
    results = {"pretrained": probe(backbone, splits, cfg)}
    if cfg.compare_random:
        torch.manual_seed(int(cfg.seed))
        random_backbone, _ = build_backbone(payload["backbone"], payload["small_image_stem"])
        results["random_backbone"] = probe(random_backbone, splits, cfg)
    results["data"] = {
        "source": cfg.data.source,
        "n_train": len(splits[0]),
        "n_test": len(splits[2]),
        "num_classes": splits[4],
    }
    results["seconds"] = time.perf_counter() - start
    path = Path(cfg.pretrained)
    out = (path if path.is_dir() else path.parent) / "linear.json"
    write_json(out, results)
    r = results["pretrained"]
    print(
        f"linear probe ({payload['backbone']}, {run_cfg.method} pretrained): "
        f"top-1 {r['top1']:.2f}%  top-5 {r['top5']:.2f}%  on {len(splits[2])} test images"
    )
    if "random_backbone" in results:
        rr = results["random_backbone"]
        print(
            f"linear probe (same backbone, random init):       top-1 {rr['top1']:.2f}%  top-5 {rr['top5']:.2f}%"
        )
    print(f"results: {out}")
    return results
