"""The benchmark run: check the whole config, export the folder once, then for every batch size time the
same training step fed by every source, each source alone, and the generator alone, writing the results
after every point."""

from __future__ import annotations

import hashlib
import json
import statistics
import time
import warnings
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig, OmegaConf

from solo_mlvgm.bench.measure import (
    EnergyTracker,
    MemoryPeak,
    device_used,
    energy_countries,
    energy_missing,
    measure_throughput,
)
from solo_mlvgm.bench.report import BenchReport, Point, disturbance
from solo_mlvgm.bench.sources import (
    DataSource,
    LimitSource,
    SourceContext,
    config_int,
    known_sources,
    source_class,
)
from solo_mlvgm.bench.step import TrainingStep, precision_dtype
from solo_mlvgm.checks import flag, integer, number
from solo_mlvgm.data.continuous import place_generator
from solo_mlvgm.data.export import (
    FORMATS,
    check_export_target,
    export_image_folder,
    export_is_complete,
    export_manifest,
)
from solo_mlvgm.errors import ConfigError
from solo_mlvgm.generators.base import MultiLatentGenerator
from solo_mlvgm.runs import point_latest, save_config
from solo_mlvgm.settings import GeneratorSpec, generator_autocast, load_views_file
from solo_mlvgm.timing import device_name
from solo_mlvgm.views.sampler import ViewSampler
from solo_mlvgm.views.spec import ViewSpec


@dataclass(frozen=True)
class BenchOptions:
    sources: list[DataSource]  # as bench.sources names them (the limit is added when measuring)
    source_settings: dict[str, Any]  # every registered source's settings, recorded in the run's setup
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
        for key, example in (("sources", "[continuous,torch]"), ("batch_sizes", "[32,64]")):
            if not OmegaConf.is_list(b[key]):
                raise ConfigError(f"bench.{key} must be a list, e.g. bench.{key}={example}, got {b[key]!r}")
        if str(cfg.get("backend", "auto")) == "solo":
            raise ConfigError(
                "the benchmark times the lightly backend's training step (the same for every source); "
                "backend=solo is not used by it: leave backend=auto or set backend=lightly"
            )
        if str(cfg.get("accelerator", "auto")) != "auto" or cfg.get("devices", 1) != 1:
            raise ConfigError(
                "the benchmark runs on one device, bench.device (auto | cpu | cuda | cuda:N): set that "
                "instead of accelerator/devices"
            )
        names = [str(name) for name in dict.fromkeys(b.sources)]  # each once, in the given order
        unknown = [name for name in names if name not in known_sources()]
        if unknown or not names:
            raise ConfigError(
                f"bench.sources {unknown or '[]'} unknown or empty; known: {', '.join(known_sources())}"
            )
        sizes = [integer(x, "bench.batch_sizes") for x in b.batch_sizes]
        if not sizes or min(sizes) < 1:
            raise ConfigError(f"bench.batch_sizes must be positive integers, got {list(b.batch_sizes)}")
        for key, low in (("warmup", 1), ("steps", 1), ("windows", 1), ("dataset_size", 1), ("export.n", 1)):
            config_int(b, key, low)
        number(b.min_window_seconds, "bench.min_window_seconds", 0)
        if b.export.format not in FORMATS:
            raise ConfigError(
                f"bench.export.format must be one of {', '.join(FORMATS)}, got '{b.export.format}'"
            )
        folder_sources = [name for name in names if source_class(name).needs_export]
        if folder_sources and int(b.export.n) < max(sizes):
            raise ConfigError(
                f"bench.export.n={b.export.n} is smaller than the largest batch ({max(sizes)}); "
                f"{', '.join(folder_sources)} need at least one batch of files"
            )
        # every source's settings are checked, selected or not, and all of them recorded in the setup
        configured = {name: source_class(name).from_config(b) for name in known_sources()}
        country = str(b.energy.country).upper()
        if len(country) != 3 or not country.isalpha():
            raise ConfigError(
                f"bench.energy.country must be an ISO 3166 alpha-3 code (USA, FRA, ...), got '{country}'"
            )
        countries = energy_countries() if flag(b.energy.enabled, "bench.energy.enabled") else None
        if countries is not None and country not in countries:
            raise ConfigError(
                f"bench.energy.country '{country}' is not a country codecarbon has grid data for "
                "(ISO 3166 alpha-3: USA, FRA, DEU, ...)"
            )
        export_dir = Path(b.export.dir) if b.export.get("dir") else None
        return cls(
            sources=[configured[name] for name in names],
            source_settings={k: v for source in configured.values() for k, v in source.describe().items()},
            batch_sizes=sorted(set(sizes)),
            warmup=int(b.warmup),
            steps=int(b.steps),
            windows=int(b.windows),
            min_window_seconds=number(b.min_window_seconds, "bench.min_window_seconds", 0),
            dataset_size=int(b.dataset_size),
            export_n=int(b.export.n),
            export_dir=export_dir,
            export_format=str(b.export.format),
            device=_device(str(b.device)),
            energy=flag(b.energy.enabled, "bench.energy.enabled"),
            country=country,
        )


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
    seed = integer(cfg.seed, "seed", 0)
    if precision_dtype(cfg.precision) is not None and opts.device.type == "cpu":
        warnings.warn("bf16-mixed on a CPU is emulated on most CPUs and slow", stacklevel=2)
    autocast_dtype = generator_autocast(str(cfg.data.autocast))
    spec = ViewSpec.from_config(load_views_file(str(cfg.views_file)) if cfg.get("views_file") else cfg.views)
    generator = GeneratorSpec.from_config(cfg.generator).build()
    ViewSampler(generator, spec)  # level names checked against this generator before any work
    TrainingStep(cfg, generator.num_classes, opts.device, total_steps=1)  # the method builds
    export_dir = opts.export_dir or default_export_dir(cfg, generator, opts.export_n, opts.export_format)
    skipped = {s.name: reason for s in opts.sources if (reason := s.missing_reason())}
    active = [s for s in opts.sources if s.name not in skipped]
    needs_export = any(s.needs_export for s in active)
    if needs_export:
        check_export_target(export_dir)
    if opts.energy and (reason := energy_missing()):
        print(f"energy: {reason}")

    if opts.device.type == "cuda":
        torch.cuda.set_device(opts.device)  # DALI and FFCV use the current device
    run_dir.mkdir(parents=True, exist_ok=True)
    save_config(run_dir / "config.yaml", cfg)
    channels_last = bool(cfg.data.get("channels_last", False))
    place_generator(generator, opts.device, channels_last)
    size = int(cfg.data.get("crop_size") or generator.resolution)
    folder = None
    if needs_export:
        folder = export_dir
        _export(generator, folder, opts, seed)

    ctx = SourceContext(
        generator=generator,
        spec=spec,
        device=opts.device,
        size=size,
        seed=seed,
        autocast_dtype=autocast_dtype,
        channels_last=channels_last,
        folder=folder,
        folder_size=opts.export_n,
    )
    report = BenchReport(run_dir, describe(cfg, opts, generator, spec, size, folder), skipped)
    print(report.header())
    # the limit first: every ratio refers to it
    order = [LimitSource(), *[s for s in active if not isinstance(s, LimitSource)]]
    with warnings.catch_warnings():  # the method's self.log outside a Trainer only warns
        warnings.filterwarnings("ignore", message=".*self.log.*")
        for batch_size in opts.batch_sizes:
            for point in measure_trusted_batch_size(cfg, ctx, opts, order, batch_size):
                report.add(point)
                report.write()
            for source in active:
                if (generator_only := source.generator_only(ctx, batch_size)) is not None:
                    rate = measure_throughput(
                        generator_only,
                        batch_size,
                        opts.warmup,
                        opts.steps,
                        opts.windows,
                        ctx.device,
                        opts.min_window_seconds,
                    ).median
                    report.add_roofline(batch_size, source.name, rate)
                    report.write()
    report.finish()
    point_latest(run_dir)  # only a finished benchmark becomes latest
    return report.results()


