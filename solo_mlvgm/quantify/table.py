"""The paper's Table 1 for any generator: per level the loss at the stop, mu and sigma, and a verdict.

Verdict rule (documented in the README):

- ``unused``: the level's loss never reached gamma within its step budget: no perturbation the walker found
  removes gamma nats of information, so the generator barely reads the level. This never comes from mu: an
  exactly dead level gives its walker no gradient, so its mu stays ~0.
- ``over-used``: it reached gamma with mu < ``overused_below`` (default 0.25) x the median mu of the levels
  that reached gamma: a tiny change of this level already changes the image as much as a large change of
  the others (BigBiGAN's first level in the paper: 0.67 against a median of 6.97).
- ``used``: every other level that reached gamma.
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from solo_mlvgm.runs import write_atomic, write_csv, write_json

VERDICTS = ("over-used", "used", "unused")
COLUMNS = ("level", "final_loss", "mu", "sigma", "steps", "verdict", "reached_gamma", "stop_step", "seconds")


def assign_verdicts(records: Sequence[dict[str, Any]], overused_below: float = 0.25) -> list[dict[str, Any]]:
    """Copies of ``records`` with ``verdict`` set by the rule in the module docstring."""
    reached = [r["mu"] for r in records if r["reached_gamma"]]
    median = statistics.median(reached) if reached else 0.0
    out = []
    for r in records:
        if not r["reached_gamma"]:
            verdict = "unused"
        elif r["mu"] < overused_below * median:
            verdict = "over-used"
        else:
            verdict = "used"
        out.append({**r, "verdict": verdict})
    return out


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.3g}" if abs(value) < 1000 else f"{value:.0f}"
    return str(value)


def table_markdown(records: Sequence[dict[str, Any]], title: str = "") -> str:
    head = ["level", "InfoNCE at stop", "mu", "sigma", "steps", "verdict"]
    lines = [f"{title}\n" if title else ""]
    lines += ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in records:
        loss = _fmt(r["final_loss"]) + ("" if r["reached_gamma"] else " (best, never reached gamma)")
        cells = [r["level"], loss, _fmt(r["mu"]), _fmt(r["sigma"]), str(r["steps"]), r["verdict"]]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines).lstrip("\n") + "\n"


def write_table(run_dir: Path, records: Sequence[dict[str, Any]], title: str = "") -> list[Path]:
    """mi_table.json (every field), mi_table.csv (the main columns) and mi_table.md."""
    return [
        write_json(run_dir / "mi_table.json", list(records)),
        write_csv(run_dir / "mi_table.csv", records, COLUMNS),
        write_atomic(run_dir / "mi_table.md", table_markdown(records, title)),
    ]
