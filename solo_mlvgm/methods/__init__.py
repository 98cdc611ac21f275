"""The lightly backend's methods: SimCLR, SimSiam and BYOL as LightningModules, a supervised baseline,
their registry (``@register_method``), the backbones and the linear probe."""

from __future__ import annotations

from solo_mlvgm.errors import ConfigError
from solo_mlvgm.methods.backbones import BACKBONES, build_backbone
from solo_mlvgm.methods.base import SSLMethod
from solo_mlvgm.methods.byol import BYOL
from solo_mlvgm.methods.registry import METHODS, register_method
from solo_mlvgm.methods.simclr import SimCLR
from solo_mlvgm.methods.simsiam import SimSiam
from solo_mlvgm.methods.supervised import Supervised

PRETRAINING_METHODS = tuple(METHODS)


def method_class(name: str) -> type[SSLMethod]:
    """The pretraining method called ``name``."""
    if name not in METHODS:
        hint = (
            " (it measures latent levels: python main_quantify.py --config-name mi_quant)"
            if name == "mi_quant"
            else ""
        )
        raise ConfigError(f"unknown method '{name}'{hint}; known: {', '.join(METHODS)}")
    return METHODS[name]


__all__ = [
    "BACKBONES",
    "BYOL",
    "METHODS",
    "PRETRAINING_METHODS",
    "SSLMethod",
    "SimCLR",
    "SimSiam",
    "Supervised",
    "build_backbone",
    "method_class",
    "register_method",
]
