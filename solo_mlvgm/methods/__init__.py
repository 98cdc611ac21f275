"""The lightly backend: SimCLR, SimSiam and BYOL as LightningModules, a registry, and the linear probe."""

from __future__ import annotations

from solo_mlvgm.errors import ConfigError
from solo_mlvgm.methods.backbones import BACKBONES, build_backbone
from solo_mlvgm.methods.base import SSLMethod
from solo_mlvgm.methods.byol import BYOL
from solo_mlvgm.methods.simclr import SimCLR
from solo_mlvgm.methods.simsiam import SimSiam

METHODS: dict[str, type[SSLMethod]] = {"simclr": SimCLR, "simsiam": SimSiam, "byol": BYOL}


def method_class(name: str) -> type[SSLMethod]:
    if name not in METHODS:
        raise ConfigError(f"unknown method '{name}'; known: {', '.join(METHODS)}")
    return METHODS[name]


__all__ = ["BACKBONES", "BYOL", "METHODS", "SSLMethod", "SimCLR", "SimSiam", "build_backbone", "method_class"]
