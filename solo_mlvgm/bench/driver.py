"""The benchmark run: check the config, export the folder once, then for every batch size time the same
training step fed by every source, the sources alone, the generator alone, and write the results."""

from __future__ import annotations

import contextlib
import hashlib
import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig, OmegaConf

from solo_mlvgm.bench.measure import MemoryPeak, energy_missing, measure_throughput, track_energy
from solo_mlvgm.bench.report import BenchReport
from solo_mlvgm.bench.sources import FOLDER_SOURCES, SOURCES, SourceSetup, missing_reason, open_source
from solo_mlvgm.bench.step import TrainingStep, check_precision
from solo_mlvgm.data.export import FORMATS, export_image_folder
from solo_mlvgm.data.real import AUGMENT_PLACES
from solo_mlvgm.errors import ConfigError
from solo_mlvgm.methods import method_class
from solo_mlvgm.pretrain import build_generator_from_cfg, load_views_file
from solo_mlvgm.runs import point_latest, save_config
from solo_mlvgm.timing import device_name, time_calls
from solo_mlvgm.views.spec import ViewSpec

_AUTOCAST = {"bf16": torch.bfloat16, "fp16": torch.float16, "none": None}


@dataclass(frozen=True)
class BenchOptions:
    sources: list[str]
    batch_sizes: list[int]
    warmup: int
    steps: int
    windows: int
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
        sources = list(b.sources)
        unknown = [s for s in sources if s not in SOURCES]
        if unknown or not sources:
            raise ConfigError(
                f"bench.sources {unknown or '[]'} unknown or empty; known: {', '.join(SOURCES)}"
            )
        sizes = [int(x) for x in b.batch_sizes]
        if not sizes or min(sizes) < 1:
            raise ConfigError(f"bench.batch_sizes must be positive integers, got {list(b.batch_sizes)}")
        for key in ("steps", "windows", "dataset_size"):
            if int(b[key]) < 1:
                raise ConfigError(f"bench.{key} must be >= 1, got {b[key]}")
        if int(b.warmup) < 0:
            raise ConfigError(f"bench.warmup must be >= 0, got {b.warmup}")
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
        for key in ("torch.num_workers", "dali.num_threads", "ffcv.num_workers"):
            if int(OmegaConf.select(b, key)) < (0 if key.startswith("torch") else 1):
                raise ConfigError(f"bench.{key} is out of range: {OmegaConf.select(b, key)}")
        country = str(b.energy.country)
        if len(country) != 3 or not country.isalpha():
            raise ConfigError(
                f"bench.energy.country must be an ISO 3166 alpha-3 code (USA, FRA, ...), got '{country}'"
            )
        device = _device(str(b.device))
        return cls(
            sources=sources,
            batch_sizes=sorted(set(sizes)),
            warmup=int(b.warmup),
            steps=int(b.steps),
            windows=int(b.windows),
            dataset_size=int(b.dataset_size),
            export_n=int(b.export.n),
            export_dir=Path(b.export.dir) if b.export.get("dir") else None,
            export_format=str(b.export.format),
            device=device,
            energy=bool(b.energy.enabled),
            country=country.upper(),
        )


def _device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise ConfigError(f"bench.device '{name}' is not a device (auto, cpu, cuda, cuda:1, ...)") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"bench.device '{name}' needs CUDA, which this machine does not have")
    if device.type not in ("cpu", "cuda"):
        raise ConfigError(f"bench.device must be cpu or cuda, got '{name}'")
    return device


def default_export_dir(cfg: DictConfig, generator_arch: dict, n: int, fmt: str) -> Path:
    """exports/<generator>-<resolution>px-<fmt>-n<N>-<hash of the generator config>: different generators
    never share (and never evict) each other's export."""
    key = json.dumps(
        {"generator": OmegaConf.to_container(cfg.generator, resolve=True), "arch": generator_arch},
        sort_keys=True,
        default=str,
    )
    digest = hashlib.sha1(key.encode()).hexdigest()[:8]
    return (
        Path("exports")
        / f"{cfg.generator.name}-{generator_arch.get('resolution', 'x')}px-{fmt}-n{n}-{digest}"
    )


def _generator_rate(setup: SourceSetup, batch_size: int, repeats: int) -> float:
    """Pairs per second of the generator alone: fresh latents for 2 x batch images, mapped and rendered."""
    generator, device = setup.generator, setup.device
    rng = torch.Generator(device=device).manual_seed(setup.seed)
    autocast = (
        torch.autocast(device.type, dtype=setup.autocast_dtype)
        if device.type == "cuda" and setup.autocast_dtype is not None
        else contextlib.nullcontext()
    )

    @torch.no_grad()
    def render() -> None:
        with autocast:
            generator(generator.to_levels(generator.sample_base(2 * batch_size, generator=rng)))

    return time_calls(render, repeats, device).rate(batch_size)


