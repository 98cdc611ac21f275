"""Run every solo-learn pretrain config file of a folder on Continuous Sampling and print a table.

    python scripts/solo_config_table.py <solo-learn>/scripts/pretrain/cifar [extra overrides ...]

Each file goes through main_pretrain.py with the README's command (``data.format=mlvgm +generator=toyworld
+views=toyworld_multilevel wandb.enabled=False accelerator=cpu devices=1 strategy=auto precision=32
sync_batchnorm=False``), ``+max_steps=3`` and the extra overrides, in a scratch folder. The table says
whether it trained or was refused (with the error line), how many of its keys were honoured, and which
were not applicable or not read (from the run's config.yaml). Needs solo-learn installed.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
COMMAND = [
    "data.format=mlvgm",
    "+generator=toyworld",
    "+views=toyworld_multilevel",
    "wandb.enabled=False",
    "accelerator=cpu",
    "devices=1",
    "strategy=auto",
    "precision=32",
    "sync_batchnorm=False",
    "+max_steps=3",
]


def run_one(folder: Path, name: str, extra: list[str]) -> dict:
    with tempfile.TemporaryDirectory() as scratch:
        start = time.perf_counter()
        done = subprocess.run(
            [
                sys.executable,
                str(REPO / "main_pretrain.py"),
                "--config-path",
                str(folder),
                "--config-name",
                name,
                *COMMAND,
                *extra,
            ],
            cwd=scratch,
            capture_output=True,
            text=True,
            env={**os.environ, "PYTHONWARNINGS": "ignore"},
        )
        seconds = time.perf_counter() - start
        row = {"file": name, "seconds": seconds, "code": done.returncode}
        records = list(Path(scratch).glob("runs/*/2*/config.yaml"))
        if done.returncode == 0 and records:
            keys = yaml.safe_load(records[0].read_text())["solo_file_keys"]
            shapes = [line.strip() for line in done.stdout.splitlines() if line.strip().startswith("group ")]
            row.update(result="trained", keys=keys, crops=shapes)
        else:
            errors = [line for line in done.stderr.splitlines() if line.startswith("error:")]
            row.update(
                result="refused" if done.returncode == 2 else "FAILED",
                line=(errors or done.stderr.strip().splitlines()[-1:] or [""])[0],
            )
        return row


def main() -> None:
    if len(sys.argv) < 2 or not Path(sys.argv[1]).is_dir():
        print(
            "usage: python scripts/solo_config_table.py <solo-learn config folder> [overrides ...]",
            file=sys.stderr,
        )
        raise SystemExit(2)
    folder, extra = Path(sys.argv[1]).resolve(), sys.argv[2:]
    print(
        "| file | result | keys honoured | not applicable | not read | crops | s |\n| --- | --- | --- | --- | --- | --- | --- |"
    )
    for path in sorted(folder.glob("*.yaml")):
        row = run_one(folder, path.name, extra)
        if row["result"] == "trained":
            keys = row["keys"]
            print(
                f"| {row['file']} | trained | {len(keys['honoured'])} | {', '.join(keys['not_applicable']) or '-'} | "
                f"{', '.join(keys['not_read']) or '-'} | {'; '.join(row['crops'])} | {row['seconds']:.0f} |",
                flush=True,
            )
        else:
            print(
                f"| {row['file']} | {row['result']}: `{row['line']}` | | | | | {row['seconds']:.0f} |",
                flush=True,
            )


if __name__ == "__main__":
    main()
