"""Table 1 over several quantification runs (e.g. seeds): mean +- std per level, and the verdicts.

    python scripts/mi_summary.py runs/mi_table/frozen-default-s*

Prints a markdown table: InfoNCE at the stop, mu, sigma and steps as mean +- std over the runs, the verdicts
of each run, and each run's training time for all levels (the sum of the levels' times in mi_table.json).
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path


def mean_std(values: list[float]) -> str:
    if len(values) == 1:
        return f"{values[0]:.3g}"
    return f"{statistics.mean(values):.3g} +- {statistics.stdev(values):.2g}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+", type=Path, help="run folders holding mi_table.json")
    args = parser.parse_args()
    tables = []
    for run in args.runs:
        path = run / "mi_table.json"
        if not path.is_file():
            raise SystemExit(f"error: no mi_table.json in '{run}' (run main_quantify.py first)")
        tables.append(json.loads(path.read_text()))
    levels = [r["level"] for r in tables[0]]
    if any([r["level"] for r in t] != levels for t in tables):
        raise SystemExit("error: the runs quantified different levels")
    print(f"{len(tables)} runs: {', '.join(str(r) for r in args.runs)}\n")
    print("| level | InfoNCE at stop | mu | sigma | steps | verdicts |")
    print("|---|---|---|---|---|---|")
    for i, level in enumerate(levels):
        rows = [t[i] for t in tables]
        verdicts = ", ".join(r["verdict"] for r in rows)
        cells = [mean_std([r[k] for r in rows]) for k in ("final_loss", "mu", "sigma", "steps")]
        print(f"| {level} | " + " | ".join(cells) + f" | {verdicts} |")
    seconds = [sum(r["seconds"] for r in t) for t in tables]
    print(f"\ntraining time for all levels per run: {', '.join(f'{s / 60:.1f} min' for s in seconds)}")


if __name__ == "__main__":
    main()
