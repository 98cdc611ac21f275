"""Collapse detection for any method with a ``projector`` (ours and solo-learn's alike): two signals.

``collapse_std``, the signal of the SimSiam paper (Chen & He, 2021, Sec. 4.1): the standard deviation over
the batch of the l2-normalised projector output, per dimension, averaged over dimensions, times sqrt(d),
so one threshold serves every output size: about 1 when the outputs spread over the sphere, 0 when every
image is mapped to the same point, never above 1. Outputs spread over k of d directions read about
sqrt(k/d), so it flags total collapse, and collapse onto a few directions only when d is large.

``feature_rank``, RankMe (Garrido et al., 2023): the effective rank of the *backbone* features over a
window of training batches (the exponential of the entropy of their normalised singular values), as a
fraction of the most it can be (feature dimensions or samples, the fewer). It catches what the first
misses: runs whose projector output stays spread while the backbone's features shrink onto a few
directions, which probe below a randomly initialised backbone (README, "Collapse detection"). Healthy
runs dip early and recover (convnet6 on the toy world: from about 0.6 down to 0.2, back up to 0.3), so
it is judged at the end of training, on its mean over the last ``RANK_WINDOWS`` windows (a trailing
window of less than half the batches is left out, unless it is the only one). Features that are not
finite (a diverged run) read 0. It is written to the loggers once per window, at the window's last step.

Forward hooks on ``pl_module.projector`` and ``pl_module.backbone`` read the first training-mode output of
every step (the first large crop's, for solo-learn's methods; momentum copies are other modules and are not
read), so no method's code is touched. The host reads the signals once per ``window`` training batches (no
per-step device sync). The first window whose ``collapse_std`` is below its threshold prints one warning
line; so does the end of a run whose final ``feature_rank`` is below its own. ``summary()`` and
``feature_rank_summary()`` are what the run records in ``pretrain.json``. Methods without a
``projector`` (solo-learn's DINO and MAE, our supervised baseline, whose features rightly span about as
many directions as there are classes) are not monitored, and say so. Under DDP each process judges its
own features and process 0 reports.
"""

from __future__ import annotations

import math
import sys
from dataclasses import dataclass, field
from typing import Any

import lightning.pytorch as pl
import torch
import torch.nn.functional as F
from lightning.pytorch.callbacks import Callback
from lightning.pytorch.utilities import rank_zero_only
from torch import Tensor, nn
from tqdm import tqdm

from solo_mlvgm.errors import ConfigError

COLLAPSE_METRIC = "collapse_std"
RANK_METRIC = "feature_rank"
DEFAULT_THRESHOLD = 0.1
DEFAULT_RANK_THRESHOLD = 0.2
RANK_WINDOWS = 5  # the feature rank's final value: its mean over this many last windows


def normalised_std(z: Tensor) -> Tensor:
    """Mean per-dimension std of the l2-normalised rows of ``z`` (batch x d), times sqrt(d): in [0, 1]."""
    z = F.normalize(z.detach().float().flatten(1), dim=1)
    return z.std(dim=0, correction=0).mean() * math.sqrt(z.shape[1])


def effective_rank_fraction(features: Tensor) -> Tensor:
    """RankMe of ``features`` (samples x d) over min(samples, d): in (0, 1], 1 for isotropic features."""
    f = features.detach().float().flatten(1)
    if not bool(torch.isfinite(f).all()):  # a diverged run; svdvals would raise on the CPU
        return f.new_zeros(())
    s = torch.linalg.svdvals(f - f.mean(dim=0))
    p = s / s.sum().clamp_min(1e-12) + 1e-7  # RankMe's epsilon: a zero matrix reads rank 1, not NaN
    return torch.exp(-(p * p.log()).sum()) / min(f.shape)


def check_threshold(threshold: object, key: str = "collapse_threshold", healthy: str = "about 1") -> float:
    """A threshold setting as a float in (0, 1), or one ``ConfigError`` line naming ``key``."""
    try:
        value = float(threshold)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        value = math.nan
    if not 0 < value < 1:
        raise ConfigError(
            f"{key} must be in (0, 1) (the signal is {healthy} when healthy), got {threshold!r}"
        )
    return value


def check_rank_threshold(threshold: object) -> float:
    return check_threshold(
        threshold, "feature_rank_threshold", "a fraction of the feature dimensions, 0.3 or more"
    )


@dataclass
class _Track:
    """One signal's windowed values: the final one (the mean of the last ``average`` windows), the lowest,
    and the step of the first window below the threshold."""

    metric: str
    threshold: float
    average: int = 1
    lowest: float | None = None
    first_below_step: int | None = None
    recent: list[float] = field(default_factory=list)

    @property
    def last(self) -> float | None:
        return sum(self.recent) / len(self.recent) if self.recent else None

    def add(self, value: float, step: int) -> bool:
        """Record a window's value; True the first time it falls below the threshold."""
        self.recent = [*self.recent, value][-self.average :]
        self.lowest = value if self.lowest is None else min(self.lowest, value)
        if value < self.threshold and self.first_below_step is None:
            self.first_below_step = step
            return True
        return False

    def summary(self) -> dict[str, Any]:
        return {
            "metric": self.metric,
            "monitored": True,
            "threshold": self.threshold,
            "final": self.last,
            "lowest": self.lowest,
            "collapsed": self.last is not None and self.last < self.threshold,
            "first_below_step": self.first_below_step,
        }


