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
    step: Callable[[], object],
    batch_size: int,
    warmup: int,
    steps: int,
    windows: int,
    device: torch.device,
    min_seconds: float = 0.0,
) -> Throughput:
    """Run ``warmup`` untimed calls, then ``windows`` windows of at least ``steps`` calls and ``min_seconds``
    each; a window's rate is its samples over its wall time, so loader prefetching and asynchronous devices
    are counted as they run."""
    if steps < 1 or windows < 1 or warmup < 0:
        raise ValueError(f"steps and windows must be >= 1 and warmup >= 0, got {steps}, {windows}, {warmup}")
    for _ in range(warmup):
        step()
    rates, total, samples = [], 0.0, 0
    for _ in range(windows):
        synchronize(device)
        start = time.perf_counter()
        done = 0
        while done < steps or time.perf_counter() - start < min_seconds:
            step()
            done += 1
        synchronize(device)
        elapsed = time.perf_counter() - start
        total += elapsed
        samples += batch_size * done
        rates.append(batch_size * done / elapsed)
    return Throughput(statistics.median(rates), min(rates), max(rates), windows, samples, total)


def _process_tree_memory() -> int:
    """Bytes of this process and its children (loader workers): the proportional set size where the OS
    gives it (a page shared by forked workers counts once overall), else the resident size."""
    import psutil

    def size(process: psutil.Process) -> int:
        try:
            info = process.memory_full_info()
            return int(getattr(info, "pss", info.rss))
        except psutil.AccessDenied:
            return int(process.memory_info().rss)

    me = psutil.Process(os.getpid())
    total = size(me)
    for child in me.children(recursive=True):
        with contextlib.suppress(psutil.Error):
            total += size(child)
    return total


@dataclass
class MemoryPeak:
    """Peak host memory (this process plus its workers) and device memory (everything allocated on the
    device, DALI's pools included, above ``device_baseline``: the use before the point, i.e. the CUDA
    context), sampled every ``interval`` seconds while active."""

    device: torch.device
    device_baseline: int = 0
    interval: float = 0.25
    host_bytes: int = 0
    device_bytes: int = 0
    _stop: threading.Event = field(default_factory=threading.Event)

    def _sample(self) -> None:
        self.host_bytes = max(self.host_bytes, _process_tree_memory())
        if self.device.type == "cuda":
            free, total = torch.cuda.mem_get_info(self.device)
            self.device_bytes = max(self.device_bytes, total - free - self.device_baseline)

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


def energy_countries() -> set[str] | None:
    """The ISO 3166 alpha-3 codes codecarbon has a grid carbon intensity for (None without codecarbon)."""
    if energy_missing():
        return None
    import importlib.resources
    import json

    mix = importlib.resources.files("codecarbon") / "data" / "private_infra" / "global_energy_mix.json"
    return set(json.loads(mix.read_text()))


def device_used(device: torch.device) -> int:
    """Bytes in use on the device now (all processes), 0 on a CPU."""
    if device.type != "cuda":
        return 0
    free, total = torch.cuda.mem_get_info(device)
    return total - free


class EnergyTracker:
    """Energy (kWh) and CO2 (kg) of the work between ``start`` and ``stop``, from codecarbon's offline
    tracker (no network; the country's grid intensity); ``None`` when disabled or codecarbon is absent.
    Built before the warm-up, so its set-up never sits between the warm-up and the timed windows."""

    def __init__(self, enabled: bool, country: str) -> None:
        self.kwh: float | None = None
        self.kg_co2: float | None = None
        self._tracker = None
        if enabled and not energy_missing():
            from codecarbon import OfflineEmissionsTracker

            logging.getLogger("codecarbon").setLevel(logging.ERROR)
            self._tracker = OfflineEmissionsTracker(
                country_iso_code=country,
                save_to_file=False,
                log_level="error",
                measure_power_secs=1,
                tracking_mode="process",  # this process and its children (the loader workers)
            )

    def start(self) -> None:
        if self._tracker is not None:
            self._tracker.start()

    def stop(self) -> None:
        if self._tracker is None:
            return
        kg = self._tracker.stop()
        data = self._tracker.final_emissions_data
        self.kwh = float(data.energy_consumed) if data is not None else None
        self.kg_co2 = float(kg) if kg is not None else None