def _export(generator: MultiLatentGenerator, folder: Path, opts: BenchOptions, seed: int) -> None:
    request = export_manifest(generator, opts.export_n, seed, opts.export_format)
    reused = export_is_complete(folder, request)
    if not reused:
        print(f"export: rendering {opts.export_n} {opts.export_format} images into {folder} ...", flush=True)
    start = time.perf_counter()
    export_image_folder(generator, folder, opts.export_n, seed=seed, fmt=opts.export_format)
    took = time.perf_counter() - start
    what = "reused" if reused else "wrote"
    print(f"export: {what} {opts.export_n} {opts.export_format} images in {folder} ({took:.1f} s)")


def measure_trusted_batch_size(
    cfg: DictConfig, ctx: SourceContext, opts: BenchOptions, order: list[DataSource], batch_size: int
) -> list[Point]:
    """Every source at one batch size, measured again once when a figure shows a disturbed machine
    (``disturbance``); a figure still disturbed the second time carries the reason in ``flags`` (shown as
    (!)) rather than passing as fact."""
    points = measure_in_rounds(cfg, ctx, opts, order, batch_size)
    reasons = [disturbance(p, isinstance(s, LimitSource)) for p, s in zip(points, order, strict=True)]
    if not any(reasons):
        return points
    named = "; ".join(f"{s.name}: {r}" for s, r in zip(order, reasons, strict=True) if r)
    print(f"  batch {batch_size}: re-measuring ({named})", flush=True)
    points = measure_in_rounds(cfg, ctx, opts, order, batch_size)
    flags = [disturbance(p, isinstance(s, LimitSource)) for p, s in zip(points, order, strict=True)]
    if flags[0]:  # every ratio at this batch size refers to the limit
        flags = [flags[0], *("; ".join(filter(None, [f, "ratio to a disturbed limit"])) for f in flags[1:])]
    return [replace(p, flags=f) for p, f in zip(points, flags, strict=True)]


