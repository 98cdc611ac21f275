"""Benchmark results: CSV and JSON rewritten after every point, then the Figure-5-style plot (time per epoch
and CO2 per epoch against batch size, one line per source) and rich tables in the terminal."""

from __future__ import annotations

import sys
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from solo_mlvgm.bench.sources import LimitSource, source_class
from solo_mlvgm.runs import replace_atomically, write_csv, write_json


@dataclass(frozen=True)
class Point:
    """The training step fed by one source at one batch size: one row of bench.csv (fields in bench.json's
    order; ``COLUMNS`` is the CSV's)."""

    batch_size: int
    source: str
    img_s: float
    img_s_low: float
    img_s_high: float
    data_only_img_s: float | None  # the source timed alone; None for the limit
    sec_per_epoch: float
    host_peak_gib: float
    device_peak_gib: float | None  # None on a CPU
    energy_kwh_per_epoch: float | None  # None without codecarbon
    co2_kg_per_epoch: float | None
    ratio_to_limit: float
    flags: str = ""  # why this figure cannot be trusted as measured (a disturbed machine), or ""


@dataclass(frozen=True)
class Roofline:
    """Continuous Sampling at one batch size against the best rate of rendering then training: one row of
    roofline.csv."""

    batch_size: int
    generator_img_s: float
    step_img_s: float
    roofline_img_s: float
    continuous_img_s: float
    cs_efficiency: float


COLUMNS = [
    "batch_size",
    "source",
    "img_s",
    "img_s_low",
    "img_s_high",
    "data_only_img_s",
    "sec_per_epoch",
    "ratio_to_limit",
    "host_peak_gib",
    "device_peak_gib",
    "energy_kwh_per_epoch",
    "co2_kg_per_epoch",
    "flags",
]
ROOFLINE_COLUMNS = [f.name for f in fields(Roofline)]


SPREAD_LIMIT = 0.25  # (fastest - slowest window) / median above this: the machine was disturbed
ABOVE_LIMIT = 1.05  # a data source feeding the step faster than the step alone (with 5% timing slack)


def disturbance(point: Point, is_limit: bool) -> str:
    """Why ``point`` cannot be what it measured on an undisturbed machine, or "": its timed windows spread
    too far, or a source fed the training step faster than the step runs with no data cost at all."""
    reasons = []
    spread = (point.img_s_high - point.img_s_low) / point.img_s if point.img_s > 0 else 0.0
    if spread > SPREAD_LIMIT:
        reasons.append(f"windows spread {100 * spread:.0f}% of the median")
    if not is_limit and point.ratio_to_limit > ABOVE_LIMIT:
        reasons.append(f"{point.ratio_to_limit:.2f} x the limit, which no data source can reach")
    return "; ".join(reasons)


def roofline(generator_rate: float, step_rate: float) -> float:
    """The best rate of rendering and training one after the other on one device: 1/(1/r_gen + 1/r_step)."""
    return 1.0 / (1.0 / generator_rate + 1.0 / step_rate)


def _fmt(value: Any, spec: str = ".1f") -> str:
    return "-" if value is None else format(value, spec)


def source_label(source: str) -> str:
    return source_class(source).label


