"""Run folders: atomic writes, the backbone-only export, and the ``latest`` link of a run name."""

from __future__ import annotations

import csv
import io
import json
import os
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig, OmegaConf
from torch import nn

from solo_mlvgm.errors import ConfigError

BACKBONE_FILE = "backbone.pt"


def temporary_sibling(path: Path) -> Path:
    """A hidden temporary name beside ``path``, unique per process (ranks may write concurrently). It keeps
    the suffix, so writers that infer the format from it (PNG, ...) work on it."""
    return path.with_name(f".{path.stem}.{os.getpid()}.tmp{path.suffix}")


def replace_atomically(path: str | Path, write: Callable[[Path], object]) -> Path:
    """Let ``write`` fill a temporary file beside ``path``, then rename it: readers never see half a file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = temporary_sibling(path)
    write(tmp)
    os.replace(tmp, path)
    return path


def write_atomic(path: str | Path, text: str) -> Path:
    return replace_atomically(path, lambda tmp: tmp.write_text(text))


def save_torch(path: str | Path, payload: Any) -> Path:
    """``torch.save`` of plain data (tensors, dicts, lists, numbers): loadable with ``weights_only=True``."""
    return replace_atomically(path, lambda tmp: torch.save(payload, tmp))


def write_csv(path: str | Path, rows: Sequence[dict[str, Any]], columns: Sequence[str] | None = None) -> Path:
    """Rows as CSV with a header (``columns``, default the first row's keys; other keys are left out)."""
    buffer = io.StringIO()
    fields = list(columns or (rows[0] if rows else []))
    writer = csv.DictWriter(buffer, fieldnames=fields, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return write_atomic(path, buffer.getvalue())


def write_json(path: str | Path, data: Any) -> Path:
    return write_atomic(path, json.dumps(data, indent=2) + "\n")


def save_config(path: str | Path, cfg: DictConfig) -> Path:
    return write_atomic(path, OmegaConf.to_yaml(cfg, resolve=True))


def save_backbone(
    path: str | Path,
    backbone: nn.Module,
    cfg: DictConfig,
    solo_learn: dict[str, Any] | None = None,
    input_size: int | None = None,
) -> Path:
    """Backbone weights plus the run config, loadable with ``torch.load(weights_only=True)``.
    ``solo_learn``: how a solo-learn config file's run rebuilds its (solo-learn) backbone. ``input_size``:
    the image size it trained at, which linear evaluation on image folders resizes to."""
    payload: dict[str, Any] = {
        "backbone": str(cfg.backbone.name),
        "small_image_stem": bool(cfg.backbone.get("small_image_stem", False)),
        "state_dict": {k: v.detach().cpu() for k, v in backbone.state_dict().items()},
        "config": OmegaConf.to_container(cfg, resolve=True),
    }
    if input_size is not None:
        payload["input_size"] = int(input_size)
    if solo_learn is not None:
        payload["solo_learn"] = solo_learn
    return save_torch(path, payload)


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


STATUS_FILE = "status.json"


def write_status(run_dir: Path, state: str, detail: str | None = None) -> None:
    """``status.json`` in a run folder: running | finished | failed | interrupted (a run killed outright
    stays ``running``), with the time."""
    if not run_dir.is_dir():
        return
    record: dict[str, Any] = {"status": state, "time": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
    if detail:
        record["detail"] = detail
    write_json(run_dir / STATUS_FILE, record)


def read_status(run_dir: Path) -> str | None:
    """The ``status`` of a run folder's ``status.json`` (None when it has none or it is unreadable)."""
    try:
        record = json.loads((run_dir / STATUS_FILE).read_text())
    except (OSError, ValueError):
        return None
    return record.get("status") if isinstance(record, dict) else None


def point_latest(run_dir: Path) -> Path:
    """Make ``<run_dir>/../latest`` a relative symlink to ``run_dir`` (replaced atomically)."""
    link = run_dir.parent / "latest"
    tmp = temporary_sibling(link)
    tmp.unlink(missing_ok=True)  # left by a crashed process with the same pid
    tmp.symlink_to(run_dir.name)
    os.replace(tmp, link)
    return link
