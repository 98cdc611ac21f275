"""The lightly backend: SimCLR, SimSiam and BYOL as LightningModules, a supervised baseline, the MI method,
a registry, the linear probe."""

from __future__ import annotations

from solo_mlvgm.errors import ConfigError
from solo_mlvgm.methods.backbones import BACKBONES, build_backbone
from solo_mlvgm.methods.base import SSLMethod
from solo_mlvgm.methods.byol import BYOL
from solo_mlvgm.methods.mi_quant import MIQuant
from solo_mlvgm.methods.simclr import SimCLR
from solo_mlvgm.methods.simsiam import SimSiam
from solo_mlvgm.methods.supervised import Supervised

METHODS: dict[str, type[SSLMethod] | type[MIQuant]] = {
    "simclr": SimCLR,
    "simsiam": SimSiam,
    "byol": BYOL,
    "supervised": Supervised,
    "mi_quant": MIQuant,
}

PRETRAINING_METHODS = tuple(name for name, cls in METHODS.items() if issubclass(cls, SSLMethod))


def method_class(name: str) -> type[SSLMethod]:
    """The self-supervised method called ``name`` (mi_quant measures levels; it runs with main_quantify.py)."""
    if name not in METHODS:
        raise ConfigError(f"unknown method '{name}'; known: {', '.join(METHODS)}")
    cls = METHODS[name]
    if not issubclass(cls, SSLMethod):
        raise ConfigError(
            f"method '{name}' is not a pretraining method: run python main_quantify.py --config-name mi_quant"
        )
    return cls


__all__ = [
    "BACKBONES",
    "BYOL",
    "METHODS",
    "MIQuant",
    "PRETRAINING_METHODS",
    "SSLMethod",
    "SimCLR",
    "SimSiam",
    "Supervised",
    "build_backbone",
    "method_class",
]
