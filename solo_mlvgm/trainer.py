"""A Lightning trainer from a ``TrainerSpec``, without Lightning's device banner before our own messages."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from typing import Any

import lightning.pytorch as pl
from lightning.fabric.utilities.exceptions import MisconfigurationException

from solo_mlvgm.errors import ConfigError
from solo_mlvgm.settings import TrainerSpec


@contextlib.contextmanager
def quiet_lightning() -> Iterator[None]:
    """Silence Lightning's device banner: it would precede a one-line config error, and our own summary
    names the device."""
    banner = logging.getLogger("lightning.pytorch.utilities.rank_zero")
    level = banner.level
    banner.setLevel(logging.WARNING)
    try:
        yield
    finally:
        banner.setLevel(level)


def make_trainer(spec: TrainerSpec, **kwargs: Any) -> pl.Trainer:
    """A Trainer on the spec's device settings (accelerator, devices, precision, strategy) plus ``kwargs``;
    bad settings raise ``ConfigError`` without Lightning's device banner."""
    with quiet_lightning():
        try:
            return pl.Trainer(
                accelerator=spec.accelerator,
                devices=spec.devices,
                precision=spec.precision,  # type: ignore[arg-type]  # Lightning checks the string itself
                strategy=spec.strategy,
                enable_model_summary=False,
                num_sanity_val_steps=0,
                **kwargs,
            )
        except (MisconfigurationException, ValueError, TypeError) as err:
            raise ConfigError(f"trainer settings: {err}".splitlines()[0]) from None


def device_label(trainer: pl.Trainer) -> str:
    """e.g. ``cuda x 1``: the accelerator's kind and the number of devices."""
    kind = type(trainer.accelerator).__name__.removesuffix("Accelerator").lower()
    return f"{kind} x {trainer.num_devices}"
