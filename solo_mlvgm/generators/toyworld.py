"""The toy world: a small procedural multi-latent generator that runs on a CPU and needs no weights.

Ground truth (default ``factors=("shape", "pose", "color", "texture", "none")``, global to local):

- ``shape``   decides the object class: ``label = argmax(z_shape @ P)`` over ``num_classes`` shapes (disc,
  ring, square, triangle, plus, bar, half-disc, frame, L, two dots, crescent, T). The image blends the
  shapes' soft masks with ``softmax(logits / shape_temperature)``, so it is differentiable yet nearly
  one-hot. Only this level can change the label.
- ``pose``    object position, rotation and size.
- ``color``   object colour (bright channels) and background colour (dark channels).
- ``texture`` a sinusoidal grating (frequency, orientation, phase) on object and background.
- ``none``    nothing at all: images are bit-identical whatever this latent is.

Levels compose like a real MLVGM (paper, Definition 1): a hidden state ``h`` accumulates every level's
latent in order (the level at position i, counting ``none``, weighted by ``coupling_decay ** i``), and
the continuous factors (pose, colour, texture) of level i are read from its own latent plus
``coupling * h_(i-1)``. An early level therefore also shifts every later continuous factor and changes
more of the image than a late one. Every mapping from latents to pixels is linear or periodic (no
tanh/sigmoid squashing of a factor), so a level's effect grows with the perturbation and no region of
the latent space is flat (short of the noise beyond ``ood_radius``, below), which would make a used
level look unused to the MI method.
Which level carries which factor is set by ``factors`` (any order; tests move the no-effect level).

``ood_radius`` (off by default; ``generator=toyworld_ood``): the images of a real generator degrade far out
of distribution, whichever latent is pushed there; the plain toy world's late factors stay bounded (a
colour is a colour however far its latent goes), so an encoder can always match a pair through the other
levels. With ``ood_radius`` set, a used level's latent with a coordinate beyond it (prior samples are
within ``truncation`` <= ``ood_radius`` and render bit-identically) breaks the whole image into noise that
carries nothing of the anchor, more slowly the later the level.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor

from solo_mlvgm.checks import integer, number
from solo_mlvgm.errors import ConfigError
from solo_mlvgm.generators.base import LatentLevel, MultiLatentGenerator
from solo_mlvgm.generators.registry import register_generator

FACTORS = ("shape", "pose", "color", "texture", "none")
DEFAULT_FACTORS = ("shape", "pose", "color", "texture", "none")
SHAPES = (
    "disc", "ring", "square", "triangle", "plus", "bar",
    "half_disc", "frame", "ell", "two_dots", "crescent", "tee",
)  # fmt: skip
# Number of rendering parameters each factor reads from the latents.
_PARAMS = {"pose": 4, "color": 6, "texture": 5}
_HIDDEN = 16
# how far beyond the prior's support level i must go to break the image to e^-1: 2^i x this
OOD_WIDTH = 0.25
OOD_WAVES = 4  # gratings per channel of a broken image
OOD_FREQ = 4.0  # their largest frequency, cycles per image half-width
OOD_CHAOS = 25.0  # gain of the latent code: nearby latents break into unrelated images


@register_generator("toyworld")
class ToyWorld(MultiLatentGenerator):
    """Procedural MLVGM with a known ground truth (see the module docstring)."""

    # Buffers read directly (registered in ``__init__``; the per-factor ones are read by name).
    shape_proj: Tensor
    grid: Tensor
    ood_proj: Tensor

    def __init__(
        self,
        factors: Sequence[str] = DEFAULT_FACTORS,
        level_dim: int = 8,
        resolution: int = 32,
        num_classes: int = 10,
        coupling: float = 1.0,
        shape_temperature: float = 0.02,
        truncation: float = 2.0,
        world_seed: int = 0,
        ood_radius: float | None = None,
        coupling_decay: float = 1.0,
    ) -> None:
        level_dim = integer(level_dim, "toyworld level_dim")  # one error line for a typo, not a traceback
        resolution = integer(resolution, "toyworld resolution")
        num_classes = integer(num_classes, "toyworld num_classes")
        world_seed = integer(world_seed, "toyworld world_seed")
        coupling = number(coupling, "toyworld coupling")
        coupling_decay = number(coupling_decay, "toyworld coupling_decay")
        shape_temperature = number(shape_temperature, "toyworld shape_temperature")
        truncation = number(truncation, "toyworld truncation")
        super().__init__(truncation=truncation)
        factors = tuple(str(f) for f in factors)
        unknown = [f for f in factors if f not in FACTORS]
        if unknown or not factors:
            raise ConfigError(
                f"toyworld factors must be a non-empty list over {list(FACTORS)}, got {list(factors)}"
            )
        if len(set(factors)) != len(factors):
            raise ConfigError(f"toyworld factors must not repeat, got {list(factors)}")
        if not 2 <= num_classes <= len(SHAPES):
            raise ConfigError(f"toyworld num_classes must be in [2, {len(SHAPES)}], got {num_classes}")
        if resolution < 8 or level_dim < 1:
            raise ConfigError(
                f"toyworld needs resolution >= 8 and level_dim >= 1, got {resolution}, {level_dim}"
            )
        if coupling < 0 or shape_temperature <= 0:
            raise ConfigError("toyworld needs coupling >= 0 and shape_temperature > 0")
        if not 0 < coupling_decay <= 1:
            raise ConfigError(f"toyworld coupling_decay must be in (0, 1], got {coupling_decay}")

        self.ood_radius = None if ood_radius is None else number(ood_radius, "toyworld ood_radius")
        if self.ood_radius is not None and not self.ood_radius >= truncation:
            raise ConfigError(
                f"toyworld ood_radius must be >= truncation ({truncation}), so that no latent of the prior "
                f"is out of distribution, or null (off); got {ood_radius}"
            )
        self.factors = factors
        self.arch = (
            {
                "name": "toyworld",
                "factors": list(factors),
                "level_dim": level_dim,
                "resolution": resolution,
                "num_classes": num_classes,
                "coupling": coupling,
                "shape_temperature": shape_temperature,
                "truncation": truncation,
                "world_seed": world_seed,
            }
            # "ood": how an image breaks, so that walkers of an earlier way are refused, not reused
            | ({} if self.ood_radius is None else {"ood_radius": self.ood_radius, "ood": "noise-beyond-cube"})
            | ({} if coupling_decay == 1 else {"coupling_decay": coupling_decay})
        )
        self.level_dim = int(level_dim)
        self.resolution = int(resolution)
        self.num_shapes = int(num_classes)
        self.num_classes = self.num_shapes if "shape" in factors else 0
        self.coupling = float(coupling)
        self.coupling_decay = float(coupling_decay)
        self.shape_temperature = float(shape_temperature)
        self.levels = tuple(LatentLevel(f, (self.level_dim,)) for f in factors)
        self.groups = {f: (i,) for i, f in enumerate(factors)} | {"all": tuple(range(len(factors)))}
        self.base_dim = self.level_dim * len(factors)

        # Fixed random projections: the world is the same for every run with the same world_seed.
        rng = torch.Generator().manual_seed(world_seed)
        d = self.level_dim

        def proj(rows: int, cols: int) -> Tensor:
            return torch.randn(rows, cols, generator=rng) / math.sqrt(rows)

        prototypes = torch.randn(d, self.num_shapes, generator=rng)
        self.register_buffer(
            "shape_proj", prototypes / prototypes.norm(dim=0, keepdim=True), persistent=False
        )
        for f, k in _PARAMS.items():
            self.register_buffer(f"{f}_proj", proj(d, k), persistent=False)
            self.register_buffer(f"{f}_coupling", proj(_HIDDEN, k), persistent=False)
        for f in FACTORS:
            if f != "none":
                self.register_buffer(f"{f}_to_hidden", proj(d, _HIDDEN), persistent=False)
        ys, xs = torch.meshgrid(
            torch.linspace(-1, 1, resolution), torch.linspace(-1, 1, resolution), indexing="ij"
        )
        self.register_buffer("grid", torch.stack([xs, ys], dim=-1), persistent=False)  # [H, W, 2]
        # Drawn last, so that every buffer above is the plain world's. The noise of a broken image: per
        # colour channel, OOD_WAVES gratings of (x frequency, y frequency, phase).
        self.register_buffer("ood_proj", proj(self.base_dim, 3 * OOD_WAVES * 3), persistent=False)

    # ---------------------------------------------------------------- latents
    def level_coords(self, index: int) -> range:
        return range(index * self.level_dim, (index + 1) * self.level_dim)

    def to_levels(self, base: Tensor) -> list[Tensor]:
        return list(base.split(self.level_dim, dim=1))

    def labels(self, levels: Sequence[Tensor]) -> Tensor | None:
        if "shape" not in self.factors:
            return None
        return self._shape_logits(levels[self.factors.index("shape")]).argmax(dim=1)

    def _shape_logits(self, z: Tensor) -> Tensor:
        return z @ self.shape_proj

    def factor_params(self, levels: Sequence[Tensor]) -> dict[str, Tensor]:
        """Rendering parameters per factor, composed level by level through the hidden state."""
        n = levels[0].shape[0]
        hidden = levels[0].new_zeros(n, _HIDDEN)
        params: dict[str, Tensor] = {}
        for i, (factor, z) in enumerate(zip(self.factors, levels, strict=True)):
            if factor == "none":
                continue
            if factor == "shape":
                params["shape"] = self._shape_logits(z)
            else:
                own = z @ getattr(self, f"{factor}_proj")
                params[factor] = own + self.coupling * hidden @ getattr(self, f"{factor}_coupling")
            hidden = hidden + self.coupling_decay**i * (z @ getattr(self, f"{factor}_to_hidden"))
        # Factors without a level keep a fixed mid value (zeros: centred pose, mid colours, ...).
        for factor, k in _PARAMS.items():
            params.setdefault(factor, levels[0].new_zeros(n, k))
        params.setdefault("shape", levels[0].new_zeros(n, self.num_shapes))
        return params

    # -------------------------------------------------------------- rendering
    def forward(self, levels: Sequence[Tensor]) -> Tensor:
        self.check_levels(levels)
        p = self.factor_params(levels)
        return self._composite(p, self._object_mask(p["shape"], p["pose"]), levels)

    def forward_pair(
        self, anchor: Sequence[Tensor], positive: Sequence[Tensor], first_changed: int
    ) -> tuple[Tensor, Tensor]:
        # The object mask (the costly part: one SDF per shape) depends on the shape and pose levels only,
        # and each factor on the levels up to its own. When both come before the first changed level, the
        # anchor's mask is the positive's too and is computed once.
        self.check_levels(anchor)
        self.check_levels(positive)
        mask_levels = [self.factors.index(f) for f in ("shape", "pose") if f in self.factors]
        if any(i >= first_changed for i in mask_levels):
            return super().forward_pair(anchor, positive, first_changed)
        pa, pp = self.factor_params(anchor), self.factor_params(positive)
        mask = self._object_mask(pa["shape"], pa["pose"])
        return self._composite(pa, mask, anchor), self._composite(pp, mask, positive)

    def _composite(self, p: dict[str, Tensor], mask: Tensor, levels: Sequence[Tensor]) -> Tensor:
        obj_rgb, bg_rgb = self._colors(p["color"])  # [n, 3] each
        pattern, amp_obj, amp_bg = self._texture(p["texture"])  # [n, H, W], [n], [n]
        obj = obj_rgb[:, :, None, None] * (1 + amp_obj[:, None, None, None] * pattern[:, None])
        bg = bg_rgb[:, :, None, None] * (1 + amp_bg[:, None, None, None] * pattern[:, None])
        image = mask[:, None] * obj + (1 - mask[:, None]) * bg
        # The no-effect level adds an exact zero, so its gradient is a zero tensor rather than None.
        for factor, z in zip(self.factors, levels, strict=True):
            if factor == "none":
                image = image + 0.0 * z.sum(dim=1)[:, None, None, None]
        if self.ood_radius is not None:
            image = self._break(image, levels)
        return image.clamp(0.0, 1.0)

    def _in_distribution(self, levels: Sequence[Tensor]) -> Tensor:
        """Per image, 1 while every used level's latent is inside the prior's support (each coordinate
        within ``ood_radius`` >= ``truncation``), decaying exponentially with its distance beyond it. Far
        out of distribution the image breaks into noise, as a real generator's images degrade, so a
        perturbation of any used level alone can hide which anchor a pair came from. The level at
        position i (counting ``none``) breaks over ``2^i * OOD_WIDTH``: like its pixel effect, a later
        level must go further out, twice as far per position. The support is the truncation cube, not a
        ball around it: a walker reaches its faces by moving a few coordinates, so it feels the edge of
        the distribution as a real generator's walker does, instead of drifting for thousands of steps
        in a region where the image cannot break."""
        assert self.ood_radius is not None
        excess = levels[0].new_zeros(levels[0].shape[0])
        for i, (factor, z) in enumerate(zip(self.factors, levels, strict=True)):
            if factor != "none":
                squared = (z.abs() - self.ood_radius).clamp(min=0).pow(2).sum(dim=1)
                # the distance to the cube; where it is 0 the gradient is 0, not sqrt's infinity
                distance = torch.where(
                    squared > 0, squared.clamp(min=1e-24).sqrt(), torch.zeros_like(squared)
                )
                excess = excess + distance / (OOD_WIDTH * 2**i)
        return torch.exp(-excess)

    def _break(self, image: Tensor, levels: Sequence[Tensor]) -> Tensor:
        """Blends each image out of distribution with its noise by how far out it is. Only those images
        pay for the noise: anchors and in-distribution positives are returned as they are."""
        keep = self._in_distribution(levels)
        broken = keep < 1
        if not bool(broken.any()):
            return image
        k = keep[broken][:, None, None, None]
        image = image.clone()
        image[broken] = k * image[broken] + (1 - k) * self._garbage(levels, broken)
        return image

    def _garbage(self, levels: Sequence[Tensor], rows: Tensor | None = None) -> Tensor:
        """What a broken image shows (for ``rows`` of the batch, default all): gratings whose frequencies
        and phases are a chaotic function of the used levels' latents, so two nearby latents give unrelated
        images. A fade to a constant grey would keep the image up to its contrast, which an encoder can
        undo (mutual information is invariant under invertible maps); this destroys it. Read from the
        latents without gradient: the walker is pushed by how much of the image is lost, not by the noise
        pattern. The code is computed for the whole batch, so an image's noise does not depend on which
        other images are broken."""
        used = [z if f != "none" else torch.zeros_like(z) for f, z in zip(self.factors, levels, strict=True)]
        code = torch.sin(OOD_CHAOS * torch.cat(used, dim=1).detach() @ self.ood_proj)
        if rows is not None:
            code = code[rows]
        # per channel, OOD_WAVES gratings of (x frequency, y frequency, phase), each in [-1, 1]
        fx, fy, phase = code.view(-1, 3, OOD_WAVES, 3).unbind(-1)  # [n, 3, K] each
        arg = (
            2
            * math.pi
            * OOD_FREQ
            * (fx[..., None, None] * self.grid[..., 0] + fy[..., None, None] * self.grid[..., 1])
            + 4 * math.pi * phase[..., None, None]  # two full turns: any phase, from a code in [-1, 1]
        )
        return 0.5 + 0.4 * torch.sin(arg).sum(dim=2) / math.sqrt(OOD_WAVES)

    def _object_mask(self, logits: Tensor, pose: Tensor) -> Tensor:
        shift = 0.3 * torch.sin(1.3 * pose[:, 0:2])  # object centre within ±0.3 of the image centre
        angle = 0.5 * math.pi * pose[:, 2]  # linear in the latent: any rotation
        size = 0.42 + 0.12 * torch.sin(pose[:, 3])  # half-size in image units
        cos, sin = torch.cos(angle)[:, None, None], torch.sin(angle)[:, None, None]
        rel = self.grid[None] - shift[:, None, None, :]  # [n, H, W, 2]
        qx = (cos * rel[..., 0] + sin * rel[..., 1]) / size[:, None, None]
        qy = (-sin * rel[..., 0] + cos * rel[..., 1]) / size[:, None, None]
        sdf = torch.stack([_SDF[name](qx, qy) for name in SHAPES[: self.num_shapes]], dim=1)  # [n, K, H, W]
        edge = 1.5 / self.resolution  # about three quarters of a pixel, in image units
        masks = torch.sigmoid(-sdf * size[:, None, None, None] / edge)
        weights = torch.softmax(logits / self.shape_temperature, dim=1)
        return (weights[:, :, None, None] * masks).sum(dim=1)

    @staticmethod
    def _colors(color: Tensor) -> tuple[Tensor, Tensor]:
        wave = torch.sin(1.5 * color)
        return 0.725 + 0.225 * wave[:, :3], 0.25 + 0.2 * wave[
            :, 3:
        ]  # object in [0.5, 0.95], bg in [0.05, 0.45]

    def _texture(self, texture: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        freq = 2.5 * torch.sin(texture[:, 0:2])  # cycles per image half-width
        phase = math.pi * texture[:, 2]
        arg = (self.grid[None] * freq[:, None, None, :]).sum(-1) * 2 * math.pi + phase[:, None, None]
        amp = 0.1 * (1 + torch.sin(texture[:, 3:5]))  # in [0, 0.2]
        return torch.sin(arg), amp[:, 0], amp[:, 1]


# ------------------------------------------------------------------ shape SDFs
# Signed distances in the object frame (unit half-size); negative inside.
def _length(x: Tensor, y: Tensor) -> Tensor:
    return torch.sqrt(x * x + y * y + 1e-12)


def _box(x: Tensor, y: Tensor, bx: float, by: float) -> Tensor:
    dx, dy = x.abs() - bx, y.abs() - by
    return _length(dx.clamp(min=0), dy.clamp(min=0)) + torch.minimum(
        torch.maximum(dx, dy), torch.zeros_like(dx)
    )


def _triangle(x: Tensor, y: Tensor, r: float = 0.9) -> Tensor:
    k = math.sqrt(3.0)
    px, py = x.abs() - r, y + r / k
    flip = px + k * py > 0
    px, py = torch.where(flip, (px - k * py) / 2, px), torch.where(flip, (-k * px - py) / 2, py)
    px = px - px.clamp(-2 * r, 0)
    return -_length(px, py) * torch.sign(py)


_SDF = {
    "disc": lambda x, y: _length(x, y) - 0.9,
    "ring": lambda x, y: (_length(x, y) - 0.68).abs() - 0.24,
    "square": lambda x, y: _box(x, y, 0.75, 0.75),
    "triangle": lambda x, y: _triangle(x, y + 0.15),
    "plus": lambda x, y: torch.minimum(_box(x, y, 0.95, 0.28), _box(x, y, 0.28, 0.95)),
    "bar": lambda x, y: _box(x, y, 1.0, 0.3),
    "half_disc": lambda x, y: torch.maximum(_length(x, y + 0.4) - 0.95, -(y + 0.4)),
    "frame": lambda x, y: _box(x, y, 0.72, 0.72).abs() - 0.16,
    "ell": lambda x, y: torch.minimum(_box(x + 0.45, y, 0.25, 0.85), _box(x, y + 0.6, 0.7, 0.25)),
    "two_dots": lambda x, y: torch.minimum(_length(x - 0.5, y) - 0.38, _length(x + 0.5, y) - 0.38),
    "crescent": lambda x, y: torch.maximum(_length(x, y) - 0.9, -(_length(x - 0.45, y) - 0.7)),
    "tee": lambda x, y: torch.minimum(_box(x, y - 0.6, 0.85, 0.25), _box(x, y + 0.1, 0.25, 0.75)),
}
