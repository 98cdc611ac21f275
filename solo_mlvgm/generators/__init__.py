"""Multi-latent generators and their registry: ``build_generator(name, checkpoint=None, **kwargs)``."""

from __future__ import annotations

import inspect
from collections.abc import Callable

from solo_mlvgm.errors import ConfigError
from solo_mlvgm.generators.base import LatentLevel, MultiLatentGenerator, truncated_normal_
from solo_mlvgm.generators.bigbigan import BigBiGAN
from solo_mlvgm.generators.stylegan2 import StyleGAN2
from solo_mlvgm.generators.toyworld import ToyWorld

GENERATORS: dict[str, type[MultiLatentGenerator]] = {}


def register_generator(name: str) -> Callable[[type[MultiLatentGenerator]], type[MultiLatentGenerator]]:
    """Class decorator that makes a generator buildable by name."""

    def add(cls: type[MultiLatentGenerator]) -> type[MultiLatentGenerator]:
        GENERATORS[name] = cls
        return cls

    return add


register_generator("toyworld")(ToyWorld)
register_generator("bigbigan")(BigBiGAN)
register_generator("stylegan2")(StyleGAN2)


def build_generator(name: str, checkpoint: str | None = None, **kwargs: object) -> MultiLatentGenerator:
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
