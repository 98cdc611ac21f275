"""The benchmark run: check the whole config, export the folder once, then for every batch size time the
same training step fed by every source, each source alone, and the generator alone, writing the results
after every point."""

from __future__ import annotations

import hashlib
import json
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig, OmegaConf

from solo_mlvgm.bench.measure import (
    EnergyTracker,
    MemoryPeak,
    device_used,
    energy_missing,
    measure_throughput,
)
from solo_mlvgm.bench.report import BenchReport
from solo_mlvgm.bench.sources import (
    FOLDER_SOURCES,
    SOURCES,
    SourceSetup,
    continuous_sampling,
    missing_reason,
    open_source,
    prefetch_depth,
)
from solo_mlvgm.bench.step import TrainingStep, precision_dtype
from solo_mlvgm.data.continuous import place_generator
from solo_mlvgm.data.export import (
    FORMATS,
    check_export_target,
    export_image_folder,
    export_is_complete,
    export_manifest,
)
from solo_mlvgm.data.real import AUGMENT_PLACES
from solo_mlvgm.errors import ConfigError
from solo_mlvgm.generators.base import MultiLatentGenerator
from solo_mlvgm.runs import point_latest, save_config
from solo_mlvgm.settings import GeneratorSpec, generator_autocast, load_views_file
from solo_mlvgm.timing import device_name
from solo_mlvgm.views.sampler import ViewSampler
from solo_mlvgm.views.spec import ViewSpec


@dataclass(frozen=True)
class BenchOptions:
    sources: list[str]
    batch_sizes: list[int]
    warmup: int
    steps: int
    windows: int
    min_window_seconds: float
    dataset_size: int
    export_n: int
    export_dir: Path | None
    export_format: str
    device: torch.device
    energy: bool
    country: str

    @classmethod
    def from_config(cls, cfg: DictConfig) -> BenchOptions:
        b = cfg.bench
        sources = list(dict.fromkeys(b.sources))  # each once, in the given order
        unknown = [s for s in sources if s not in SOURCES]
        if unknown or not sources:
            raise ConfigError(
                f"bench.sources {unknown or '[]'} unknown or empty; known: {', '.join(SOURCES)}"
            )
        sizes = [_integer(x, "bench.batch_sizes") for x in b.batch_sizes]
        if not sizes or min(sizes) < 1:
            raise ConfigError(f"bench.batch_sizes must be positive integers, got {list(b.batch_sizes)}")
        for key, low in (("warmup", 1), ("steps", 1), ("windows", 1), ("dataset_size", 1), ("export.n", 1)):
            if _integer(OmegaConf.select(b, key), f"bench.{key}") < low:
                raise ConfigError(f"bench.{key} must be >= {low}, got {OmegaConf.select(b, key)}")
        if float(b.min_window_seconds) < 0:
            raise ConfigError(f"bench.min_window_seconds must be >= 0, got {b.min_window_seconds}")
        if b.export.format not in FORMATS:
            raise ConfigError(
                f"bench.export.format must be one of {', '.join(FORMATS)}, got '{b.export.format}'"
            )
        folder_sources = [s for s in sources if s in FOLDER_SOURCES]
        if folder_sources and int(b.export.n) < max(sizes):
            raise ConfigError(
                f"bench.export.n={b.export.n} is smaller than the largest batch ({max(sizes)}); "
                f"{', '.join(folder_sources)} need at least one batch of files"
            )
        if b.torch.augment_on not in AUGMENT_PLACES:
            raise ConfigError(f"bench.torch.augment_on must be one of {', '.join(AUGMENT_PLACES)}")
        for key, low in (("torch.num_workers", 0), ("dali.num_threads", 1), ("ffcv.num_workers", 1)):
            if _integer(OmegaConf.select(b, key), f"bench.{key}") < low:
                raise ConfigError(f"bench.{key} must be >= {low}, got {OmegaConf.select(b, key)}")
        country = str(b.energy.country)
        if len(country) != 3 or not country.isalpha():
            raise ConfigError(
                f"bench.energy.country must be an ISO 3166 alpha-3 code (USA, FRA, ...), got '{country}'"
            )
        export_dir = Path(b.export.dir) if b.export.get("dir") else None
        return cls(
            sources=sources,
            batch_sizes=sorted(set(sizes)),
            warmup=int(b.warmup),
            steps=int(b.steps),
            windows=int(b.windows),
            min_window_seconds=float(b.min_window_seconds),
            dataset_size=int(b.dataset_size),
            export_n=int(b.export.n),
            export_dir=export_dir,
            export_format=str(b.export.format),
            device=_device(str(b.device)),
            energy=bool(b.energy.enabled),
            country=country.upper(),
        )


