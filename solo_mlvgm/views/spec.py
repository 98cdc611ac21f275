"""View specs: which latent levels a positive view perturbs, by how much, and which pixel preset follows.

A spec is written in a config as::

    views:
      name: multilevel
      pixel: no_color          # simclr | no_color | none
      crop_min_scale: 0.2
      perturb:                 # level or group name -> random perturbation; levels not named stay unchanged
        pose: {std: 1.0}
        color: {mean: 0.0, std: 1.0, truncation: 2.0}
        shape: {std: [0.5, 1.5], prob: 0.5}   # per sample: half of them, each with a std ~ U[low, high]
        # the official (low, high) exactly: {std: [low, high], prob: 0.5, per_batch: true}
        texture: {type: learned, walker: runs/mi_quant/latest/levels/texture/walker.pt}

The paper's baselines are specs too: ``perturb: {}`` is ``synth`` (no latent change) and
``perturb: {all: {std: 0.2}}`` is single-latent random (one magnitude on the whole latent), and
``perturb: {all: {type: learned, walker: ...}}`` single-latent learned (Li et al., 2022) with a walker that
``main_quantify.py levels=[all]`` trained. A learned walker must come from the same generator (name and
architecture) and the same level it is applied to; both are checked before training.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from solo_mlvgm.errors import ConfigError
from solo_mlvgm.generators.base import MultiLatentGenerator
from solo_mlvgm.views.perturbation import LearnedPerturbation, Perturbation, RandomPerturbation
from solo_mlvgm.views.pixel import check_pixel_options
from solo_mlvgm.views.walker import load_walker

_KEYS = {
    "random": {"type", "mean", "std", "truncation", "prob", "per_batch"},
    "learned": {"type", "walker", "scale"},
}


@dataclass(frozen=True)
class ViewSpec:
    name: str = "synth"
    perturb: Mapping[str, Perturbation] = field(default_factory=dict)
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
        perturb: dict[str, Perturbation] = {}
        for level, p in (cfg.get("perturb") or {}).items():
            perturb[str(level)] = _parse_perturbation(str(level), dict(p or {}))
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

    def resolve(self, generator: MultiLatentGenerator) -> list[tuple[tuple[int, ...], Perturbation]]:
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
        for (indices, p), name in zip(resolved, self.perturb, strict=True):
            if isinstance(p, LearnedPerturbation):
                _check_walker_fits(p, name, indices, generator)
        return resolved


def _parse_perturbation(level: str, p: dict[str, Any]) -> Perturbation:
    kind = p.get("type", "random")
    if kind not in _KEYS:
        raise ConfigError(f"views.perturb.{level}.type must be one of {sorted(_KEYS)}, got '{kind}'")
    bad = set(p) - _KEYS[kind]
    if bad:
        raise ConfigError(
            f"views.perturb.{level} has unknown keys {sorted(bad)} for type '{kind}'; allowed: {sorted(_KEYS[kind])}"
        )
    if kind == "learned":
        if not p.get("walker"):
            raise ConfigError(f"views.perturb.{level} of type 'learned' needs walker=<walker.pt>")
        scale = p.get("scale")
        if scale is not None and (
            isinstance(scale, str) or not isinstance(scale, Sequence) or len(scale) != 2
        ):
            raise ConfigError(f"views.perturb.{level}.scale must be [low, high], got {scale!r}")
        walker, meta = load_walker(p["walker"])
        try:
            pair = None if scale is None else (float(scale[0]), float(scale[1]))
            return LearnedPerturbation(walker, str(p["walker"]), meta, pair)
        except (ConfigError, TypeError, ValueError) as err:
            raise ConfigError(f"views.perturb.{level}: {err}") from None
    values = {k: v for k, v in p.items() if k != "type"}
    std = values.get("std")
    if isinstance(std, Sequence) and not isinstance(std, str):  # [low, high]: a std per sample
        if len(std) != 2:
            raise ConfigError(f"views.perturb.{level}.std must be a number or [low, high], got {list(std)}")
        values["std"], values["std_high"] = std
    per_batch = values.pop("per_batch", False)
    if not isinstance(per_batch, bool):
        raise ConfigError(f"views.perturb.{level}.per_batch must be true or false, got {per_batch!r}")
    try:
        return RandomPerturbation(**{k: float(v) for k, v in values.items()}, per_batch=per_batch)
    except (ConfigError, TypeError, ValueError) as err:
        raise ConfigError(f"views.perturb.{level}: {err}") from None


def _check_walker_fits(
    p: LearnedPerturbation, name: str, indices: tuple[int, ...], generator: MultiLatentGenerator
) -> None:
    """A walker is only meaningful on the generator and level it was trained on."""
    trained = p.meta.get("generator", {})
    if trained.get("arch") != generator.arch:
        raise ConfigError(
            f"walker '{p.source}' was trained on a different generator ({trained.get('name')} "
            f"{trained.get('arch')}), not this one ({generator.arch})"
        )
    if tuple(p.meta.get("indices", ())) != tuple(indices):
        raise ConfigError(
            f"walker '{p.source}' was trained on level '{p.meta.get('level')}', not on '{name}'"
        )