class CollapseMonitor(Callback):
    """Logs ``collapse_std`` every step and ``feature_rank`` every window; warns once per signal."""

    def __init__(
        self,
        threshold: object = DEFAULT_THRESHOLD,
        window: int = 20,
        rank_threshold: object = DEFAULT_RANK_THRESHOLD,
    ) -> None:
        self.std = _Track(COLLAPSE_METRIC, check_threshold(threshold))
        self.rank = _Track(RANK_METRIC, check_rank_threshold(rank_threshold), RANK_WINDOWS)
        self.window = int(window)
        self.monitored = False
        self.started = False
        self._step_value: Tensor | None = None
        self._step_features: Tensor | None = None
        self._window_sum: Tensor | None = None
        self._window_features: list[Tensor] = []
        self._window_count = 0
        self._handles: list[Any] = []

    # ------------------------------------------------------------ hooks
    def on_fit_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        projector, backbone = getattr(pl_module, "projector", None), getattr(pl_module, "backbone", None)
        self.started = True
        self._step_value, self._step_features, self._window_sum = None, None, None
        self._window_features, self._window_count = [], 0
        self.monitored = isinstance(projector, nn.Module)
        if isinstance(projector, nn.Module):
            self._handles.append(projector.register_forward_hook(self._capture_projection))
            if isinstance(backbone, nn.Module):
                self._handles.append(backbone.register_forward_hook(self._capture_features))

    def on_fit_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._close_window(trainer)
        final = self.rank.last
        if final is not None and final < self.rank.threshold:
            _warn(
                f"warning: dimensional collapse: at the end of training the backbone features span an "
                f"effective rank of {final:.3f} of their dimensions (< feature_rank_threshold "
                f"{self.rank.threshold}; mean of the last {len(self.rank.recent)} windows), so they may "
                "probe below a random backbone: check with main_linear.py",
            )

    def teardown(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        for handle in self._handles:  # also when fit raised
            handle.remove()
        self._handles = []

    def _capture_projection(self, module: nn.Module, inputs: Any, output: Any) -> None:
        if module.training and self._step_value is None and isinstance(output, Tensor) and output.ndim == 2:
            if output.shape[0] > 1:
                self._step_value = normalised_std(output)

    def _capture_features(self, module: nn.Module, inputs: Any, output: Any) -> None:
        if (
            module.training
            and self._step_features is None
            and isinstance(output, Tensor)
            and output.ndim == 2
        ):
            self._step_features = output.detach().clone()  # not a view that pins a larger tensor (ViT)

    def on_train_batch_end(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        value, self._step_value = self._step_value, None
        features, self._step_features = self._step_features, None
        if value is None:
            return
        pl_module.log(COLLAPSE_METRIC, value)
        self._window_sum = value if self._window_sum is None else self._window_sum + value
        if features is not None:
            self._window_features.append(features)
        self._window_count += 1
        if self._window_count >= self.window:
            rank = self._close_window(trainer)
            if rank is not None:
                _log_window(trainer, rank)

    def _close_window(self, trainer: pl.Trainer) -> float | None:
        """Read the window's signals on the host, warn where one fell; the window's feature rank."""
        if self._window_sum is None or self._window_count == 0:
            return None
        step = int(trainer.global_step)
        mean = float(self._window_sum) / self._window_count  # one host read per window
        if self.std.add(mean, step):
            _warn(
                f"warning: representation collapse at step {step}: the projector output's normalised std "
                f"is {mean:.3f} (< collapse_threshold {self.std.threshold}; about 1 when healthy), so the "
                "backbone is likely learning nothing useful",
            )
        rank = None
        full_enough = 2 * len(self._window_features) >= self.window or self.rank.last is None
        if self._window_features and full_enough:
            rank = float(effective_rank_fraction(torch.cat(self._window_features)))
            self.rank.add(rank, step)
        self._window_sum, self._window_features, self._window_count = None, [], 0
        return rank

    # --------------------------------------------------------- results
    def summary(self) -> dict[str, Any]:
        """What ``pretrain.json`` records under ``collapse``: the projector signal at the end, its lowest
        window, whether it fell; ``feature_rank_summary()`` is the backbone's."""
        return self._summary(self.std)

    def feature_rank_summary(self) -> dict[str, Any]:
        return self._summary(self.rank)

    def _summary(self, track: _Track) -> dict[str, Any]:
        if not self.started:  # e.g. strategy=ddp_spawn: training ran in other processes
            return {"metric": track.metric, "monitored": False, "reason": "no training ran in this process"}
        if not self.monitored:
            return {"metric": track.metric, "monitored": False, "reason": "the method has no projector"}
        if track.last is None and track is self.rank:
            return {"metric": track.metric, "monitored": False, "reason": "no 2-d backbone output was seen"}
        return track.summary()

    def state_dict(self) -> dict[str, Any]:
        return {
            name: {"first_below_step": t.first_below_step, "lowest": t.lowest, "recent": t.recent}
            for name, t in (("std", self.std), ("rank", self.rank))
        }

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        if "std" not in state_dict:  # a checkpoint from before the feature rank: the projector signal only
            state_dict = {"std": state_dict}
        for name, track in (("std", self.std), ("rank", self.rank)):
            saved = state_dict.get(name, {})
            track.first_below_step = saved.get("first_below_step")
            track.lowest = saved.get("lowest")
            last = saved.get("last")  # checkpoints written before ``recent`` was kept
            track.recent = list(saved.get("recent", [] if last is None else [last]))


@rank_zero_only
def _log_window(trainer: pl.Trainer, rank: float) -> None:
    """One row per window in the run's logs (``self.log`` would repeat it at every logging step)."""
    for logger in trainer.loggers:
        logger.log_metrics({RANK_METRIC: rank}, step=max(0, int(trainer.global_step) - 1))


@rank_zero_only
def _warn(line: str) -> None:
    """One line on stderr, on a line of its own even while a progress bar is drawn (tqdm lifts the bars,
    writes, and draws them again)."""
    tqdm.write(line, file=sys.stderr)
