"""Entry-point glue: user errors become one line on stderr and exit code 2, before any work starts."""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import TypeVar

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
