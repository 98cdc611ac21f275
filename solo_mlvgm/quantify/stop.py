"""The automatic gamma stop: when the smoothed InfoNCE loss of a level first reaches gamma, its walker is done.

The paper stops each level's training when the loss is ~gamma, so every level's walker destroys about the
same information (an equal MI shift); the official code chose that checkpoint by hand afterwards. Here the
rule runs online:

1. the rule is *armed* once the smoothed loss has been below ``arm_below`` (default gamma / 2): at the start
   the encoder has not yet learned to match views, and its loss (~log(2B - 1)) says nothing about the walker;
2. once armed, it *fires* at the first step whose smoothed loss is >= gamma - tolerance.

A level whose rule never fires within the step budget is reported unused, with its best (highest) smoothed
loss; whether it was ever armed is reported too (never armed means the encoder, not the level, failed).
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

from solo_mlvgm.errors import ConfigError


@dataclass
class GammaStop:
    gamma: float = 1.0
    tolerance: float = 0.05
    smoothing: int = 3  # moving-average window, in steps
    arm_below: float | None = None  # default gamma / 2

    armed: bool = field(default=False, init=False)
    fired_at: int | None = field(default=None, init=False)
    smoothed: float = field(default=float("nan"), init=False)
    best: float = field(default=float("-inf"), init=False)  # highest smoothed loss once armed
    _window: deque = field(init=False, repr=False)

    def __post_init__(self) -> None:
        if not self.gamma > 0:
            raise ConfigError(f"gamma must be > 0, got {self.gamma}")
        if not 0 <= self.tolerance < self.gamma:
            raise ConfigError(f"tolerance must be in [0, gamma={self.gamma}), got {self.tolerance}")
        if int(self.smoothing) < 1:
            raise ConfigError(f"smoothing must be >= 1 step, got {self.smoothing}")
        if self.arm_below is None:
            self.arm_below = self.gamma / 2
        if not 0 < self.arm_below <= self.gamma - self.tolerance:
            raise ConfigError(
                f"arm_below must be in (0, gamma - tolerance = {self.gamma - self.tolerance}], got {self.arm_below}"
            )
        self._window = deque(maxlen=int(self.smoothing))

    @property
    def fired(self) -> bool:
        return self.fired_at is not None

    def update(self, step: int, loss: float) -> bool:
        """Feed the loss of ``step``; True exactly once, at the step where the rule fires."""
        if self.fired:
            return False
        self._window.append(float(loss))
        self.smoothed = sum(self._window) / len(self._window)
        if not self.armed:
            assert self.arm_below is not None  # set in __post_init__
            self.armed = self.smoothed < self.arm_below
            if not self.armed:
                return False
        # From the arming step on, best is the highest smoothed loss; arm_below <= gamma - tolerance, so the
        # arming step itself never fires.
        self.best = max(self.best, self.smoothed)
        if self.smoothed >= self.gamma - self.tolerance:
            self.fired_at = int(step)
            return True
        return False