def measure_in_rounds(
    cfg: DictConfig, ctx: SourceContext, opts: BenchOptions, order: list[DataSource], batch_size: int
) -> list[Point]:
    """``opts.windows`` rounds, each timing one window of every source in turn (the limit first), so a
    change of load during the measurement hits every source alike and shows as a spread of its windows;
    each source's figure is the median of its rounds."""
    one_window = replace(opts, windows=1)
    rounds: list[list[Point]] = []
    for _ in range(opts.windows):
        limit_rate: float | None = None
        row = []
        for source in order:
            point = measure_point(cfg, ctx, one_window, source, batch_size, limit_rate)
            limit_rate = limit_rate or point.img_s
            row.append(point)
        rounds.append(row)
    limit = _combine([r[0] for r in rounds], opts, None)
    return [limit, *(_combine([r[i] for r in rounds], opts, limit.img_s) for i in range(1, len(order)))]


def _combine(points: list[Point], opts: BenchOptions, limit_rate: float | None) -> Point:
    """One source's rounds as one point: median rate, slowest and fastest round, peak memory, mean energy."""
    rates = [p.img_s for p in points]
    median = statistics.median(rates)
    alone = [p.data_only_img_s for p in points if p.data_only_img_s is not None]

    def mean(values: list[float | None]) -> float | None:
        return (
            None if any(v is None for v in values) else statistics.fmean(v for v in values if v is not None)
        )

    devices = [p.device_peak_gib for p in points]
    return replace(
        points[0],
        img_s=median,
        img_s_low=min(rates),
        img_s_high=max(rates),
        data_only_img_s=statistics.median(alone) if alone else None,
        sec_per_epoch=opts.dataset_size / median,
        host_peak_gib=max(p.host_peak_gib for p in points),
        device_peak_gib=None if any(d is None for d in devices) else max(d for d in devices if d is not None),
        energy_kwh_per_epoch=mean([p.energy_kwh_per_epoch for p in points]),
        co2_kg_per_epoch=mean([p.co2_kg_per_epoch for p in points]),
        ratio_to_limit=median / (limit_rate or median),
    )


def measure_point(
    cfg: DictConfig,
    ctx: SourceContext,
    opts: BenchOptions,
    source: DataSource,
    batch_size: int,
    limit_rate: float | None,
) -> Point:
    """One point: the source timed alone (where it has a data cost), then the training step fed by it, with
    its memory and energy; ``limit_rate`` None means this is the limit, the reference of every ratio."""
    device, generator = ctx.device, ctx.generator
    if not source.uses_generator:  # free the generator's device memory for the source
        generator.to("cpu")
        if device.type == "cuda":
            torch.cuda.empty_cache()
    warmup = opts.warmup + source.prefetch_depth()  # drains what the loader prepared ahead
    timed = opts.steps * opts.windows
    data_only = None
    if source.timed_alone:
        with source.open(ctx, batch_size, warmup + timed) as batches:
            data_only = measure_throughput(
                lambda: next(batches),
                batch_size,
                warmup,
                opts.steps,
                opts.windows,
                device,
                opts.min_window_seconds,
            ).median
    step = TrainingStep(cfg, generator.num_classes, device, total_steps=warmup + timed)
    memory = MemoryPeak(device, device_baseline=device_used(device))
    energy = EnergyTracker(opts.energy, opts.country)
    with source.open(ctx, batch_size, warmup + timed) as batches, memory.watch():
        for _ in range(warmup):
            step(next(batches))
        energy.start()
        try:
            train = measure_throughput(
                lambda: step(next(batches)),
                batch_size,
                0,
                opts.steps,
                opts.windows,
                device,
                opts.min_window_seconds,
            )
        finally:
            energy.stop()
    if not source.uses_generator:
        place_generator(generator, device, ctx.channels_last)
    per_epoch = opts.dataset_size / train.samples
    return Point(
        batch_size=batch_size,
        source=source.name,
        img_s=train.median,
        img_s_low=train.low,
        img_s_high=train.high,
        data_only_img_s=data_only,
        sec_per_epoch=opts.dataset_size / train.median,
        host_peak_gib=memory.host_bytes / 2**30,
        device_peak_gib=memory.device_bytes / 2**30 if device.type == "cuda" else None,
        energy_kwh_per_epoch=energy.kwh * per_epoch if energy.kwh is not None else None,
        co2_kg_per_epoch=energy.kg_co2 * per_epoch if energy.kg_co2 is not None else None,
        ratio_to_limit=train.median / (limit_rate or train.median),
    )


def describe(
    cfg: DictConfig,
    opts: BenchOptions,
    generator: MultiLatentGenerator,
    spec: ViewSpec,
    size: int,
    folder: Path | None,
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
        "pixel": spec.pixel,
        "training_step": "lightly backend",
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
        **opts.source_settings,
        "country": opts.country,
    }