def run_benchmark(cfg: DictConfig, run_dir: Path) -> dict[str, Any]:
    """Validate everything, then measure; results are rewritten after every point (a crash keeps them)."""
    opts = BenchOptions.from_config(cfg)
    check_precision(cfg.precision, opts.device)
    if cfg.get("views_file"):
        cfg.views = load_views_file(cfg.views_file)
    spec = ViewSpec.from_config(cfg.views)
    method_class(cfg.method).validate_cfg(cfg.copy())
    if cfg.data.autocast not in _AUTOCAST:
        raise ConfigError(f"data.autocast must be one of {list(_AUTOCAST)}, got '{cfg.data.autocast}'")
    generator = build_generator_from_cfg(cfg.generator).to(opts.device).freeze()
    skipped = {s: r for s in opts.sources if (r := missing_reason(s))}
    if opts.energy and (reason := energy_missing()):
        print(f"energy: {reason}")
    active = [s for s in opts.sources if s not in skipped]

    run_dir.mkdir(parents=True, exist_ok=True)
    save_config(run_dir / "config.yaml", cfg)
    point_latest(run_dir)
    size = int(cfg.data.get("crop_size") or generator.resolution)
    folder = None
    if any(s in FOLDER_SOURCES for s in active):
        folder = opts.export_dir or default_export_dir(cfg, generator.arch, opts.export_n, opts.export_format)
        start = time.perf_counter()
        manifest = folder / "manifest.json"
        before = manifest.stat().st_mtime_ns if manifest.exists() else None
        export_image_folder(generator, folder, opts.export_n, seed=int(cfg.seed), fmt=opts.export_format)
        reused = before is not None and manifest.stat().st_mtime_ns == before
        took = time.perf_counter() - start
        print(
            f"export: {'reused' if reused else 'wrote'} {opts.export_n} {opts.export_format} images in {folder} ({took:.1f} s)"
        )

    b = cfg.bench
    setup = SourceSetup(
        generator=generator,
        spec=spec,
        device=opts.device,
        size=size,
        folder=folder,
        seed=int(cfg.seed),
        autocast_dtype=_AUTOCAST[cfg.data.autocast],
        channels_last=bool(cfg.data.get("channels_last", True)),
        torch_workers=int(b.torch.num_workers),
        torch_augment_on=str(b.torch.augment_on),
        dali_threads=int(b.dali.num_threads),
        ffcv_workers=int(b.ffcv.num_workers),
        ffcv_cache=Path(str(folder) + ".beton") if folder is not None else None,
    )
    report = BenchReport(run_dir, opts, describe(cfg, opts, generator, size), skipped)
    print(report.header())
    total_steps = opts.warmup + opts.steps * opts.windows
    order = ["limit", *[s for s in active if s != "limit"]]  # the limit first: every ratio refers to it
    for batch_size in opts.batch_sizes:
        limit_rate = None
        for name in order:
            row = _measure_point(cfg, setup, opts, name, batch_size, generator.num_classes, total_steps)
            limit_rate = limit_rate or row["img_s"]
            row["ratio_to_limit"] = row["img_s"] / limit_rate
            report.add(row)
        if "continuous" in active:
            report.add_roofline(batch_size, _generator_rate(setup, batch_size, max(3, opts.windows)))
        report.write()
    report.finish()
    return report.results()


def _measure_point(
    cfg: DictConfig,
    setup: SourceSetup,
    opts: BenchOptions,
    name: str,
    batch_size: int,
    num_classes: int,
    total_steps: int,
) -> dict[str, Any]:
    device = setup.device
    with open_source(name, setup, batch_size) as batches:
        data_only = measure_throughput(
            lambda: next(batches), batch_size, opts.warmup, opts.steps, opts.windows, device
        )
    step = TrainingStep(cfg, num_classes, device, total_steps)
    if device.type == "cuda":
        torch.cuda.empty_cache()
    memory = MemoryPeak(device)
    with open_source(name, setup, batch_size) as batches, memory.watch():
        for _ in range(opts.warmup):
            step(next(batches))
        with track_energy(opts.energy, opts.country) as energy:
            train = measure_throughput(
                lambda: step(next(batches)), batch_size, 0, opts.steps, opts.windows, device
            )
    per_epoch = opts.dataset_size / train.samples
    return {
        "batch_size": batch_size,
        "source": name,
        "img_s": train.median,
        "img_s_low": train.low,
        "img_s_high": train.high,
        "data_only_img_s": data_only.median,
        "sec_per_epoch": opts.dataset_size / train.median,
        "host_peak_gib": memory.host_bytes / 2**30,
        "device_peak_gib": memory.device_bytes / 2**30 if device.type == "cuda" else None,
        "energy_kwh_per_epoch": energy.kwh * per_epoch if energy.kwh is not None else None,
        "co2_kg_per_epoch": energy.kg_co2 * per_epoch if energy.kg_co2 is not None else None,
    }


def describe(cfg: DictConfig, opts: BenchOptions, generator, size: int) -> dict[str, Any]:  # noqa: ANN001
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
        "pixel": str(cfg.views.pixel) if "pixel" in cfg.views else None,
        "precision": str(cfg.precision),
        "generator_autocast": str(cfg.data.autocast) if device.type == "cuda" else "none (CPU)",
        "warmup": opts.warmup,
        "steps": opts.steps,
        "windows": opts.windows,
        "dataset_size": opts.dataset_size,
        "torch_workers": int(cfg.bench.torch.num_workers),
        "torch_augment_on": str(cfg.bench.torch.augment_on),
        "dali_threads": int(cfg.bench.dali.num_threads),
        "country": opts.country,
    }
