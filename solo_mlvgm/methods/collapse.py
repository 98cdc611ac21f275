"""Collapse detection for any method with a ``projector`` (ours and solo-learn's alike).

The signal is the one of the SimSiam paper (Chen & He, 2021, Sec. 4.1): the standard deviation over the
batch of the l2-normalised projector output, per dimension, averaged over dimensions. Outputs spread over
the sphere give about 1/sqrt(d); a collapsed representation (every image mapped to the same point) gives 0.
We report it times sqrt(d), so one threshold serves every output size: about 1 when healthy, 0 collapsed,
and never above 1.

A forward hook on ``pl_module.projector`` reads the first training-mode output of every step (the first
large crop's, for solo-learn's methods; a momentum projector is another module and is not read), so the
method's code is untouched. The value is logged as ``collapse_std``; the host reads it once per ``window``
training batches (no per-step device sync), and the first window whose mean falls below the threshold
prints one warning line. ``summary()`` is what the run records in ``pretrain.json``.

Between the two extremes the value depends on d: outputs spread over k of d directions read about
sqrt(k/d), so the default threshold flags total collapse, and collapse to a few directions only when d is
large. Methods without a ``projector`` (solo-learn's DINO and MAE, our supervised baseline) are not
monitored, and say so.
"""

from __future__ import annotations

import math
import sys
from typing import Any

import lightning.pytorch as pl
import torch.nn.functional as F
from lightning.pytorch.callbacks import Callback
from lightning.pytorch.utilities import rank_zero_only
from torch import Tensor, nn
from tqdm import tqdm

from solo_mlvgm.errors import ConfigError

COLLAPSE_METRIC = "collapse_std"
DEFAULT_THRESHOLD = 0.1


def normalised_std(z: Tensor) -> Tensor:
    """Mean per-dimension std of the l2-normalised rows of ``z`` (batch x d), times sqrt(d): in [0, 1]."""
    z = F.normalize(z.detach().float().flatten(1), dim=1)
    return z.std(dim=0, correction=0).mean() * math.sqrt(z.shape[1])


def check_threshold(threshold: object) -> float:
    """``collapse_threshold`` as a float in (0, 1), or one ``ConfigError`` line."""
    try:
        value = float(threshold)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        value = math.nan
    if not 0 < value < 1:
        raise ConfigError(
            f"collapse_threshold must be in (0, 1) (the normalised std is about 1 when healthy), got {threshold!r}"
        )
    return value


class CollapseMonitor(Callback):
    """Logs ``collapse_std`` every step and warns once when its windowed mean falls below ``threshold``."""

    def __init__(self, threshold: object = DEFAULT_THRESHOLD, window: int = 20) -> None:
        self.threshold = check_threshold(threshold)
        self.window = int(window)
        self.monitored = False
        self.started = False
        self.first_below_step: int | None = None
        self.last: float | None = None
        self.lowest: float | None = None
        self._step_value: Tensor | None = None
        self._window_sum: Tensor | None = None
        self._window_count = 0
        self._handle: Any = None

    # ------------------------------------------------------------ hooks
    def on_fit_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        projector = getattr(pl_module, "projector", None)
        self.started = True
        self.monitored = isinstance(projector, nn.Module)
        if isinstance(projector, nn.Module):
            self._handle = projector.register_forward_hook(self._capture)

    def on_fit_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._close_window(trainer)

    def teardown(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        if self._handle is not None:  # also when fit raised
            self._handle.remove()
            self._handle = None

    def _capture(self, module: nn.Module, inputs: Any, output: Any) -> None:
        if module.training and self._step_value is None and isinstance(output, Tensor) and output.ndim == 2:
            if output.shape[0] > 1:
                self._step_value = normalised_std(output)

    def on_train_batch_end(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        value, self._step_value = self._step_value, None
        if value is None:
            return
        pl_module.log(COLLAPSE_METRIC, value)
        self._window_sum = value if self._window_sum is None else self._window_sum + value
        self._window_count += 1
        if self._window_count >= self.window:
            self._close_window(trainer)

    def _close_window(self, trainer: pl.Trainer) -> None:
        if self._window_sum is None or self._window_count == 0:
            return
        mean = float(self._window_sum) / self._window_count  # one host read per window
        self._window_sum, self._window_count = None, 0
        self.last = mean
        self.lowest = mean if self.lowest is None else min(self.lowest, mean)
        if mean < self.threshold and self.first_below_step is None:
            step = self.first_below_step = int(trainer.global_step)
            _warn(
                f"warning: representation collapse at step {step}: the projector output's normalised std "
                f"is {mean:.3f} (< collapse_threshold {self.threshold}; about 1 when healthy), so the "
                "backbone is likely learning nothing useful",
            )

    # --------------------------------------------------------- results
    def summary(self) -> dict[str, Any]:
        """What ``pretrain.json`` records: the signal at the end, its lowest window, whether it fell."""
        if not self.started:  # e.g. strategy=ddp_spawn: training ran in other processes
            return {
                "metric": COLLAPSE_METRIC,
                "monitored": False,
                "reason": "no training ran in this process",
            }
        if not self.monitored:
            return {"metric": COLLAPSE_METRIC, "monitored": False, "reason": "the method has no projector"}
        return {
            "metric": COLLAPSE_METRIC,
            "monitored": True,
            "threshold": self.threshold,
            "final": self.last,
            "lowest": self.lowest,
            "collapsed": self.last is not None and self.last < self.threshold,
            "first_below_step": self.first_below_step,
        }

    def state_dict(self) -> dict[str, Any]:
        return {"first_below_step": self.first_below_step, "last": self.last, "lowest": self.lowest}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.first_below_step = state_dict.get("first_below_step")
        self.last = state_dict.get("last")
        self.lowest = state_dict.get("lowest")


@rank_zero_only
def _warn(line: str) -> None:
    """One line on stderr, on a line of its own even while a progress bar is drawn (tqdm lifts the bars,
    writes, and draws them again)."""
    tqdm.write(line, file=sys.stderr)
