"""Run folders: atomic writes, the backbone-only export, and the ``latest`` link of a run name."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig, OmegaConf
from torch import nn

from solo_mlvgm.errors import ConfigError

BACKBONE_FILE = "backbone.pt"


def temporary_sibling(path: Path) -> Path:
    """A hidden temporary name beside ``path``, unique per process (ranks may write concurrently)."""
    return path.with_name(f".{path.name}.{os.getpid()}.tmp")


def write_atomic(path: str | Path, text: str) -> Path:
    """Write ``text`` to a temporary file beside ``path`` and rename it: readers never see half a file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = temporary_sibling(path)
    tmp.write_text(text)
    os.replace(tmp, path)
    return path


def write_json(path: str | Path, data: Any) -> Path:
    return write_atomic(path, json.dumps(data, indent=2) + "\n")


def save_config(path: str | Path, cfg: DictConfig) -> Path:
    return write_atomic(path, OmegaConf.to_yaml(cfg, resolve=True))


def save_backbone(path: str | Path, backbone: nn.Module, cfg: DictConfig) -> Path:
    """Backbone weights plus the run config, loadable with ``torch.load(weights_only=True)``."""
    payload = {
        "backbone": str(cfg.backbone.name),
        "small_image_stem": bool(cfg.backbone.small_image_stem),
        "state_dict": {k: v.detach().cpu() for k, v in backbone.state_dict().items()},
        "config": OmegaConf.to_container(cfg, resolve=True),
    }
    path = Path(path)
    tmp = temporary_sibling(path)
    torch.save(payload, tmp)
    os.replace(tmp, path)
    return path


def load_backbone_file(path: str | Path) -> dict[str, Any]:
    """The payload of ``save_backbone``; ``path`` is the file or a run folder (or a ``latest`` link)."""
    path = Path(path)
    if path.is_dir():
        path = path / BACKBONE_FILE
    if not path.is_file():
        raise ConfigError(
            f"no pretrained backbone at '{path}' (expected {BACKBONE_FILE} from main_pretrain.py)"
        )
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # noqa: BLE001 - any unreadable file is a user error here
        raise ConfigError(f"'{path}' is not a backbone file written by main_pretrain.py: {err}") from None
    if not isinstance(payload, dict) or not {"backbone", "state_dict", "config"} <= set(payload):
        raise ConfigError(f"'{path}' is not a backbone file written by main_pretrain.py")
    return payload


def point_latest(run_dir: Path) -> Path:
    """Make ``<run_dir>/../latest`` a relative symlink to ``run_dir`` (replaced atomically)."""
    link = run_dir.parent / "latest"
    tmp = temporary_sibling(link)
    tmp.symlink_to(run_dir.name)
    os.replace(tmp, link)
    return link
