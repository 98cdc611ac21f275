"""View specs: which latent levels a positive view perturbs, by how much, and which pixel preset follows.

A spec is written in a config as::

    views:
      name: multilevel
      pixel: no_color          # simclr | no_color | none
      crop_min_scale: 0.2
      perturb:                 # level or group name -> random perturbation; levels not named stay unchanged
        pose: {std: 1.0}
        color: {mean: 0.0, std: 1.0, truncation: 2.0}

The paper's baselines are specs too: ``perturb: {}`` is ``synth`` (no latent change) and
``perturb: {all: {std: 0.2}}`` is single-latent random (one magnitude on the whole latent).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from solo_mlvgm.errors import ConfigError
from solo_mlvgm.generators.base import MultiLatentGenerator
from solo_mlvgm.views.perturbation import RandomPerturbation
from solo_mlvgm.views.pixel import check_pixel_options

_PERTURBATION_KEYS = {"type", "mean", "std", "truncation"}


@dataclass(frozen=True)
class ViewSpec:
    name: str = "synth"
    perturb: Mapping[str, RandomPerturbation] = field(default_factory=dict)
    pixel: str = "none"
    crop_min_scale: float = 0.2

    def __post_init__(self) -> None:
        check_pixel_options(self.pixel, self.crop_min_scale)

    @classmethod
    def from_config(cls, cfg: Mapping[str, Any]) -> ViewSpec:
        """Parse and validate a ``views`` config block (an OmegaConf node or a plain mapping)."""
        allowed = {"name", "perturb", "pixel", "crop_min_scale"}
        extra = set(cfg) - allowed
        if extra:
            raise ConfigError(f"views has unknown keys {sorted(extra)}; allowed: {sorted(allowed)}")
        perturb: dict[str, RandomPerturbation] = {}
        for level, p in (cfg.get("perturb") or {}).items():
            p = dict(p or {})
            bad = set(p) - _PERTURBATION_KEYS
            if bad:
                raise ConfigError(
                    f"views.perturb.{level} has unknown keys {sorted(bad)}; allowed: {sorted(_PERTURBATION_KEYS)}"
                )
            kind = p.pop("type", "random")
            if kind != "random":
                raise ConfigError(f"views.perturb.{level}.type must be 'random', got '{kind}'")
            try:
                perturb[str(level)] = RandomPerturbation(**{k: float(v) for k, v in p.items()})
            except (ConfigError, TypeError, ValueError) as err:
                raise ConfigError(f"views.perturb.{level}: {err}") from None
        try:
            crop_min_scale = float(cfg.get("crop_min_scale", 0.2))
        except (TypeError, ValueError):
            raise ConfigError(
                f"views.crop_min_scale must be a number, got {cfg.get('crop_min_scale')!r}"
            ) from None
        return cls(
            name=str(cfg.get("name", "custom")),
            perturb=perturb,
            pixel=str(cfg.get("pixel", "none")),
            crop_min_scale=crop_min_scale,
        )

    def resolve(self, generator: MultiLatentGenerator) -> list[tuple[tuple[int, ...], RandomPerturbation]]:
        """(level indices, perturbation) pairs for this generator; unknown names fail here, before training."""
        resolved = [(generator.resolve(name), p) for name, p in self.perturb.items()]
        seen: set[int] = set()
        for indices, _ in resolved:
            if seen & set(indices):
                names = [generator.levels[i].name for i in sorted(seen & set(indices))]
                raise ConfigError(
                    f"views perturb level(s) {names} twice (a level and a group containing it?)"
                )
            seen |= set(indices)
        return resolved