def _integer(value: Any, key: str) -> int:
    try:
        return int(value)
    except (TypeError, ValueError):
        raise ConfigError(f"{key} must be an integer, got '{value}'") from None


def _device(name: str) -> torch.device:
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    try:
        device = torch.device(name)
    except RuntimeError:
        raise ConfigError(f"bench.device '{name}' is not a device (auto, cpu, cuda, cuda:1, ...)") from None
    if device.type not in ("cpu", "cuda"):
        raise ConfigError(f"bench.device must be cpu or cuda, got '{name}'")
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise ConfigError(f"bench.device '{name}' needs CUDA, which this machine does not have")
        if (device.index or 0) >= torch.cuda.device_count():
            raise ConfigError(
                f"bench.device '{name}': this machine has {torch.cuda.device_count()} CUDA device(s)"
            )
        if device.index is None:  # torch.cuda.set_device and the loaders need the index
            device = torch.device("cuda", torch.cuda.current_device())
    return device


def default_export_dir(cfg: DictConfig, generator: MultiLatentGenerator, n: int, fmt: str) -> Path:
    """exports/<generator>-<resolution>px-<fmt>-n<N>-<hash of the generator config>: different generators
    never share (and never evict) each other's export."""
    key = json.dumps(
        {"generator": OmegaConf.to_container(cfg.generator, resolve=True), "arch": generator.arch},
        sort_keys=True,
        default=str,
    )
    digest = hashlib.sha1(key.encode()).hexdigest()[:8]
    return Path("exports") / f"{cfg.generator.name}-{generator.resolution}px-{fmt}-n{n}-{digest}"


def run_benchmark(cfg: DictConfig, run_dir: Path) -> dict[str, Any]:
    """Validate everything, then measure; results are rewritten after every point (a crash keeps them)."""
    opts = BenchOptions.from_config(cfg)
    if precision_dtype(cfg.precision) is not None and opts.device.type == "cpu":
        warnings.warn("bf16-mixed on a CPU is emulated on most CPUs and slow", stacklevel=2)
    autocast_dtype = generator_autocast(str(cfg.data.autocast))
    spec = ViewSpec.from_config(load_views_file(str(cfg.views_file)) if cfg.get("views_file") else cfg.views)
    generator = GeneratorSpec.from_config(cfg.generator).build()
    ViewSampler(generator, spec)  # level names checked against this generator before any work
    TrainingStep(cfg, generator.num_classes, opts.device, total_steps=1)  # the method builds
    export_dir = opts.export_dir or default_export_dir(cfg, generator, opts.export_n, opts.export_format)
    skipped = {s: r for s in opts.sources if (r := missing_reason(s))}
    active = [s for s in opts.sources if s not in skipped]
    if any(s in FOLDER_SOURCES for s in active):
        check_export_target(export_dir)
    if opts.energy and (reason := energy_missing()):
        print(f"energy: {reason}")

    if opts.device.type == "cuda":
        torch.cuda.set_device(opts.device)  # DALI and FFCV use the current device
    run_dir.mkdir(parents=True, exist_ok=True)
    save_config(run_dir / "config.yaml", cfg)
    point_latest(run_dir)
    channels_last = bool(cfg.data.get("channels_last", False))
    place_generator(generator, opts.device, channels_last)
    size = int(cfg.data.get("crop_size") or generator.resolution)
    folder = None
    if any(s in FOLDER_SOURCES for s in active):
        folder = export_dir
        _export(generator, folder, opts, int(cfg.seed))

    b = cfg.bench
    setup = SourceSetup(
        generator=generator,
        spec=spec,
        device=opts.device,
        size=size,
        folder=folder,
        seed=int(cfg.seed),
        autocast_dtype=autocast_dtype,
        channels_last=channels_last,
        torch_workers=int(b.torch.num_workers),
        torch_augment_on=str(b.torch.augment_on),
        dali_threads=int(b.dali.num_threads),
        ffcv_workers=int(b.ffcv.num_workers),
        ffcv_cache=Path(str(folder) + ".beton") if folder is not None else None,
        folder_size=opts.export_n,
    )
    report = BenchReport(run_dir, opts, describe(cfg, opts, generator, size, folder), skipped)
    print(report.header())
    order = ["limit", *[s for s in active if s != "limit"]]  # the limit first: every ratio refers to it
    with warnings.catch_warnings():  # the method's self.log outside a Trainer only warns
        warnings.filterwarnings("ignore", message=".*self.log.*")
        for batch_size in opts.batch_sizes:
            limit_rate = None
            for name in order:
                row = _measure_point(cfg, setup, opts, name, batch_size)
                limit_rate = limit_rate or row["img_s"]
                row["ratio_to_limit"] = row["img_s"] / limit_rate
                report.add(row)
                report.write()
            if "continuous" in active:
                report.add_roofline(batch_size, _generator_rate(setup, opts, batch_size))
                report.write()
    report.finish()
    return report.results()


