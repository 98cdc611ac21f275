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
import torch.nn.functional as F
from omegaconf import DictConfig, OmegaConf
from torch import Tensor, nn

from solo_mlvgm.backends import SOLO_INSTALL, resolve_backend, solo_importable
from solo_mlvgm.data.export import render_labelled
from solo_mlvgm.data.real import IndexedImageFolder
from solo_mlvgm.errors import ConfigError
from solo_mlvgm.methods.backbones import build_backbone
from solo_mlvgm.runs import load_backbone_file, write_json
from solo_mlvgm.settings import GeneratorSpec, LinearSpec
from solo_mlvgm.views.pixel import IMAGENET_MEAN, IMAGENET_STD


def _folder_split(path: str | None, resolution: int, role: str) -> tuple[Tensor, Tensor, int]:
    if not path:
        raise ConfigError(f"data.source=image_folder needs data.{role}_path")
    folder = IndexedImageFolder(path, resolution)
    images = torch.stack([folder[i][1] for i in range(len(folder))]).float().div(255)
    if folder.num_classes == 0:
        raise ConfigError(f"image folder '{path}' has no class folders; linear evaluation needs labels")
    return images, torch.tensor(folder.targets), folder.num_classes


def recorded_input_size(payload: dict[str, Any]) -> int:
    """The image size a backbone file's run trained at: recorded in the file, or (files written before it
    was) from its config; one error line where neither says."""
    if "input_size" in payload:
        return int(payload["input_size"])
    data, generator = payload["config"].get("data", {}), payload["config"].get("generator", {})
    size = data.get("crop_size") or (
        data.get("resolution") if data.get("source") != "continuous" else generator.get("resolution")
    )
    if not size:
        raise ConfigError(
            "this backbone file does not record the image size it trained at; give data.resolution=<px>"
        )
    return int(size)


def labelled_splits(
    spec: LinearSpec, run_cfg: DictConfig, size: int | None = None
) -> tuple[Tensor, Tensor, Tensor, Tensor, int]:
    """(train images, train labels, test images, test labels, number of classes); images in [0, 1].
    ``size``: the image folders' size when ``data.resolution`` is not given (the size the run trained at)."""
    if spec.source == "generator":
        generator = GeneratorSpec.from_config(run_cfg.generator).build()
        if generator.num_classes == 0:
            raise ConfigError(
                f"generator '{run_cfg.generator.name}' has no labels; use data.source=image_folder"
            )
        train_x, train_y = render_labelled(generator, spec.n_train, spec.data_seed, "train")
        test_x, test_y = render_labelled(generator, spec.n_test, spec.data_seed, "test")
        return train_x, train_y, test_x, test_y, generator.num_classes
    # image folders at the size the run trained at unless data.resolution is given
    res = spec.resolution or size
    if res is None:
        raise ConfigError("image-folder evaluation needs data.resolution=<px>")
    train_x, train_y, k = _folder_split(spec.train_path, res, "train")
    test_x, test_y, k_test = _folder_split(spec.val_path, res, "val")
    if k != k_test:
        raise ConfigError(f"train and val folders have different class counts ({k} vs {k_test})")
    return train_x, train_y, test_x, test_y, k


class Renormalized(nn.Module):
    """A backbone trained on other normalisation statistics than ImageNet's (a solo-learn config file's
    run, e.g. CIFAR's): the evaluation's ImageNet-normalised images are re-normalised to its own, and
    resized to the crop size it trained at."""

    scale: Tensor
    shift: Tensor

    def __init__(
        self, backbone: nn.Module, mean: list[float], std: list[float], size: int | None = None
    ) -> None:
        super().__init__()
        self.backbone = backbone
        self.size = size  # the crop size it trained at: evaluation images are resized to it
        # x_run = (x * s_in + m_in - m_run) / s_run, per channel
        scale = torch.tensor(IMAGENET_STD) / torch.tensor(std)
        shift = (torch.tensor(IMAGENET_MEAN) - torch.tensor(mean)) / torch.tensor(std)
        self.register_buffer("scale", scale[None, :, None, None])
        self.register_buffer("shift", shift[None, :, None, None])

    def forward(self, x: Tensor) -> Tensor:
        if self.size is not None and x.shape[-1] != self.size:
            x = F.interpolate(
                x, size=(self.size, self.size), mode="bicubic", align_corners=False, antialias=True
            )
        return self.backbone(x * self.scale + self.shift)


