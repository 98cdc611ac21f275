"""The interface every multi-latent generator implements.

A generator draws one *base* latent per sample (``sample_base``), maps it to per-level latents
(``to_levels``) and renders images from those levels (``forward``). Views perturb the base coordinates
that feed a level, map again and replace only that level's latents (``perturb``): for generators whose
levels are chunks of z this is adding noise to the chunk; for mapped latents (StyleGAN2's w's) it is
"perturb z, map, swap the level's w's", as in the paper.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, TypeVar

import torch
from torch import Tensor, nn

from solo_mlvgm.errors import ConfigError

G = TypeVar("G", bound="MultiLatentGenerator")


@dataclass(frozen=True)
class LatentLevel:
    """One latent level: a name views can address and the per-sample shape of its latent."""

    name: str
    shape: tuple[int, ...]


class MultiLatentGenerator(nn.Module):
    """A frozen generator that takes latents at several levels.

    The contract: a subclass registers itself with ``@register_generator("name")`` (``registry.py``), sets
    ``levels``, ``groups``, ``resolution``, ``base_dim`` and ``arch`` in ``__init__``, and implements
    ``level_coords``, ``to_levels`` and ``forward``. ``arch["name"]`` is the registry name: walkers and
    exports record ``arch`` and are checked against it, so one generator's walker never passes as another's.
    The generator's own weights never receive gradients, but ``forward`` is differentiable with respect to
    the latents.
    """

    levels: tuple[LatentLevel, ...]
    groups: dict[str, tuple[int, ...]]
    resolution: int
    base_dim: int
    num_classes: int = 0  # classes that ``labels`` returns; 0 for generators without labels
    # The registry name (key "name") and the constructor arguments that define this generator (recorded with
    # exports, walkers and runs).
    arch: dict[str, Any]
    # What ``generator.checkpoint`` should point at, for the error when a config leaves it unset.
    checkpoint_hint: ClassVar[str] = "its weights file"

    def __init__(self, truncation: float = 2.0) -> None:
        super().__init__()
        if not truncation > 0:
            raise ConfigError(f"truncation must be > 0, got {truncation}")
        self.truncation = float(truncation)

    # ---------------------------------------------------------------- latents
    @property
    def device(self) -> torch.device:
        first = next(itertools.chain(self.parameters(), self.buffers()), None)
        return torch.device("cpu") if first is None else first.device

    def sample_base(
        self, n: int, generator: torch.Generator | None = None, truncation: float | None = None
    ) -> Tensor:
        """Base latents ``[n, base_dim]`` from N(0, 1) truncated to ±truncation, on the module's device."""
        t = self.truncation if truncation is None else float(truncation)
        base = torch.empty(n, self.base_dim, device=self.device)
        return truncated_normal_(base, mean=0.0, std=1.0, bound=t, generator=generator)

    def level_coords(self, index: int) -> Sequence[int]:
        """Indices of the base coordinates that feed level ``index``."""
        raise NotImplementedError

    def to_levels(self, base: Tensor) -> list[Tensor]:
        """Per-level latents (one tensor ``[n, *level.shape]`` per level) from base latents."""
        raise NotImplementedError

    def forward(self, levels: Sequence[Tensor]) -> Tensor:  # noqa: D401 - nn.Module API
        """Images ``[n, 3, resolution, resolution]`` in [0, 1] from per-level latents."""
        raise NotImplementedError

    def forward_pair(
        self, anchor: Sequence[Tensor], positive: Sequence[Tensor], first_changed: int
    ) -> tuple[Tensor, Tensor]:
        """Render anchor and positive levels that agree on every level before ``first_changed``.

        The default renders both in one ``2n`` pass. Generators whose computation up to a level depends
        only on the levels before it override this to compute that shared part once (the MI method
        perturbs one level at a time, and late levels leave most of the work shared).
        """
        both = [torch.cat([a, p]) for a, p in zip(anchor, positive, strict=True)]
        first, second = self(both).chunk(2)
        return first, second

    def check_levels(self, levels: Sequence[Tensor]) -> None:
        """One latent per level, or a clear error (before any rendering)."""
        if len(levels) != len(self.levels):
            raise ValueError(f"expected {len(self.levels)} level latents, got {len(levels)}")

    def labels(self, levels: Sequence[Tensor]) -> Tensor | None:
        """Class labels (LongTensor ``[n]``), or None for generators without classes."""
        return None

    # ------------------------------------------------------------ addressing
    @property
    def level_names(self) -> list[str]:
        return [level.name for level in self.levels]

    def resolve(self, name: str) -> tuple[int, ...]:
        """Level indices addressed by a level name, a group name, a level index given as text, or an ad-hoc
        group of these joined by ``+`` (e.g. ``z1+z2+z3``: perturbed jointly, one walker over all of them)."""
        if "+" in str(name):
            parts = [part.strip() for part in str(name).split("+")]
            return tuple(sorted({i for part in parts for i in self.resolve(part)}))
        if name in self.groups:
            return self.groups[name]
        if name in self.level_names:
            return (self.level_names.index(name),)
        if str(name).isdigit() and int(name) < len(self.levels):
            return (int(name),)
        known = ", ".join(self.level_names + [g for g in self.groups if g not in self.level_names])
        raise ConfigError(f"unknown level or group '{name}' for {type(self).__name__}; known: {known}")

    def units(self) -> list[tuple[str, tuple[int, ...]]]:
        """(name, level indices) of what is perturbed alone by default (level grids, MI quantification):
        every level; generators with many small levels (StyleGAN2's w's) answer their groups."""
        return [(level.name, (i,)) for i, level in enumerate(self.levels)]

    def coords_of(self, indices: Sequence[int]) -> Tensor:
        """Sorted union of the base coordinates feeding the given levels, on the generator's device.

        Made once per (levels, device) and reused: views ask for it every step, and building it there would
        copy from the host each time."""
        device = self.device
        key = (tuple(indices), str(device))
        cache = self.__dict__.setdefault("_coords_cache", {})
        if key not in cache:
            coords = sorted({c for i in indices for c in self.level_coords(i)})
            cache[key] = torch.tensor(coords, dtype=torch.long, device=device)
        return cache[key]

    def perturb(
        self,
        base: Tensor,
        deltas: Sequence[tuple[Sequence[int], Tensor]],
        levels: Sequence[Tensor] | None = None,
    ) -> list[Tensor]:
        """Per-level latents of ``base`` with each ``(levels, delta)`` applied independently.

        ``delta`` is added to the base coordinates feeding ``levels`` (``coords_of(levels)``); the base is
        mapped again and only those levels are replaced, so every other level stays bit-identical.
        ``levels``, when given, must be ``to_levels(base)``: callers that already hold the anchor's levels
        pass them so the mapping is not computed twice.
        """
        out = list(self.to_levels(base) if levels is None else levels)
        for indices, delta in deltas:
            moved = base.clone()
            coords = self.coords_of(indices)
            moved[:, coords] = moved[:, coords] + delta
            remapped = self.to_levels(moved)
            for i in indices:
                out[i] = remapped[i]
        return out

    def freeze(self) -> MultiLatentGenerator:
        """Eval mode and no gradients to the weights: how a generator is always used here."""
        self.eval()
        self.requires_grad_(False)
        return self

    @classmethod
    def from_checkpoint(cls, path: str, **arch: Any) -> MultiLatentGenerator:
        raise ConfigError(f"{cls.__name__} does not load checkpoints")

    @classmethod
    def from_state(
        cls: type[G],
        path: str,
        state: Mapping[str, Tensor],
        from_file: Mapping[str, Any],
        given: Mapping[str, Any],
    ) -> G:
        """An instance with the architecture settings read ``from_file`` (``given`` ones must agree) and the
        file's ``state`` loaded strictly; every mismatch is one line naming ``path``."""
        name = cls.__name__.lower()
        for key, value in from_file.items():
            if given.get(key) is not None and given[key] != value:
                raise ConfigError(f"{name} {key}={given[key]} does not match the checkpoint's {key}={value}")
        try:
            model = cls(**{**given, **from_file})
        except TypeError as err:
            raise ConfigError(f"{name}: {err}") from None
        try:
            model.load_state_dict(state, strict=True)
        except RuntimeError as err:  # torch lists the missing/unexpected keys and shapes after a header line
            details = " ".join(line.strip() for line in str(err).splitlines()[1:])
            raise ConfigError(
                f"'{path}' does not fit the {name} architecture {model.arch}: {one_line(details, 400)}"
            ) from None
        return model


def one_line(text: object, limit: int = 300) -> str:
    """The first non-empty line of an error text, shortened: messages to the user are one line."""
    lines = [line.strip() for line in str(text).splitlines() if line.strip()]
    first = lines[0] if lines else ""
    return first if len(first) <= limit else first[: limit - 3] + "..."


def truncated_normal_(
    tensor: Tensor, mean: float, std: float, bound: float, generator: torch.Generator | None = None
) -> Tensor:
    """Fill ``tensor`` with mean + std * N(0, 1) truncated to ±bound (in std units), reproducibly."""
    if std == 0:
        return tensor.fill_(mean)
    return nn.init.trunc_normal_(
        tensor, mean=mean, std=std, a=mean - bound * std, b=mean + bound * std, generator=generator
    )
