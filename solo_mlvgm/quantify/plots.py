"""Plots of a quantification run: loss against step per level (with the gamma line), and mu +- sigma."""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from solo_mlvgm.runs import replace_atomically  # noqa: E402


def _save(fig: plt.Figure, path: Path) -> Path:
    replace_atomically(path, lambda tmp: fig.savefig(tmp, dpi=120, bbox_inches="tight"))
    plt.close(fig)
    return path


def plot_loss_curves(
    path: Path, histories: dict[str, list[dict[str, float]]], records: Sequence[dict[str, Any]], gamma: float
) -> Path:
    """One panel per level: raw and smoothed InfoNCE against step, the gamma line, the stop marked."""
    n = len(histories)
    cols = min(n, 3)
    rows = math.ceil(n / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4.2 * cols, 3.0 * rows), squeeze=False)
    by_level = {r["level"]: r for r in records}
    for ax, (level, history) in zip(axes.flat, histories.items(), strict=False):
        steps = [h["step"] for h in history]
        ax.plot(steps, [h["loss"] for h in history], lw=0.6, alpha=0.5, label="InfoNCE")
        moving = [(h["step"], h["smoothed"]) for h in history if h["walker_moves"]]
        if moving:
            ax.plot(*zip(*moving, strict=True), lw=1.2, label="smoothed (walker moving)")
        ax.axhline(gamma, color="k", ls="--", lw=0.8, label=f"gamma = {gamma:g}")
        r = by_level.get(level, {})
        if r.get("reached_gamma"):
            ax.axvline(r["stop_step"], color="tab:red", lw=0.8, label=f"stop @ {r['stop_step']}")
        ax.set_title(f"{level}: {r.get('verdict', '')}")
        ax.set_xlabel("step")
        ax.set_ylabel("InfoNCE")
        ax.legend(fontsize=7)
    for ax in list(axes.flat)[n:]:
        ax.axis("off")
    fig.tight_layout()
    return _save(fig, path)


def plot_mu_sigma(path: Path, records: Sequence[dict[str, Any]], title: str = "") -> Path:
    """mu +- sigma of the perturbation norm per level; bars coloured by verdict."""
    colors = {"over-used": "tab:orange", "used": "tab:blue", "unused": "tab:gray"}
    fig, ax = plt.subplots(figsize=(1.2 * len(records) + 2.5, 3.2))
    x = range(len(records))
    ax.bar(
        x,
        [r["mu"] for r in records],
        yerr=[r["sigma"] for r in records],
        color=[colors[r["verdict"]] for r in records],
        capsize=4,
    )
    ax.set_xticks(list(x), [f"{r['level']}\n{r['verdict']}" for r in records], fontsize=8)
    ax.set_ylabel("||T(z) - z||  (mu +- sigma)")
    ax.set_title(title or "perturbation that costs gamma nats, per level")
    fig.tight_layout()
    return _save(fig, path)
