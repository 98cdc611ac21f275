"""Multi-latent generators and their registry: ``build_generator(name, checkpoint=None, **kwargs)``.

Each generator class registers itself with ``@register_generator("name")`` (``registry.py``); importing the
built-in modules here is what registers them.
"""

from __future__ import annotations

import inspect
from typing import Any

from solo_mlvgm.errors import ConfigError
from solo_mlvgm.generators.base import LatentLevel, MultiLatentGenerator, truncated_normal_
from solo_mlvgm.generators.bigbigan import BigBiGAN
from solo_mlvgm.generators.registry import GENERATORS, register_generator
from solo_mlvgm.generators.stylegan2 import StyleGAN2
from solo_mlvgm.generators.toyworld import ToyWorld


def build_generator(name: str, checkpoint: str | None = None, **kwargs: Any) -> MultiLatentGenerator:
    """A frozen (eval, no weight gradients) generator by registry name; ``checkpoint`` is a local file."""
    if name not in GENERATORS:
        raise ConfigError(f"unknown generator '{name}'; known: {', '.join(sorted(GENERATORS))}")
    cls = GENERATORS[name]
    accepted = inspect.signature(cls.__init__).parameters
    unknown = [k for k in kwargs if k not in accepted]
    if unknown:  # before any (possibly large) checkpoint is read
        options = ", ".join(p for p in accepted if p != "self")
        raise ConfigError(f"generator '{name}' has no argument {', '.join(unknown)}; arguments: {options}")
    if checkpoint is not None:
        return cls.from_checkpoint(str(checkpoint), **kwargs).freeze()
    return cls(**kwargs).freeze()


__all__ = [
    "BigBiGAN",
    "GENERATORS",
    "LatentLevel",
    "MultiLatentGenerator",
    "StyleGAN2",
    "ToyWorld",
    "build_generator",
    "register_generator",
    "truncated_normal_",
]
