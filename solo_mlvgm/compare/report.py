"""The comparison's report: mean and spread over seeds per (row, method), ``results.md`` (rows x methods,
like the paper's Tables 2/3), ``results.json`` and a bar plot.

The spread is the sample standard deviation over seeds (0 with one seed). Rows trained by one method only
(the supervised bound) and the random-backbone floor are reported as references below the table.
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from omegaconf import DictConfig, OmegaConf  # noqa: E402

from solo_mlvgm.compare.plan import FLOOR_ROW  # noqa: E402
from solo_mlvgm.runs import replace_atomically, write_atomic, write_json  # noqa: E402


def _stats(values: Sequence[float]) -> dict[str, float]:
    return {
        "mean": statistics.fmean(values),
        "std": statistics.stdev(values) if len(values) > 1 else 0.0,
    }


def aggregate(results: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """One entry per (row, method) in first-seen order: top-1/top-5 mean and std, seeds, minutes per run."""
    groups: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for r in results:
        groups.setdefault((r["row"], r["method"]), []).append(r)
    cells = []
    for (row, method), rs in groups.items():
        cells.append(
            {
                "row": row,
                "label": rs[0]["label"],
                "method": method,
                "seeds": [r["seed"] for r in rs],
                "top1": _stats([r["top1"] for r in rs]),
                "top5": _stats([r["top5"] for r in rs]),
                "collapsed_seeds": [r["seed"] for r in rs if r.get("collapsed")],
                "minutes_per_run": statistics.fmean(
                    (r["pretrain_seconds"] + r["probe_seconds"]) / 60 for r in rs
                ),
            }
        )
    return cells


def margins(cells: Sequence[dict[str, Any]], ours: str, baselines: Sequence[str]) -> dict[str, float]:
    """Per method: top-1 of row ``ours`` minus the best of the ``baselines`` rows (mean over seeds)."""
    out = {}
    for method in {c["method"] for c in cells if c["row"] == ours}:
        mine = next(c for c in cells if c["row"] == ours and c["method"] == method)["top1"]["mean"]
        others = [c["top1"]["mean"] for c in cells if c["method"] == method and c["row"] in baselines]
        if others:
            out[method] = mine - max(others)
    return out


def _fmt(stat: dict[str, float], with_std: bool) -> str:
    return f"{stat['mean']:.1f} ± {stat['std']:.1f}" if with_std else f"{stat['mean']:.1f}"


def _by_row(
    cells: Sequence[dict[str, Any]], methods: Sequence[str]
) -> tuple[dict[tuple[str, str], dict[str, Any]], list[str]]:
    """(cell by (row, method), the table's rows in order: those trained with one of ``methods``); the
    other rows (supervised, random backbone) are references."""
    by_key = {(c["row"], c["method"]): c for c in cells}
    rows = [r for r in dict.fromkeys(c["row"] for c in cells) if any((r, m) in by_key for m in methods)]
    return by_key, rows


def warnings_of(cells: Sequence[dict[str, Any]]) -> dict[tuple, str]:
    """What is wrong with a (row, method) cell, in words: seeds whose representation collapsed, and a mean
    top-1 at or below the random backbone's (the run learned nothing a random init does not have)."""
    floor = next((c["top1"]["mean"] for c in cells if c["row"] == FLOOR_ROW), None)
    out = {}
    for c in cells:
        if c["row"] == FLOOR_ROW:
            continue
        found = []
        if c.get("collapsed_seeds"):
            found.append("collapsed in seed " + ", ".join(str(s) for s in c["collapsed_seeds"]))
        if floor is not None and c["top1"]["mean"] <= floor:
            found.append(f"below the random-backbone floor ({floor:.1f})")
        if found:
            out[(c["row"], c["method"])] = "; ".join(found)
    return out


def render_markdown(
    cells: Sequence[dict[str, Any]], methods: Sequence[str], title: str, notes: Sequence[str]
) -> str:
    by_key, table_rows = _by_row(cells, methods)
    flagged = warnings_of(cells)
    header = "| views | " + " | ".join(f"{m} top-1 | {m} top-5" for m in methods) + " | min / run |"
    lines = [f"# {title}", "", header, "|" + " --- |" * (2 * len(methods) + 2)]
    for row in table_rows:
        present = [by_key[(row, m)] for m in methods if (row, m) in by_key]
        label = present[0]["label"]
        values = []
        for m in methods:
            c = by_key.get((row, m))
            mark = " (!)" if (row, m) in flagged else ""
            values += [_fmt(c["top1"], True) + mark, _fmt(c["top5"], False)] if c else ["-", "-"]
        minutes = statistics.fmean(c["minutes_per_run"] for c in present)
        lines.append(f"| {label} | " + " | ".join(values) + f" | {minutes:.1f} |")
    references = [c for c in cells if c["row"] not in table_rows]
    if references:
        lines += ["", "References (same backbone and evaluation):", ""]
        for c in references:
            lines.append(
                f"- {c['label']}: top-1 {_fmt(c['top1'], True)}, top-5 {_fmt(c['top5'], False)}"
                f" ({len(c['seeds'])} seeds)"
            )
    if flagged:
        lines += ["", "(!) not a usable figure:", ""]
        lines += [f"- {by_key[key]['label']}, {key[1]}: {why}" for key, why in flagged.items()]
    if notes:
        lines += ["", *notes]
    return "\n".join(lines) + "\n"


def plot_bars(path: Path, cells: Sequence[dict[str, Any]], methods: Sequence[str]) -> None:
    """Top-1 per row, one bar per method with the seed spread; references as horizontal lines."""
    by_key, rows = _by_row(cells, methods)
    labels = [next(c["label"] for c in cells if c["row"] == r) for r in rows]
    fig, ax = plt.subplots(figsize=(max(6.0, 1.3 * len(rows)), 4.5))
    width = 0.8 / len(methods)
    for i, m in enumerate(methods):
        xs = [j + (i - (len(methods) - 1) / 2) * width for j in range(len(rows))]
        means = [by_key[(r, m)]["top1"]["mean"] if (r, m) in by_key else 0.0 for r in rows]
        stds = [by_key[(r, m)]["top1"]["std"] if (r, m) in by_key else 0.0 for r in rows]
        ax.bar(xs, means, width, yerr=stds, capsize=3, label=m)
    references = [c for c in cells if c["row"] not in rows]
    for c, style in zip(references, ["--", ":", "-."] * len(references), strict=False):
        ax.axhline(c["top1"]["mean"], color="gray", linestyle=style, label=c["label"])
    ax.set_xticks(range(len(rows)))
    ax.set_xticklabels(labels, rotation=20, ha="right", fontsize=8)
    ax.set_ylabel("linear probe top-1 (%)")
    ax.set_ylim(0, 100)
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    fig.tight_layout()
    replace_atomically(path, lambda tmp: fig.savefig(tmp, dpi=120))
    plt.close(fig)


def write_report(
    out: Path,
    cfg: DictConfig,
    results: Sequence[dict[str, Any]],
    skipped: dict[str, str],
    wall_seconds: float,
    trained: int,
) -> dict[str, Any]:
    """Write results.json, results.md and results.png into ``out``; print the table; return the summary."""
    methods = [str(m) for m in cfg.methods]
    cells = aggregate(results)
    ours = str(cfg.report.get("ours") or "")
    baselines = [str(b) for b in cfg.report.get("baselines") or ()]
    margin = margins(cells, ours, baselines) if ours else {}
    total_minutes = sum(r["pretrain_seconds"] + r["probe_seconds"] for r in results) / 60
    notes = [
        f"Seeds {sorted({r['seed'] for r in results})}; top-1 as mean ± sample std over seeds. "
        f"Compute of all runs: {total_minutes:.1f} min (pretraining + probe).",
    ]
    if margin:
        notes.append(
            "Margin of '"
            + ours
            + "' over the best baseline row (top-1 points): "
            + ", ".join(f"{m} {v:+.1f}" for m, v in sorted(margin.items()))
        )
    notes += [f"Skipped row '{name}': {reason}" for name, reason in skipped.items()]
    summary = {
        "name": str(cfg.name),
        "methods": methods,
        "cells": cells,
        "margin_over_best_baseline": margin,
        "skipped": skipped,
        "runs": list(results),
        "compute_minutes": total_minutes,
        "wall_seconds_this_invocation": wall_seconds,
        "runs_trained_this_invocation": trained,
        "config": OmegaConf.to_container(cfg, resolve=True),
    }
    write_json(out / "results.json", summary)
    markdown = render_markdown(cells, methods, str(cfg.get("title") or cfg.name), notes)
    write_atomic(out / "results.md", markdown)
    plot_bars(out / "results.png", cells, methods)
    print(markdown)
    print(f"results: {out / 'results.md'}, {out / 'results.json'}, {out / 'results.png'}")
    return summary
