"""Entry-point glue: user errors become one line on stderr and exit code 2, before any work starts."""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig
from omegaconf.errors import OmegaConfBaseException

from solo_mlvgm.errors import ConfigError

T = TypeVar("T")


def run_or_exit(fn: Callable[[], T]) -> T:
    try:
        return fn()
    except (ConfigError, OmegaConfBaseException) as err:
        message = str(err).splitlines()[0] if str(err) else type(err).__name__
        print(f"error: {message}", file=sys.stderr)
        raise SystemExit(2) from None


def run_in_output_dir(fn: Callable[[DictConfig, Path], T], cfg: DictConfig) -> T:
    """``fn(cfg, run_dir)`` in the hydra app's output folder (the run folder), user errors as one line."""
    run_dir = Path(HydraConfig.get().runtime.output_dir)
    return run_or_exit(lambda: fn(cfg, run_dir))
