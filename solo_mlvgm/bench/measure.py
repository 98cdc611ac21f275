"""How a benchmark point is measured: throughput over timed windows after a warm-up (the device
synchronised before every clock read), peak host and device memory sampled alongside, and energy/CO2 from
codecarbon's offline tracker."""

from __future__ import annotations

import contextlib
import logging
import os
import statistics
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import torch

from solo_mlvgm.timing import synchronize


@dataclass(frozen=True)
class Throughput:
    """Training samples per second: the median over windows, and the slowest and fastest window."""

    median: float
    low: float
    high: float
    windows: int
    samples: int  # samples processed in the timed windows
    seconds: float  # wall time of the timed windows


def measure_throughput(
    step: Callable[[], object], batch_size: int, warmup: int, steps: int, windows: int, device: torch.device
) -> Throughput:
    """Run ``warmup`` untimed calls, then ``windows`` windows of ``steps`` calls each; a window's rate is its
    samples over its wall time, so loader prefetching and asynchronous devices are counted as they run."""
    if steps < 1 or windows < 1 or warmup < 0:
        raise ValueError(f"steps and windows must be >= 1 and warmup >= 0, got {steps}, {windows}, {warmup}")
    for _ in range(warmup):
        step()
    rates, total = [], 0.0
    for _ in range(windows):
        synchronize(device)
        start = time.perf_counter()
        for _ in range(steps):
            step()
        synchronize(device)
        elapsed = time.perf_counter() - start
        total += elapsed
        rates.append(batch_size * steps / elapsed)
    return Throughput(
        statistics.median(rates), min(rates), max(rates), windows, batch_size * steps * windows, total
    )


def _process_tree_rss() -> int:
    """Resident bytes of this process and its children (loader workers)."""
    import psutil

    me = psutil.Process(os.getpid())
    total = me.memory_info().rss
    for child in me.children(recursive=True):
        with contextlib.suppress(psutil.Error):
            total += child.memory_info().rss
    return total


@dataclass
class MemoryPeak:
    """Peak host memory (this process plus its workers) and device memory (all allocations on the device,
    DALI's and the CUDA context included), sampled every ``interval`` seconds while active."""

    device: torch.device
    interval: float = 0.05
    host_bytes: int = 0
    device_bytes: int = 0
    _stop: threading.Event = field(default_factory=threading.Event)

    def _sample(self) -> None:
        self.host_bytes = max(self.host_bytes, _process_tree_rss())
        if self.device.type == "cuda":
            free, total = torch.cuda.mem_get_info(self.device)
            self.device_bytes = max(self.device_bytes, total - free)

    def _loop(self) -> None:
        while not self._stop.wait(self.interval):
            self._sample()

    @contextlib.contextmanager
    def watch(self) -> Iterator[MemoryPeak]:
        self._sample()
        thread = threading.Thread(target=self._loop, daemon=True)
        thread.start()
        try:
            yield self
        finally:
            self._stop.set()
            thread.join()
            self._sample()


def energy_missing() -> str | None:
    try:
        import codecarbon  # noqa: F401
    except ImportError:
        return "codecarbon is not installed (pip install -e '.[energy]'); energy and CO2 are not measured"
    return None


@dataclass
class Energy:
    kwh: float | None = None
    kg_co2: float | None = None


@contextlib.contextmanager
def track_energy(enabled: bool, country: str) -> Iterator[Energy]:
    """Energy (kWh) and CO2 (kg) of the enclosed work from codecarbon's offline tracker (no network; the
    country's grid intensity); left empty when disabled or codecarbon is absent."""
    result = Energy()
    if not enabled or energy_missing():
        yield result
        return
    from codecarbon import OfflineEmissionsTracker

    logging.getLogger("codecarbon").setLevel(logging.ERROR)
    tracker = OfflineEmissionsTracker(
        country_iso_code=country,
        save_to_file=False,
        log_level="error",
        measure_power_secs=1,
        tracking_mode="process",
    )
    tracker.start()
    try:
        yield result
    finally:
        kg = tracker.stop()
        data = tracker.final_emissions_data
        result.kwh = float(data.energy_consumed) if data is not None else None
        result.kg_co2 = float(kg) if kg is not None else None
