"""The data-source speed benchmark: every source makes the same batches, the export cache, the report of
missing optional loaders, and config errors before any work."""

from __future__ import annotations

import dataclasses
import json
import multiprocessing
import sys
import threading
import time
from collections.abc import Callable, Iterator
from types import SimpleNamespace

import pytest
import torch
from omegaconf import DictConfig, OmegaConf

from solo_mlvgm.bench.driver import run_benchmark
from solo_mlvgm.bench.ffcv_source import FfcvSource
from solo_mlvgm.bench.measure import energy_missing, measure_throughput
from solo_mlvgm.bench.report import roofline
from solo_mlvgm.bench.sources import (
    ContinuousSource,
    DaliSource,
    DataSource,
    LimitSource,
    SourceContext,
    TorchSource,
    register_source,
)
from solo_mlvgm.data.continuous import Batch
from solo_mlvgm.data.export import export_image_folder, export_is_complete
from solo_mlvgm.data.real import ImageFolderData, list_image_folder
from solo_mlvgm.entry.pretrain import build_pretraining
from solo_mlvgm.errors import ConfigError
from solo_mlvgm.views import ViewSpec

from .conftest import ROOT, TINY, compose_cfg, denormalise

SIZE, BATCH = 32, 8
# Tiny benchmark: toy world, one point per source, a few steps, no energy tracking.
TINY_BENCH = [
    "bench.batch_sizes=[4]",
    "bench.warmup=1",
    "bench.steps=1",
    "bench.windows=1",
    "bench.min_window_seconds=0",
    "bench.export.n=16",
    "bench.torch.num_workers=0",
    "bench.dali.num_threads=1",
    "bench.ffcv.num_workers=1",
    "bench.energy.enabled=false",
    "bench.device=cpu",
    "method_kwargs.proj_hidden_dim=32",
    "method_kwargs.proj_output_dim=16",
]


# Each source with the few threads and workers of the tests.
SMALL: dict[str, Callable[[], DataSource]] = {
    "limit": LimitSource,
    "continuous": ContinuousSource,
    "torch": lambda: TorchSource(num_workers=0),
    "torch_device": lambda: TorchSource(num_workers=0, augment_on="device"),
    "dali": lambda: DaliSource(num_threads=1),
    "ffcv": lambda: FfcvSource(num_workers=1),
}


def _available(name: str) -> DataSource:
    source = SMALL[name]()
    if reason := source.missing_reason():
        pytest.skip(reason)
    return source


def _first_batch(name: str, ctx: SourceContext) -> list:
    with _available(name).open(ctx, BATCH, steps=1) as batches:
        return next(batches)


@pytest.fixture
def ctx(tmp_path, world) -> SourceContext:
    """Pixel preset ``none`` and views at the export's resolution: every source shows the image unchanged."""
    folder = export_image_folder(world, tmp_path / "export", n=24, fmt="jpg")
    spec = ViewSpec.from_config({"name": "synth", "pixel": "none"})
    return SourceContext(
        generator=world, spec=spec, device=torch.device("cpu"), size=SIZE, folder=folder, folder_size=24
    )


@pytest.mark.parametrize("name", ["limit", "continuous", "torch", "torch_device", "dali", "ffcv"])
def test_every_source_yields_the_same_batch_format_and_normalisation(name, ctx):
    indexes, views, targets = _first_batch(name, ctx)
    assert indexes.dtype == torch.long and indexes.shape == (BATCH,)
    assert targets.dtype == torch.long and targets.shape == (BATCH,)
    assert len(views) == 2
    for view in views:
        assert view.shape == (BATCH, 3, SIZE, SIZE) and view.dtype == torch.float32
        pixels = denormalise(view)  # normalised with ImageNet's mean/std, like solo-learn's batches
        assert pixels.min() > -0.02 and pixels.max() < 1.02 and pixels.std() > 0.05
    if SMALL[name]().needs_export:  # folder sources: the class of each image is its folder's
        listing = list_image_folder(ctx.folder)
        assert targets.tolist() == [listing.targets[i] for i in indexes.tolist()]
        assert len(set(indexes.tolist())) == BATCH