def _export(generator: MultiLatentGenerator, folder: Path, opts: BenchOptions, seed: int) -> None:
    request = export_manifest(generator, opts.export_n, seed, opts.export_format)
    reused = export_is_complete(folder, request)
    start = time.perf_counter()
    export_image_folder(generator, folder, opts.export_n, seed=seed, fmt=opts.export_format)
    took = time.perf_counter() - start
    what = "reused" if reused else "wrote"
    print(f"export: {what} {opts.export_n} {opts.export_format} images in {folder} ({took:.1f} s)")


def _generator_rate(setup: SourceSetup, opts: BenchOptions, batch_size: int) -> float:
    """Pairs per second of the generator alone, doing exactly what Continuous Sampling asks of it each step
    (fresh latents, the perturbed levels mapped again, anchor and positive rendered), without the pixel
    augmentation and the batch assembly."""
    cs = continuous_sampling(setup, batch_size)
    steps = iter(range(10**9))
    return measure_throughput(
        lambda: cs.draw(next(steps), setup.device),
        batch_size,
        opts.warmup,
        opts.steps,
        opts.windows,
        setup.device,
        opts.min_window_seconds,
    ).median


def _measure_point(
    cfg: DictConfig, setup: SourceSetup, opts: BenchOptions, name: str, batch_size: int
) -> dict[str, Any]:
    device, generator = setup.device, setup.generator
    if name in FOLDER_SOURCES:  # the folder sources do not need the generator: free its device memory
        generator.to("cpu")
        if device.type == "cuda":
            torch.cuda.empty_cache()
    warmup = opts.warmup + prefetch_depth(name, setup)  # drains what the loader prepared ahead
    timed = opts.steps * opts.windows
    measure = dict(device=device, min_seconds=opts.min_window_seconds)
    data_only = None  # the limit has no data cost to measure
    if name != "limit":
        with open_source(name, setup, batch_size, warmup + timed) as batches:
            data_only = measure_throughput(
                lambda: next(batches), batch_size, warmup, opts.steps, opts.windows, **measure
            ).median
    step = TrainingStep(cfg, generator.num_classes, device, total_steps=warmup + timed)
    memory = MemoryPeak(device, device_baseline=device_used(device))
    energy = EnergyTracker(opts.energy, opts.country)
    with open_source(name, setup, batch_size, warmup + timed) as batches, memory.watch():
        for _ in range(warmup):
            step(next(batches))
        energy.start()
        try:
            train = measure_throughput(
                lambda: step(next(batches)), batch_size, 0, opts.steps, opts.windows, **measure
            )
        finally:
            energy.stop()
    if name in FOLDER_SOURCES:
        place_generator(generator, device, setup.channels_last)
    per_epoch = opts.dataset_size / train.samples
    return {
        "batch_size": batch_size,
        "source": name,
        "img_s": train.median,
        "img_s_low": train.low,
        "img_s_high": train.high,
        "data_only_img_s": data_only,
        "sec_per_epoch": opts.dataset_size / train.median,
        "host_peak_gib": memory.host_bytes / 2**30,
        "device_peak_gib": memory.device_bytes / 2**30 if device.type == "cuda" else None,
        "energy_kwh_per_epoch": energy.kwh * per_epoch if energy.kwh is not None else None,
        "co2_kg_per_epoch": energy.kg_co2 * per_epoch if energy.kg_co2 is not None else None,
    }


def describe(
    cfg: DictConfig, opts: BenchOptions, generator: MultiLatentGenerator, size: int, folder: Path | None
) -> dict[str, Any]:
    device = opts.device
    return {
        "device": f"{device} ({device_name(device)})",
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "generator": str(cfg.generator.name),
        "generator_resolution": generator.resolution,
        "generator_weights": sum(p.numel() for p in generator.parameters()),
        "method": str(cfg.method),
        "backbone": str(cfg.backbone.name),
        "view_size": size,
        "pixel": str(cfg.views.get("pixel", "none")),
        "precision": str(cfg.precision),
        "generator_autocast": str(cfg.data.autocast) if device.type == "cuda" else "none (CPU)",
        "warmup": opts.warmup,
        "steps": opts.steps,
        "windows": opts.windows,
        "min_window_seconds": opts.min_window_seconds,
        "dataset_size": opts.dataset_size,
        "export": str(folder) if folder is not None else None,
        "export_n": opts.export_n,
        "export_format": opts.export_format,
        "torch_workers": int(cfg.bench.torch.num_workers),
        "torch_augment_on": str(cfg.bench.torch.augment_on),
        "dali_threads": int(cfg.bench.dali.num_threads),
        "ffcv_workers": int(cfg.bench.ffcv.num_workers),
        "country": opts.country,
    }