class BenchReport:
    def __init__(self, run_dir: Path, setup: dict[str, Any], skipped: dict[str, str]) -> None:
        self.run_dir, self.setup, self.skipped = run_dir, setup, skipped
        self.points: list[Point] = []
        self.rooflines: list[Roofline] = []
        self.console = Console(width=None if sys.stdout.isatty() else 160)

    def header(self) -> str:
        s = self.setup
        lines = [
            f"device {s['device']} | torch {s['torch']} | threads {s['threads']}",
            f"generator {s['generator']} ({s['generator_resolution']} px, {s['generator_weights']:,} weights) | "
            f"{s['method']} on {s['backbone']} at {s['view_size']} px, pixel preset {s['pixel']}, precision {s['precision']}",
            f"per point: {s['warmup']} warm-up steps, then {s['windows']} windows of {s['steps']} steps; "
            f"epoch = {s['dataset_size']:,} images; CO2 for grid {s['country']}",
        ]
        lines += [f"skipped {name}: {reason}" for name, reason in self.skipped.items()]
        return "\n".join(lines)

    def add(self, point: Point) -> None:
        self.points.append(point)
        flag = f"  (!) disturbed: {point.flags}" if point.flags else ""
        print(
            f"batch {point.batch_size:>4} {source_label(point.source):<22} {point.img_s:9.1f} img/s "
            f"({point.img_s_low:.1f}-{point.img_s_high:.1f}), alone {_fmt(point.data_only_img_s):>9} img/s, "
            f"{point.ratio_to_limit:.2f} x limit{flag}",
            flush=True,
        )

    def flagged(self) -> list[str]:
        """One line per figure that cannot be trusted: disturbed points and CS above its roofline."""
        lines = [f"batch {p.batch_size} {source_label(p.source)}: {p.flags}" for p in self.points if p.flags]
        lines += [
            f"batch {r.batch_size} Continuous Sampling at {100 * r.cs_efficiency:.0f}% of its roofline, "
            "above the best rendering-then-training rate: the generator or the limit was measured disturbed"
            for r in self.rooflines
            if r.cs_efficiency > ABOVE_LIMIT
        ]
        lines += [
            f"batch {r.batch_size} roofline: from a disturbed limit"
            for r in self.rooflines
            if self._limit_disturbed(r.batch_size)
        ]
        return lines

    def _limit_disturbed(self, batch_size: int) -> bool:
        return any(
            p.flags for p in self.points if p.batch_size == batch_size and p.source == LimitSource.name
        )

    def _roofline_suspect(self, r: Roofline) -> bool:
        return r.cs_efficiency > ABOVE_LIMIT or self._limit_disturbed(r.batch_size)

    def add_roofline(self, batch_size: int, source: str, generator_rate: float) -> None:
        """``source`` (Continuous Sampling) at ``batch_size`` against the roofline of its generator's rate
        and the limit's (the training step's own)."""
        at = {p.source: p for p in self.points if p.batch_size == batch_size}
        step_rate, cs_rate = at[LimitSource.name].img_s, at[source].img_s
        best = roofline(generator_rate, step_rate)
        self.rooflines.append(Roofline(batch_size, generator_rate, step_rate, best, cs_rate, cs_rate / best))

    def results(self) -> dict[str, Any]:
        """What bench.json holds (and ``run_benchmark`` returns)."""
        return {
            "setup": self.setup,
            "skipped": self.skipped,
            "points": [asdict(p) for p in self.points],
            "roofline": [asdict(r) for r in self.rooflines],
        }

    def write(self) -> None:
        results = self.results()
        write_json(self.run_dir / "bench.json", results)
        write_csv(self.run_dir / "bench.csv", results["points"], COLUMNS)
        if self.rooflines:
            write_csv(self.run_dir / "roofline.csv", results["roofline"], ROOFLINE_COLUMNS)

    def finish(self) -> None:
        self.write()
        self.plot(self.run_dir / "bench.png")
        self.console.print(self.table())
        if self.rooflines:
            self.console.print(self.roofline_table())
        flagged = self.flagged()
        if flagged:
            print(
                f"warning: {len(flagged)} figure(s) marked (!) were measured on a disturbed machine (another "
                "load beside the benchmark?); they are not what this machine does. Re-run on an idle machine:",
                file=sys.stderr,
            )
            for line in flagged:
                print(f"  (!) {line}", file=sys.stderr)
        self.console.print(f"results: {self.run_dir}/bench.csv, bench.json, bench.png", highlight=False)

    def table(self) -> Table:
        table = Table(title="training step fed by each source (images/s = training samples, 2 views each)")
        for name in (
            "batch",
            "source",
            "img/s",
            "low-high",
            "alone img/s",
            "s/epoch",
            "x limit",
            "host GiB",
            "device GiB",
            "kWh/epoch",
            "g CO2/epoch",
        ):
            table.add_column(name, justify="left" if name == "source" else "right")
        for p in self.points:
            table.add_row(
                str(p.batch_size),
                source_label(p.source),
                _fmt(p.img_s) + (" (!)" if p.flags else ""),
                f"{p.img_s_low:.1f}-{p.img_s_high:.1f}",
                _fmt(p.data_only_img_s),
                _fmt(p.sec_per_epoch, ".0f"),
                _fmt(p.ratio_to_limit, ".2f"),
                _fmt(p.host_peak_gib, ".2f"),
                _fmt(p.device_peak_gib, ".2f"),
                _fmt(p.energy_kwh_per_epoch, ".4f"),
                _fmt(None if p.co2_kg_per_epoch is None else 1000 * p.co2_kg_per_epoch, ".1f"),
            )
        return table

    def roofline_table(self) -> Table:
        table = Table(title="Continuous Sampling against its roofline r* = 1/(1/r_generator + 1/r_step)")
        for name in ("batch", "generator img/s", "step img/s (limit)", "r* img/s", "CS img/s", "CS / r*"):
            table.add_column(name, justify="right")
        for r in self.rooflines:
            table.add_row(
                str(r.batch_size),
                _fmt(r.generator_img_s),
                _fmt(r.step_img_s),
                _fmt(r.roofline_img_s),
                _fmt(r.continuous_img_s),
                f"{100 * r.cs_efficiency:.0f}%" + (" (!)" if self._roofline_suspect(r) else ""),
            )
        return table

    def plot(self, path: Path) -> None:
        import matplotlib
        import matplotlib.ticker

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, (time_ax, co2_ax) = plt.subplots(1, 2, figsize=(10, 4))
        sources = list(dict.fromkeys(p.source for p in self.points))
        for source in sources:
            rows = [p for p in self.points if p.source == source]
            sizes = [p.batch_size for p in rows]
            style = {
                "marker": "o",
                "label": source_label(source),
                "linestyle": "--" if source == LimitSource.name else "-",
            }
            time_ax.plot(sizes, [p.sec_per_epoch / 60 for p in rows], **style)
            co2 = [p.co2_kg_per_epoch for p in rows]
            if all(c is not None for c in co2):
                co2_ax.plot(sizes, [1000 * c for c in co2 if c is not None], **style)
        for ax, label in ((time_ax, "minutes per epoch"), (co2_ax, "g CO2 per epoch")):
            ax.set_xscale("log", base=2)
            ax.set_xticks(sorted({p.batch_size for p in self.points}))
            ax.xaxis.set_major_formatter(matplotlib.ticker.ScalarFormatter())
            ax.xaxis.set_minor_locator(matplotlib.ticker.NullLocator())
            ax.set_xlabel("batch size (per device)")
            ax.set_ylabel(label)
            ax.grid(alpha=0.3)
        time_ax.legend()
        if not co2_ax.lines:
            co2_ax.text(
                0.5,
                0.5,
                "no energy figures (codecarbon absent or disabled)",
                ha="center",
                transform=co2_ax.transAxes,
            )
        s = self.setup
        fig.suptitle(
            f"{s['method']} / {s['backbone']} at {s['view_size']} px on {s['device']}; "
            f"epoch = {s['dataset_size']:,} images",
            fontsize=9,
        )
        fig.tight_layout()
        replace_atomically(path, lambda tmp: fig.savefig(tmp, dpi=120))
        plt.close(fig)
