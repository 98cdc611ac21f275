"""Backends: who builds the pretraining method, the MI quantifier and the linear evaluation.

``lightly`` is ours (``methods/``, ``quantify/``, the linear probe); ``solo`` is solo-learn's own methods
(``backends/solo.py``, the one module that imports solo-learn). Entry points ask ``resolve_backend`` for a
``Backend`` and call it; no other module chooses between them.
"""

from __future__ import annotations

import importlib.util
import warnings
from pathlib import Path
from typing import Any, Protocol

import lightning.pytorch as pl
from omegaconf import DictConfig
from torch import Tensor, nn

from solo_mlvgm.errors import ConfigError
from solo_mlvgm.generators.base import MultiLatentGenerator
from solo_mlvgm.quantify.method import MIQuant
from solo_mlvgm.settings import BACKEND_NAMES, LinearSpec, PretrainSpec

SOLO_INSTALL = (
    "install it from its repository: git clone https://github.com/vturrisi/solo-learn && "
    'pip install "setuptools<81" && pip install --no-deps --no-build-isolation -e solo-learn '
    "(README, 'solo-learn backend')"
)
Splits = tuple[Tensor, Tensor, Tensor, Tensor, int]  # train images, labels, test images, labels, classes


class Backend(Protocol):
    """What an entry point needs from a backend; ``method_cfg`` is the run config in solo-learn's schema."""

    name: str
    linear_eval_name: str  # how its linear evaluation is named in the printed results

    def pretraining_methods(self) -> list[str]:
        """Names ``method`` may take in main_pretrain.py."""
        ...

    def check_method(self, cfg: DictConfig) -> DictConfig:
        """The method's settings checked (one ``ConfigError`` line) and completed with its defaults: a copy,
        the given config is not changed."""
        ...

    def build_method(
        self,
        method_cfg: DictConfig,
        spec: PretrainSpec,
        *,
        num_classes: int,
        num_devices: int,
        num_nodes: int,
    ) -> pl.LightningModule:
        """The pretraining LightningModule (its ``backbone`` attribute is what the run exports)."""
        ...

    def describe(self, method: pl.LightningModule) -> str:
        """The backend line of the run banner."""
        ...

    def write_run_files(self, method: pl.LightningModule, run_dir: Path) -> None:
        """Backend-specific records in the run folder (e.g. solo-learn's parsed config)."""
        ...

    def backbone_record(self, method: pl.LightningModule) -> dict[str, Any] | None:
        """How linear evaluation rebuilds the exported backbone when it is not one of ours by name
        (saved in ``backbone.pt``), or None."""
        ...

    def build_quantifier(
        self, cfg: DictConfig, generator: MultiLatentGenerator, level: str, indices: tuple[int, ...]
    ) -> MIQuant:
        """The MI-quantification module for one level (the same module on both backends)."""
        ...

    def check_linear(self, spec: LinearSpec, backbone_name: str, run_cfg: DictConfig) -> None:
        """The linear evaluation's backend settings checked (one ``ConfigError`` line) before any split
        is rendered."""
        ...

    def linear_eval(
        self,
        backbone: nn.Module,
        feature_dim: int,
        backbone_name: str,
        splits: Splits,
        spec: LinearSpec,
        run_cfg: DictConfig,
    ) -> dict[str, Any]:
        """Top-1/top-5 (percent) of a linear classifier on the frozen backbone's features."""
        ...


SOLO_NEEDED = "solo-learn's lightning-2 code (tag 1.0.8 or later; tested at commit 9187ea3)"


def solo_problem() -> str | None:
    """Why an installed solo-learn cannot be used (an older release, a broken install), or None: usable
    or not installed at all. Every release since 1.0.6 calls itself 1.0.6, so the code is checked."""
    if importlib.util.find_spec("solo") is None:
        return None
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            from solo.methods.base import BaseMethod
    except Exception as err:  # an old release imports pytorch_lightning, a broken one anything
        reason = f"{type(err).__name__}: {err}".splitlines()[0]
        return f"the installed solo-learn cannot be imported ({reason}); solo_mlvgm needs {SOLO_NEEDED}"
    if not issubclass(BaseMethod, pl.LightningModule):
        return f"the installed solo-learn predates the lightning.pytorch API; solo_mlvgm needs {SOLO_NEEDED}"
    return None


def solo_importable() -> bool:
    """Whether a usable solo-learn is installed (``backend: auto`` then trains with it); an unusable one
    is a ``ConfigError`` naming the version needed, never a silent switch to lightly."""
    problem = solo_problem()
    if problem is not None:
        raise ConfigError(f"{problem} (or backend=lightly)")
    return importlib.util.find_spec("solo") is not None


def resolve_backend(requested: str, method: str | None = None) -> Backend:
    """``auto`` is solo when solo-learn is importable and has ``method`` (our ``supervised`` baseline is
    lightly-only; ``method=None``: any), else lightly; ``solo`` without solo-learn is an error."""
    if requested not in BACKEND_NAMES:
        raise ConfigError(f"backend '{requested}' is not available; available: {', '.join(BACKEND_NAMES)}")
    from solo_mlvgm.backends.lightly import LightlyBackend

    if requested == "lightly":
        return LightlyBackend()
    if not solo_importable():
        if requested == "solo":
            raise ConfigError(f"backend=solo needs solo-learn, which is not importable; {SOLO_INSTALL}")
        return LightlyBackend()
    from solo_mlvgm.backends.solo import SoloBackend

    solo = SoloBackend()
    if requested == "auto" and method is not None and method not in solo.pretraining_methods():
        return LightlyBackend()
    return solo


__all__ = [
    "SOLO_INSTALL",
    "SOLO_NEEDED",
    "Backend",
    "Splits",
    "resolve_backend",
    "solo_importable",
    "solo_problem",
]
