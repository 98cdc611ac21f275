"""Walkers: learned latent perturbations T(z) = z + p(z), with p a small MLP on one level's base coordinates.

A walker is trained by the MI method (``mi_quant``) and reused as a learned view. It is stored as a state dict
plus the facts needed to rebuild and check it (level, dimensions, the generator it was trained on), never as
a pickled module, and read back with ``torch.load(weights_only=True)``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from solo_mlvgm.errors import ConfigError
from solo_mlvgm.runs import save_torch

WALKER_FORMAT = "solo_mlvgm.walker/1"


class Walker(nn.Module):
    """p(z): Linear(dim, hidden) - ReLU - Linear(hidden, dim), initialised so that p(z) is ~0 (T = identity).

    The first layer keeps PyTorch's default initialisation, so its features are informative from the start;
    the output layer starts tiny (weights N(0, 1e-4), bias U(+-1e-4)), so the first views are identical up
    to noise far below any pixel change, as the paper requires.
    """

    def __init__(self, dim: int, hidden_dim: int | None = None, init_scale: float = 1e-4) -> None:
        super().__init__()
        if dim < 1:
            raise ConfigError(f"walker dim must be >= 1, got {dim}")
        hidden_dim = int(hidden_dim or dim)
        if hidden_dim < 1:
            raise ConfigError(f"walker hidden_dim must be >= 1, got {hidden_dim}")
        self.dim, self.hidden_dim = int(dim), hidden_dim
        hidden, out = nn.Linear(dim, hidden_dim), nn.Linear(hidden_dim, dim)
        self.net = nn.Sequential(hidden, nn.ReLU(), out)
        nn.init.normal_(out.weight, std=init_scale)
        nn.init.uniform_(out.bias, -init_scale, init_scale)

    def forward(self, z: Tensor) -> Tensor:
        """The perturbation p(z) (not z + p(z)): what is added to the level's base coordinates."""
        return self.net(z)

    def delta(self, z: Tensor, generator: torch.Generator | None = None) -> Tensor:
        """p(z) as a view's delta (``views.pairs``): the walker in training and in Monte Carlo, used as is
        (deterministic, so ``generator`` is unused)."""
        return self(z)


def save_walker(path: str | Path, walker: Walker, meta: dict[str, Any]) -> Path:
    """Write the walker's state dict with ``meta`` (level, indices, generator name and arch, stop facts)."""
    payload = {
        "format": WALKER_FORMAT,
        "dim": walker.dim,
        "hidden_dim": walker.hidden_dim,
        "state_dict": {k: v.detach().cpu() for k, v in walker.state_dict().items()},
        "meta": meta,
    }
    return save_torch(path, payload)


def load_walker(path: str | Path) -> tuple[Walker, dict[str, Any]]:
    """(walker in eval mode without gradients, its meta); a missing or foreign file is a ConfigError."""
    path = Path(path)
    if path.is_dir():
        path = path / "walker.pt"
    if not path.is_file():
        raise ConfigError(f"no walker at '{path}' (expected a walker.pt written by main_quantify.py)")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # noqa: BLE001 - any unreadable file is a user error here
        raise ConfigError(f"'{path}' is not a walker file: {err}".splitlines()[0]) from None
    if not isinstance(payload, dict) or payload.get("format") != WALKER_FORMAT:
        raise ConfigError(f"'{path}' is not a walker file written by main_quantify.py")
    with torch.random.fork_rng(devices=[]):  # the weights come from the file: draw nothing from the run's RNG
        walker = Walker(int(payload["dim"]), int(payload["hidden_dim"]))
    walker.load_state_dict(payload["state_dict"])
    walker.eval().requires_grad_(False)
    return walker, dict(payload["meta"])