def rebuild_backbone(payload: dict[str, Any], weights: bool) -> tuple[nn.Module, int]:
    """The backbone of a ``backbone.pt`` (with its weights, or freshly initialised): ours by name, or
    solo-learn's own for a solo-backend run of one of solo-learn's backbones (then solo-learn must be
    installed), re-normalised where it trained on other statistics (a solo-learn config file's run)."""
    solo_learn = payload.get("solo_learn")
    if solo_learn is None:
        net, dim = build_backbone(payload["backbone"], payload["small_image_stem"])
        if weights:
            net.load_state_dict(payload["state_dict"])
        return net, dim
    if not solo_importable():
        raise ConfigError(
            f"this backbone is solo-learn's own {payload['backbone']} (a solo-backend run): evaluating it "
            f"needs solo-learn; {SOLO_INSTALL}"
        )
    from solo_mlvgm.backends.solo import build_solo_backbone

    net, dim = build_solo_backbone(
        payload["backbone"],
        dict(solo_learn["kwargs"]),
        str(solo_learn["method"]),
        # files written before cifar_stem was recorded name the dataset, which decided it
        bool(solo_learn.get("cifar_stem", solo_learn.get("dataset") in ("cifar10", "cifar100"))),
    )
    if weights:
        net.load_state_dict(payload["state_dict"])
    norm = solo_learn.get("normalization")
    if norm is None:  # our run configs: the same (ImageNet) statistics as the evaluation images
        return net, dim
    size = solo_learn.get("crop_size")
    return Renormalized(net, list(norm["mean"]), list(norm["std"]), int(size) if size else None), dim


def run_linear_eval(cfg: DictConfig) -> dict:
    """Evaluate ``cfg.pretrained``; print and return top-1/top-5 and write ``linear.json`` beside it."""
    spec = LinearSpec.from_config(cfg)  # every setting checked before a backbone is read
    payload = load_backbone_file(cfg.pretrained)
    run_cfg = OmegaConf.create(payload["config"])
    backbone, feature_dim = rebuild_backbone(payload, weights=True)
    backend = resolve_backend(spec.backend)
    backend.check_linear(spec, payload["backbone"], run_cfg)  # before any split is rendered
    start = time.perf_counter()
    print(
        f"linear evaluation ({backend.name} backend): preparing the labelled {spec.source} splits",
        flush=True,
    )
    size = None if spec.source == "generator" or spec.resolution else recorded_input_size(payload)
    splits = labelled_splits(spec, run_cfg, size)

    def evaluate(net: nn.Module, which: str) -> dict:
        print(
            f"  {which} backbone: {len(splits[0])} train / {len(splits[2])} test images "
            f"({time.perf_counter() - start:.0f} s so far)",
            flush=True,
        )
        return backend.linear_eval(net, feature_dim, payload["backbone"], splits, spec, run_cfg)

    torch.manual_seed(spec.seed)
    results: dict[str, Any] = {"backend": backend.name, "pretrained": evaluate(backbone, "pretrained")}
    if cfg.compare_random:
        torch.manual_seed(spec.seed)
        random_backbone, _ = rebuild_backbone(payload, weights=False)
        results["random_backbone"] = evaluate(random_backbone, "randomly initialised")
    results["data"] = {
        "source": spec.source,
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
                "(see the run's pretrain.json, 'collapse' and 'feature_rank')",
                file=sys.stderr,
            )
    print(f"results: {out}")
    return results
