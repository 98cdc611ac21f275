"""Wall-clock timing for speed figures: a warm-up call excluded, the device synchronised around every
clock read (CUDA runs asynchronously), the median and spread over repeats."""

from __future__ import annotations

import platform
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class Timing:
    median: float  # seconds per call
    low: float  # fastest call
    high: float  # slowest call
    repeats: int

    def rate(self, items: int) -> float:
        """Items per second at the median."""
        return items / self.median


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_calls(fn: Callable[[], object], repeats: int, device: torch.device, warmup: int = 1) -> Timing:
    """Seconds per call of ``fn`` over ``repeats`` calls after ``warmup`` untimed ones."""
    if repeats < 1:
        raise ValueError(f"repeats must be >= 1, got {repeats}")
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        synchronize(device)
        start = time.perf_counter()
        fn()
        synchronize(device)
        times.append(time.perf_counter() - start)
    return Timing(statistics.median(times), min(times), max(times), repeats)


def median_seconds(fn: Callable[[], object], repeats: int, device: torch.device) -> float:
    return time_calls(fn, repeats, device).median


def device_name(device: torch.device) -> str:
    """The GPU's name, or the CPU model (for the figures' headers)."""
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    try:
        with open("/proc/cpuinfo") as f:
            return next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        return platform.processor() or "cpu"
