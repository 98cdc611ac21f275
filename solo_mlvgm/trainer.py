"""A Lightning trainer from a ``TrainerSpec``, without Lightning's device banner before our own messages."""

from __future__ import annotations

import contextlib
import logging
import math
import sys
import time
from collections.abc import Iterator
from typing import Any

import lightning.pytorch as pl
from lightning.fabric.utilities.exceptions import MisconfigurationException
from lightning.pytorch.utilities import rank_zero_only

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
            settings: dict[str, Any] = {"enable_model_summary": False, "num_sanity_val_steps": 0}
            settings.update(spec.extra)  # further Trainer arguments a solo-learn config file sets
            settings.update(kwargs)
            return pl.Trainer(
                accelerator=spec.accelerator,
                devices=spec.devices,
                precision=spec.precision,  # type: ignore[arg-type]  # Lightning checks the string itself
                strategy=spec.strategy,
                **settings,
            )
        except (MisconfigurationException, ValueError, TypeError) as err:
            raise ConfigError(f"trainer settings: {err}".splitlines()[0]) from None


def device_label(trainer: pl.Trainer) -> str:
    """e.g. ``cuda x 1``: the accelerator's kind and the number of devices."""
    kind = type(trainer.accelerator).__name__.removesuffix("Accelerator").lower()
    return f"{kind} x {trainer.num_devices}"


class PlainProgress(pl.Callback):
    """Progress as plain lines (step, loss, elapsed, remaining) every ``every_seconds``, for output that is
    not a terminal (a log file, a batch job), where a live progress bar would print nothing until the end."""

    def __init__(self, every_seconds: float = 30.0) -> None:
        self.every_seconds = every_seconds
        self._start = 0.0
        self._last = 0.0
        self._first_step = 0  # a resumed run starts past 0: only this process's steps time the rest
        self._total = 0

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._start = self._last = time.perf_counter()
        self._first_step = trainer.global_step
        estimate = trainer.estimated_stepping_batches  # once: Lightning recomputes it on every access
        self._total = int(estimate) if math.isfinite(estimate) and estimate > 0 else 0

    @rank_zero_only
    def on_train_batch_end(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        now = time.perf_counter()
        total, step = self._total, trainer.global_step
        if now - self._last < self.every_seconds and step < total:
            return
        self._last = now
        elapsed = now - self._start
        left = elapsed / max(step - self._first_step, 1) * max(total - step, 0)
        loss = trainer.callback_metrics.get("train_loss")
        shown = f", loss {float(loss):.4f}" if loss is not None else ""
        print(
            f"step {step}/{total}{shown}, {elapsed:.0f} s elapsed, about {left:.0f} s left",
            flush=True,
        )


def progress_settings(every_seconds: float = 30.0) -> dict[str, Any]:
    """Trainer keyword arguments for progress: Lightning's live bar on a terminal, else ``PlainProgress``."""
    if sys.stdout.isatty():
        return {"enable_progress_bar": True, "callbacks": []}
    return {"enable_progress_bar": False, "callbacks": [PlainProgress(every_seconds)]}
