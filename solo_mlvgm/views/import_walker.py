"""Walkers released with the paper's code and with COP-Gen, converted into our walker format.

    python -m solo_mlvgm.views.import_walker w_COPGen_120000.pth walker.pt --generator bigbigan

Both release a whole pickled module under ``nn_walker`` (``torch.save({'nn_walker': module})``), possibly
wrapped in ``DataParallel``; the MLP is ``walker = Sequential(Linear(F, H), ReLU, Linear(H, F))`` and a
positive is ``z + walker(z)``, exactly our ``Walker`` (``delta = p(z)``). The file is read through the
restricted unpickler: the modules it names become inert stand-ins that only keep their state, and nothing in
the file is imported or run.

- The paper's ``NonlinearWalker`` (``src.noise_maker.walkers``) records its latent group as chunk indices
  ``start`` (included) and ``stop`` (excluded): on BigBiGAN the walker reads and moves the coordinates of
  levels ``z{start}..z{stop-1}`` (20 each; its ``"1_6"`` is our ``z1+z2+z3+z4+z5``), on StyleGAN2 it reads the
  whole z and its effect is swapped into ``w{start}..w{stop-1}`` (its ``"4_8"`` is our ``ws4_8``), which is
  what our generators do with a group's coordinates.
- COP-Gen's navigator (``NonlinearWalk``, saved from its training script's ``__main__``) moves the whole
  BigBiGAN z (120 coordinates): our group ``all``. ``--levels`` names the group for files that do not say.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import yaml

from solo_mlvgm.errors import ConfigError
from solo_mlvgm.generators import build_generator
from solo_mlvgm.generators.base import MultiLatentGenerator
from solo_mlvgm.generators.checkpoints import load_restricted_torch
from solo_mlvgm.views.walker import Walker, save_walker


class ModuleStandIn:
    """An inert stand-in for a pickled ``nn.Module``: it keeps the state (the module's ``__dict__``)."""

    origin = "module"

    def __setstate__(self, state: Any) -> None:
        if not isinstance(state, dict):
            raise ConfigError(f"a pickled {self.origin} has no module state")
        self.state = state

    def child(self, name: str) -> Any:
        return getattr(self, "state", {}).get("_modules", {}).get(name)

    def parameters(self) -> dict[str, torch.Tensor]:
        return dict(getattr(self, "state", {}).get("_parameters", {}))


def _stand_in(module: str, name: str) -> type[ModuleStandIn]:
    return type(name, (ModuleStandIn,), {"origin": f"{module}.{name}"})


WALKER_CLASSES = [
    ("src.noise_maker.walkers", "NonlinearWalker"),  # the paper's code
    ("src.noise_maker.walkers", "NonlinearWalk"),  # its copy of COP-Gen's class
    ("__main__", "NonlinearWalk"),  # COP-Gen's training script
]
MODULE_CLASSES = [
    ("torch.nn.parallel.data_parallel", "DataParallel"),
    ("torch.nn.parallel.distributed", "DistributedDataParallel"),
    ("torch.nn.modules.container", "Sequential"),
    ("torch.nn.modules.linear", "Linear"),
    ("torch.nn.modules.activation", "ReLU"),
]
STAND_INS = {key: _stand_in(*key) for key in WALKER_CLASSES + MODULE_CLASSES}
GENERATOR_TYPES = {"bigbigan": "bigbigan", "stylegan": "stylegan2"}  # the paper's g_type: our registry name


@dataclass(frozen=True)
class ForeignWalker:
    """What a released walker file holds, in our terms."""

    origin: str  # the pickled class
    state_dict: dict[str, torch.Tensor]  # our Walker's keys (net.0, net.2)
    dim: int  # coordinates read and moved
    hidden_dim: int
    chunks: tuple[int, int] | None  # (start, stop) of the paper's walker, None for COP-Gen's
    generator_type: str | None  # the paper's g_type: bigbigan | stylegan


def read_foreign_walker(path: str | Path) -> ForeignWalker:
    """The walker of a paper or COP-Gen file, read without running anything from it."""
    loaded = load_restricted_torch(path, STAND_INS)
    if not isinstance(loaded, dict) or "nn_walker" not in loaded:
        raise ConfigError(
            f"'{path}' has no 'nn_walker' entry: not a walker file of the paper's code or COP-Gen"
        )
    module = loaded["nn_walker"]
    for _ in range(2):  # DataParallel / DistributedDataParallel around the walker (never nested deeper)
        if isinstance(module, ModuleStandIn) and module.origin.endswith("DataParallel"):
            module = module.child("module")
    if not isinstance(module, ModuleStandIn) or module.origin.rsplit(".", 1)[-1] not in (
        "NonlinearWalker",
        "NonlinearWalk",
    ):
        kind = module.origin if isinstance(module, ModuleStandIn) else type(module).__name__
        raise ConfigError(f"'{path}': nn_walker is a {kind}, not the paper's or COP-Gen's nonlinear walker")
    try:
        return _parse_walker(module)
    except ConfigError as err:
        raise ConfigError(f"'{path}': {err}") from None


def _parse_walker(module: ModuleStandIn) -> ForeignWalker:
    """The MLP's weights and the paper's group facts, every value checked (a file can hold anything)."""
    mlp = module.child("walker")
    layers = mlp.state.get("_modules", {}) if isinstance(mlp, ModuleStandIn) else {}
    if list(layers) != ["0", "1", "2"] or not all(isinstance(m, ModuleStandIn) for m in layers.values()):
        raise ConfigError("the walker's MLP is not a Sequential of three layers")
    kinds = [layers[k].origin.rsplit(".", 1)[-1] for k in ("0", "1", "2")]
    if kinds != ["Linear", "ReLU", "Linear"]:
        raise ConfigError(
            f"the walker's MLP is {kinds}, expected Linear-ReLU-Linear (a linear walker is not supported)"
        )
    first, last = layers["0"].parameters(), layers["2"].parameters()
    w0, b0, w2, b2 = (p.get(k) for p in (first, last) for k in ("weight", "bias"))
    if not all(isinstance(t, torch.Tensor) and t.is_floating_point() for t in (w0, b0, w2, b2)):
        raise ConfigError("the walker's Linear layers need floating-point weights and biases")
    assert w0 is not None and b0 is not None and w2 is not None and b2 is not None
    if w0.ndim != 2:
        raise ConfigError(f"the walker's first weight has shape {tuple(w0.shape)}, expected a matrix")
    hidden, dim = w0.shape
    if w2.shape != (dim, hidden) or b0.shape != (hidden,) or b2.shape != (dim,):
        raise ConfigError(f"the walker's layers do not fit together ({tuple(w0.shape)}, {tuple(w2.shape)})")
    state = module.state
    chunks = None
    if "start" in state or "stop" in state:
        start, stop = state.get("start"), state.get("stop")
        if not all(isinstance(v, int) and not isinstance(v, bool) for v in (start, stop)):
            raise ConfigError(f"the walker's chunks start={start!r}, stop={stop!r} are not integers")
        chunks = (int(start), int(stop))  # type: ignore[arg-type]
    g_type = state.get("g_type")
    if g_type is not None and g_type not in GENERATOR_TYPES:
        raise ConfigError(f"the walker's g_type {g_type!r} is none of {sorted(GENERATOR_TYPES)}")
    state_dict = {
        "net.0.weight": w0.detach().float(),
        "net.0.bias": b0.detach().float(),
        "net.2.weight": w2.detach().float(),
        "net.2.bias": b2.detach().float(),
    }
    return ForeignWalker(module.origin, state_dict, int(dim), int(hidden), chunks, g_type)


def _level_name(generator: MultiLatentGenerator, indices: tuple[int, ...]) -> str:
    """The generator's own name for these levels (a level or a group), else an ad-hoc ``a+b+c`` group."""
    if len(indices) == 1:
        return generator.level_names[indices[0]]
    for name, group in generator.groups.items():
        if tuple(group) == indices:
            return name
    return "+".join(generator.level_names[i] for i in indices)


def convert_walker(
    foreign: ForeignWalker, generator: MultiLatentGenerator, levels: str | None, generator_name: str
) -> tuple[Walker, dict[str, Any]]:
    """Our walker and its meta (level, indices, generator) for ``generator``; the group comes from the file
    (the paper's start/stop), from ``levels``, or is the whole latent for COP-Gen's navigator."""
    expected = GENERATOR_TYPES.get(foreign.generator_type or "")
    if expected is not None and expected != generator.arch["name"]:
        raise ConfigError(
            f"the walker was trained on {foreign.generator_type}, not on {generator.arch['name']}: "
            f"pass --generator {expected}"
        )
    if levels is not None:
        indices = generator.resolve(levels)
    elif foreign.chunks is not None:
        start, stop = foreign.chunks
        if not 0 <= start < stop <= len(generator.levels):
            raise ConfigError(
                f"the walker's chunks {start}_{stop} do not fit the generator's {len(generator.levels)} levels"
            )
        indices = tuple(range(start, stop))
    else:
        indices = tuple(range(len(generator.levels)))
    coords = len(generator.coords_of(indices))
    if coords != foreign.dim:
        raise ConfigError(
            f"the walker reads {foreign.dim} coordinates; levels {_level_name(generator, indices)} of "
            f"{generator.arch['name']} have {coords} (name the levels it was trained on with --levels)"
        )
    with torch.random.fork_rng(devices=[]):  # the weights come from the file
        walker = Walker(foreign.dim, foreign.hidden_dim)
    walker.load_state_dict(foreign.state_dict)
    meta = {
        "level": _level_name(generator, indices),
        "indices": list(indices),
        "generator": {"name": generator_name, "arch": generator.arch},
        "imported_from": {"class": foreign.origin, "chunks": foreign.chunks},
    }
    return walker.eval(), meta


def _arch_option(text: str) -> tuple[str, Any]:
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"expected key=value, got '{text}'")
    return key, yaml.safe_load(value)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m solo_mlvgm.views.import_walker",
        description="Convert a walker of the paper's code or COP-Gen into a walker.pt for learned views.",
    )
    parser.add_argument("source", help="the released walker file (.pth with an 'nn_walker' entry)")
    parser.add_argument("out", help="the walker.pt to write (views.perturb.<level>.walker=<out>)")
    parser.add_argument("--generator", required=True, help="the generator it moves: bigbigan, stylegan2, ...")
    parser.add_argument(
        "--checkpoint", default=None, help="the generator's checkpoint, when its architecture is read from it"
    )
    parser.add_argument(
        "--arch",
        action="append",
        type=_arch_option,
        default=[],
        metavar="KEY=VALUE",
        help="a generator setting as in the run's generator config (repeatable), e.g. --arch resize=128",
    )
    parser.add_argument(
        "--levels", default=None, help="the level or group it was trained on, when not in the file"
    )
    args = parser.parse_args(argv)
    try:
        out = Path(args.out)
        if out.exists():
            raise ConfigError(f"'{out}' exists: choose a new file name (nothing is overwritten)")
        foreign = read_foreign_walker(args.source)
        try:
            generator = build_generator(args.generator, args.checkpoint, **dict(args.arch))
        except (TypeError, ValueError) as err:
            raise ConfigError(f"generator '{args.generator}' with {dict(args.arch)}: {err}") from None
        walker, meta = convert_walker(foreign, generator, args.levels, args.generator)
        out.parent.mkdir(parents=True, exist_ok=True)
        save_walker(out, walker, meta)
    except ConfigError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(
        f"walker of {foreign.origin} ({foreign.dim} coordinates, hidden {foreign.hidden_dim}) on "
        f"{args.generator} levels {meta['level']}: {out}\n"
        f"use it in a views file (views_file=...): perturb: {{{meta['level']}: {{type: learned, walker: {out}}}}}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