@pytest.mark.parametrize("name", ["dali", "ffcv"])
def test_folder_sources_show_the_same_images_as_the_torch_loader(name, ctx):
    """Same file, same normalised pixels (up to JPEG decoding differences)."""
    indexes, views, _ = _first_batch(name, ctx)
    data = ImageFolderData(ctx.folder, SIZE, BATCH, pixel="none", num_workers=0, augment_on="workers")
    for i, index in enumerate(indexes.tolist()):
        expected = data.dataset[index][1][0]
        assert (views[0][i] - expected).abs().mean() < 0.05


def test_export_is_reused_when_complete_and_redone_when_truncated(tmp_path, world):
    out = export_image_folder(world, tmp_path / "export", n=12, fmt="jpg")
    files = sorted(out.glob("*/*.jpg"))
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["files"] == 12 and manifest["bytes"] == sum(f.stat().st_size for f in files)
    stamp = (out / "manifest.json").stat().st_mtime_ns
    export_image_folder(world, out, n=12, fmt="jpg")
    assert (out / "manifest.json").stat().st_mtime_ns == stamp  # complete: reused as it is

    size = files[3].stat().st_size
    files[3].write_bytes(files[3].read_bytes()[: size // 2])  # truncated, manifest still there
    request = {k: manifest[k] for k in ("n", "seed", "format", "generator", "arch")}
    assert not export_is_complete(out, request)
    export_image_folder(world, out, n=12, fmt="jpg")
    assert files[3].stat().st_size == size and export_is_complete(out, request)

    files[5].unlink()  # a missing file
    assert not export_is_complete(out, request)
    export_image_folder(world, out, n=12, fmt="jpg")
    assert files[5].exists() and len(list(out.glob("*/*.jpg"))) == 12


def test_missing_optional_loaders_are_reported_and_the_rest_runs(tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "nvidia.dali", None)  # as if not installed
    monkeypatch.setitem(sys.modules, "ffcv", None)
    assert (
        "not installed" in DaliSource().missing_reason() and "not installed" in FfcvSource().missing_reason()
    )
    cfg = compose_cfg(
        "bench",
        [*TINY_BENCH, "bench.sources=[continuous,torch,dali,ffcv]", f"bench.export.dir={tmp_path / 'x'}"],
    )
    results = run_benchmark(cfg, tmp_path / "run")
    out = capsys.readouterr().out
    assert (
        "skipped dali: NVIDIA DALI is not installed" in out and "skipped ffcv: FFCV is not installed" in out
    )
    assert set(results["skipped"]) == {"dali", "ffcv"}
    assert [p["source"] for p in results["points"]] == ["limit", "continuous", "torch"]
    assert all(p["img_s"] > 0 and p["sec_per_epoch"] > 0 for p in results["points"])
    assert results["points"][0]["ratio_to_limit"] == 1.0
    (line,) = results["roofline"]
    assert line["roofline_img_s"] < min(line["generator_img_s"], line["step_img_s"])
    assert line["cs_efficiency"] == pytest.approx(line["continuous_img_s"] / line["roofline_img_s"])
    for name in ("bench.csv", "bench.json", "bench.png", "roofline.csv", "config.yaml"):
        assert (tmp_path / "run" / name).is_file()
    assert json.loads((tmp_path / "run" / "bench.json").read_text())["skipped"]["dali"].startswith("NVIDIA")


@register_source("test_noise")
class NoiseSource(DataSource):
    """A source added from outside the package with one class and one config key
    (``bench.test_noise.scale``): random views of the right shape, counted as they are served."""

    label = "noise (test source)"
    served = 0  # batches served by every instance

    def __init__(self, scale: float = 1.0) -> None:
        self.scale = scale

    @classmethod
    def from_config(cls, bench: DictConfig) -> NoiseSource:
        return cls(scale=float(OmegaConf.select(bench, "test_noise.scale", default=1.0)))

    def describe(self) -> dict[str, float]:
        return {"test_noise_scale": self.scale}

    def batches(self, ctx: SourceContext, batch_size: int, steps: int) -> Iterator[Batch]:
        indexes = torch.arange(batch_size, device=ctx.device)
        targets = torch.randint(ctx.generator.num_classes, (batch_size,), device=ctx.device)
        while True:
            NoiseSource.served += 1
            shape = (batch_size, 3, ctx.size, ctx.size)
            yield [indexes, [self.scale * torch.randn(shape, device=ctx.device) for _ in range(2)], targets]


def test_a_source_registered_outside_the_package_is_measured_like_the_others(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(NoiseSource, "served", 0)
    cfg = compose_cfg("bench", [*TINY_BENCH, "bench.sources=[test_noise]", "+bench.test_noise.scale=0.5"])
    results = run_benchmark(cfg, tmp_path / "run")
    assert [p["source"] for p in results["points"]] == ["limit", "test_noise"]
    point = results["points"][1]
    assert point["img_s"] > 0 and point["data_only_img_s"] > 0 and point["ratio_to_limit"] > 0
    # timed alone, then under the step: 1 warm-up + 1 timed step each (twice if a tiny, noisy timing made
    # the point look disturbed and it was measured again)
    assert NoiseSource.served in (2 * (1 + 1), 4 * (1 + 1))
    assert results["setup"]["test_noise_scale"] == 0.5 and results["setup"]["torch_workers"] == 0
    assert "noise (test source)" in capsys.readouterr().out
    assert results["roofline"] == [] and not (tmp_path / "run" / "roofline.csv").exists()
    with pytest.raises(ValueError, match="already registered"):  # one class per name
        register_source("torch")(NoiseSource)


def test_energy_is_tracked_per_epoch_when_codecarbon_is_there(tmp_path):
    pytest.importorskip("codecarbon", reason="codecarbon is not installed (the 'energy' extra)")
    cfg = compose_cfg(
        "bench",
        [*TINY_BENCH, "bench.sources=[continuous]", "bench.energy.enabled=true", "bench.energy.country=FRA"],
    )
    (point, _) = run_benchmark(cfg, tmp_path / "run")["points"]
    assert point["energy_kwh_per_epoch"] > 0 and point["co2_kg_per_epoch"] > 0


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("bench.sources=[continuous,hdf5]", "unknown or empty"),
        ("bench.batch_sizes=[0,8]", "positive integers"),
        ("bench.export.n=2", "smaller than the largest batch"),
        ("bench.energy.country=US", "alpha-3"),
        ("bench.torch.augment_on=gpu", "augment_on"),
        ("bench.steps=0", "bench.steps"),
        ("bench.warmup=0", "bench.warmup"),
        ("bench.windows=three", "integer"),
        ("views=bigbigan_ml_random", "unknown level"),
        ("bench.device=tpu", "device"),
        ("precision=16-mixed", "precision"),
        ("views.pixel=sepia", "pixel preset"),
        ("seed=abc", "seed must be an integer"),
        ("bench.min_window_seconds=abc", "bench.min_window_seconds must be a number"),
        ("bench.energy.enabled=abc", "bench.energy.enabled must be true or false"),
        ("bench.batch_sizes=[8.5]", "must be an integer"),
        ("bench.batch_sizes=64", "bench.batch_sizes must be a list"),
        ("bench.sources=torch", "bench.sources must be a list"),
        ("backend=solo", "backend=solo is not used by it"),
        ("accelerator=cpu", "set that instead of accelerator/devices"),
    ],
)
def test_bad_config_fails_before_any_work(tmp_path, override, message):
    cfg = compose_cfg("bench", [*TINY_BENCH, f"bench.export.dir={tmp_path / 'x'}", override])
    with pytest.raises(ConfigError, match=message):
        run_benchmark(cfg, tmp_path / "run")
    assert not (tmp_path / "run").exists() and not (tmp_path / "x").exists()


def test_export_folder_with_foreign_files_fails_before_any_work(tmp_path):
    (tmp_path / "x").mkdir()
    (tmp_path / "x" / "notes.txt").write_text("mine")
    cfg = compose_cfg("bench", [*TINY_BENCH, "bench.sources=[torch]", f"bench.export.dir={tmp_path / 'x'}"])
    with pytest.raises(ConfigError, match="not an export"):
        run_benchmark(cfg, tmp_path / "run")
    assert not (tmp_path / "run").exists() and (tmp_path / "x" / "notes.txt").read_text() == "mine"


def _loader_threads() -> set[threading.Thread]:
    """Live threads, without tqdm's progress-bar monitor (a process-wide daemon FFCV's writer starts) and
    multiprocessing's queue feeder: with pin_memory (on CUDA) torch's DataLoader shutdown puts a stop
    message on its result queue from the main process, whose daemon feeder thread outlives the loader
    (seen on an H200); the workers themselves are checked with ``active_children``."""
    ignored = {"TMonitor"} | ({"QueueFeederThread"} if torch.cuda.is_available() else set())
    return {t for t in threading.enumerate() if type(t).__name__ not in ignored and t.name not in ignored}


@pytest.mark.parametrize("name", ["torch", "dali", "ffcv"])
def test_folder_sources_run_past_the_end_of_the_folder_and_leave_nothing_running(name, ctx):
    """More batches than the folder holds come as one long epoch; closing the source ends its workers."""
    source = _available(name)
    if isinstance(source, TorchSource):
        source = TorchSource(num_workers=1)
    threads = _loader_threads()
    steps = 3 * ctx.folder_size // BATCH + 1
    seen = []
    with source.open(ctx, BATCH, steps=steps) as batches:
        for _ in range(steps):
            seen += next(batches)[0].tolist()
    assert len(seen) == steps * BATCH and set(seen) == set(range(ctx.folder_size))
    deadline = time.monotonic() + 10
    while _loader_threads() - threads and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not _loader_threads() - threads
    assert multiprocessing.active_children() == []


def test_throughput_counts_every_timed_step():
    calls = []
    result = measure_throughput(
        lambda: calls.append(1), batch_size=4, warmup=2, steps=3, windows=5, device=torch.device("cpu")
    )
    assert len(calls) == 2 + 3 * 5 and result.samples == 4 * 3 * 5 and result.windows == 5
    assert result.low <= result.median <= result.high


def test_roofline_is_the_rate_of_rendering_then_training():
    assert roofline(10.0, 10.0) == pytest.approx(5.0)
    assert roofline(1e12, 7.0) == pytest.approx(7.0)


def test_dali_trains_on_a_real_image_folder(tmp_path, world):
    _available("dali")
    out = export_image_folder(world, tmp_path / "toy", n=48, fmt="jpg")
    tiny = [o for o in TINY if not o.startswith("data.")]
    cfg = compose_cfg(
        "mlvgm_simclr",
        [
            *tiny,
            "data=dali",
            f"data.train_path={out}",
            "data.num_threads=1",
            "views=real",
            "data.crop_size=24",
        ],
    )
    job = build_pretraining(cfg, tmp_path / "run")
    assert job.num_classes == len(list(out.glob("class_*")))
    assert job.data.loader.size == 24  # data.crop_size, not the folder's resolution (32)
    job.trainer.fit(job.method, datamodule=job.data)
    assert job.trainer.global_step == 3


def test_disturbed_figures_are_flagged_not_reported_as_fact():
    """Windows that spread, a source faster than the limit, CS above its roofline: each is marked (!)."""
    from solo_mlvgm.bench.report import BenchReport, Point, disturbance

    def point(source: str, img_s: float, low: float, high: float, ratio: float) -> Point:
        return Point(64, source, img_s, low, high, None, 100.0, 1.0, None, None, None, ratio)

    steady = point("limit", 100.0, 98.0, 101.0, 1.0)
    assert disturbance(steady, is_limit=True) == ""
    assert "windows spread 50%" in disturbance(point("limit", 100.0, 60.0, 110.0, 1.0), is_limit=True)
    assert "5.06 x the limit" in disturbance(point("torch", 506.0, 500.0, 510.0, 5.06), is_limit=False)
    assert disturbance(point("torch", 90.0, 89.0, 91.0, 0.9), is_limit=False) == ""

    report = BenchReport(ROOT / "unused", {}, {})
    report.points = [steady, point("continuous", 90.0, 89.0, 91.0, 0.9)]
    report.add_roofline(64, "continuous", generator_rate=100.0)  # r* = 50 img/s, CS measured 90: 180%
    assert any("180% of its roofline" in line for line in report.flagged())
    assert "(!)" in str(report.roofline_table().columns[-1]._cells[0])


def test_an_unknown_energy_country_is_refused_before_any_work(tmp_path):
    if energy_missing():
        pytest.skip(energy_missing())
    cfg = compose_cfg("bench", [*TINY_BENCH, "bench.energy.enabled=true", "bench.energy.country=ZZZ"])
    with pytest.raises(ConfigError, match="'ZZZ' is not a country codecarbon has grid data for"):
        run_benchmark(cfg, tmp_path / "run")
    assert not (tmp_path / "run").exists()


def test_sources_are_timed_in_rounds_and_a_loaded_round_is_flagged(monkeypatch):
    """Each round times one window of every source in turn, so load that hits one round of one source
    shows as a spread of that source's rounds: measured again, then flagged."""
    from solo_mlvgm.bench import driver
    from solo_mlvgm.bench.report import Point

    calls: list[str] = []
    slow = {("torch", 1)}  # round 2 of the torch source ran beside another load

    def fake_point(cfg, ctx, opts, source, batch_size, limit_rate):
        assert opts.windows == 1  # one window per round
        round_ = sum(1 for c in calls if c == source.name) % 3
        calls.append(source.name)
        rate = 50.0 if (source.name, round_) in slow else (100.0 if source.name == "limit" else 80.0)
        return Point(batch_size, source.name, rate, rate, rate, None, 1.0, 0.5, None, None, None, 1.0)

    monkeypatch.setattr(driver, "measure_point", fake_point)
    opts = _Opts(windows=3, dataset_size=1000)
    order = [driver.LimitSource(), SimpleNamespace(name="torch")]
    limit, torch_point = driver.measure_trusted_batch_size(None, None, opts, order, 8)
    assert calls == ["limit", "torch"] * 6  # 3 rounds, then 3 again after the spread was seen
    assert (torch_point.img_s, torch_point.img_s_low, torch_point.img_s_high) == (80.0, 50.0, 80.0)
    assert torch_point.ratio_to_limit == pytest.approx(0.8)
    assert "windows spread 38%" in torch_point.flags and limit.flags == ""


@dataclasses.dataclass(frozen=True)
class _Opts:
    """The two benchmark options the rounds read."""

    windows: int
    dataset_size: int


def test_a_disturbed_limit_flags_every_ratio_at_its_batch_size(monkeypatch):
    from solo_mlvgm.bench import driver
    from solo_mlvgm.bench.report import Point

    def fake_point(cfg, ctx, opts, source, batch_size, limit_rate):
        rates = {"limit": [100.0, 20.0, 100.0], "torch": [80.0, 80.0, 80.0]}[source.name]
        fake_point.calls[source.name] = fake_point.calls.get(source.name, -1) + 1
        rate = rates[fake_point.calls[source.name] % 3]
        return Point(batch_size, source.name, rate, rate, rate, None, 1.0, 0.5, None, None, None, 1.0)

    fake_point.calls = {}
    monkeypatch.setattr(driver, "measure_point", fake_point)
    order = [driver.LimitSource(), SimpleNamespace(name="torch")]
    limit, torch_point = driver.measure_trusted_batch_size(None, None, _Opts(3, 1000), order, 8)
    assert "windows spread 80%" in limit.flags
    assert torch_point.flags == "ratio to a disturbed limit"
