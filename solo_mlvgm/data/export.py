"""Render labelled generator images: in memory (evaluation splits) or to an ImageFolder on disk.

``python -m solo_mlvgm.data.export --out data/toy2k --n 2000`` writes class folders of PNGs (or JPEGs) and,
last, a ``manifest.json`` that also records the file count and total size. An export whose manifest matches
the request and whose files are all there at their recorded size is reused as it is; any other (interrupted,
truncated, different) is rendered again.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch import Tensor

from solo_mlvgm.data.real import UNLABELLED
from solo_mlvgm.data.seeding import EVAL_STREAM, stream_seed
from solo_mlvgm.errors import ConfigError
from solo_mlvgm.generators import build_generator
from solo_mlvgm.generators.base import MultiLatentGenerator
from solo_mlvgm.runs import write_json

SPLITS = {"train": 0, "test": 1, "export": 2, "val": 3}  # val: online validation of solo-learn files
FORMATS = ("png", "jpg")
JPEG_QUALITY = 95
MANIFEST = "manifest.json"
EXPORT_CHUNK = 64  # images rendered per generator call; part of what fixes an export's images


@torch.no_grad()
def iter_labelled(
    generator: MultiLatentGenerator, n: int, seed: int, split: str, batch_size: int = 512
) -> Iterator[tuple[Tensor, Tensor]]:
    """``n`` unperturbed images in [0, 1] and their labels (-1 without labels) on the CPU, in chunks of
    ``batch_size``, fixed by (seed, split) and drawn from streams that Continuous Sampling never uses."""
    if split not in SPLITS:
        raise ConfigError(f"unknown split '{split}'; known: {', '.join(SPLITS)}")
    for chunk, start in enumerate(range(0, n, batch_size)):
        rng = torch.Generator(device=generator.device).manual_seed(
            stream_seed(seed, EVAL_STREAM + SPLITS[split], chunk)
        )
        levels = generator.to_levels(generator.sample_base(min(batch_size, n - start), generator=rng))
        images = generator(levels).float().cpu()
        y = generator.labels(levels)
        yield images, (y.cpu() if y is not None else torch.full((images.shape[0],), -1, dtype=torch.long))


def render_labelled(
    generator: MultiLatentGenerator, n: int, seed: int, split: str, batch_size: int = 512
) -> tuple[Tensor, Tensor]:
    """All of ``iter_labelled`` in memory: (images [n, 3, H, W], labels [n])."""
    images, labels = zip(*iter_labelled(generator, n, seed, split, batch_size), strict=True)
    return torch.cat(images), torch.cat(labels)


def export_manifest(generator: MultiLatentGenerator, n: int, seed: int, fmt: str) -> dict:
    """What fixes an export's images: the request and the generator's architecture."""
    return {
        "n": n,
        "seed": seed,
        "format": fmt,
        "generator": type(generator).__name__,
        "arch": generator.arch,
        "chunk": EXPORT_CHUNK,
    }


def export_files(out: Path) -> list[Path]:
    """The image files of an export (class folders, or ``unlabelled``), sorted."""
    return sorted(p for p in out.glob("*/*") if p.is_file() and not p.name.startswith("."))


def export_is_complete(out: str | Path, manifest: dict) -> bool:
    """True when ``out`` holds exactly the export ``manifest`` describes: the same request, and every file
    present at the size recorded when it was written (a truncated or missing file makes it incomplete)."""
    out = Path(out)
    try:
        written = json.loads((out / MANIFEST).read_text())
    except (OSError, ValueError):
        return False
    if not isinstance(written, dict) or {k: written.get(k) for k in manifest} != manifest:
        return False
    files = export_files(out)
    return len(files) == written.get("files") and sum(p.stat().st_size for p in files) == written.get("bytes")


def check_export_target(out: str | Path) -> None:
    """Refuse a folder that holds anything an export does not write (it would be deleted on a redo)."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise ConfigError(f"export target '{out}' is a file; choose a folder")
    if out.is_dir():
        # Names an export writes ("." prefixes the temporary files of an interrupted write).
        ours = ("class_", UNLABELLED, MANIFEST, ".")
        foreign = [p.name for p in out.iterdir() if not p.name.startswith(ours)]
        if foreign:
            raise ConfigError(
                f"'{out}' holds files that are not an export ({foreign[:3]}); choose another folder"
            )


def _save(image: Tensor, path: Path) -> None:
    array = image.mul(255).add_(0.5).clamp_(0, 255).to(torch.uint8).permute(1, 2, 0).numpy()
    image_file = Image.fromarray(np.ascontiguousarray(array))
    if path.suffix == ".jpg":
        image_file.save(path, quality=JPEG_QUALITY)
    else:
        image_file.save(path)


def export_image_folder(
    generator: MultiLatentGenerator, out: str | Path, n: int, seed: int = 0, fmt: str = "png"
) -> Path:
    """Write ``n`` labelled images as ``out/class_XX/NNNNNN.fmt`` (``out/unlabelled/`` for a generator
    without labels; JPEGs at quality 95); reuse a complete identical export."""
    if fmt not in FORMATS:
        raise ConfigError(f"export format must be one of {', '.join(FORMATS)}, got '{fmt}'")
    if n <= 0:
        raise ConfigError(f"export needs n > 0, got {n}")
    out = Path(out)
    manifest = export_manifest(generator, n, seed, fmt)
    manifest_path = out / MANIFEST
    if export_is_complete(out, manifest):
        return out
    check_export_target(out)
    if out.exists():
        # An incomplete or different earlier export: remove it whole so no stale image survives.
        manifest_path.unlink(missing_ok=True)
        for entry in out.iterdir():
            if entry.is_dir():
                shutil.rmtree(entry)
            else:
                entry.unlink()
    i = 0
    for images, labels in iter_labelled(generator, n, seed, "export", batch_size=EXPORT_CHUNK):
        for image, label in zip(images, labels.tolist(), strict=True):
            folder = out / (f"class_{label:02d}" if label >= 0 else UNLABELLED)
            folder.mkdir(parents=True, exist_ok=True)
            _save(image, folder / f"{i:06d}.{fmt}")
            i += 1
    files = export_files(out)
    # Last: its presence, with the count and size of what was written, marks a complete export.
    write_json(
        manifest_path, {**manifest, "files": len(files), "bytes": sum(p.stat().st_size for p in files)}
    )
    return out


def main(argv: list[str] | None = None) -> int:
    """``python -m solo_mlvgm export ...``: a finite labelled ImageFolder from a generator."""
    parser = argparse.ArgumentParser(prog="python -m solo_mlvgm export", description=__doc__.splitlines()[0])
    parser.add_argument("--out", required=True, help="output folder (class subfolders are created)")
    parser.add_argument("--n", type=int, default=2000, help="number of images")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--format", default="png", choices=["png", "jpg"])
    parser.add_argument("--generator", default="toyworld")
    parser.add_argument("--resolution", type=int, default=None, help="toy world resolution (default 32)")
    args = parser.parse_args(argv)
    try:
        kwargs = {"resolution": args.resolution} if args.resolution else {}
        path = export_image_folder(
            build_generator(args.generator, **kwargs), args.out, args.n, args.seed, args.format
        )
    except ConfigError as err:
        print(f"error: {str(err).splitlines()[0]}", file=sys.stderr)
        return 2
    print(f"exported {args.n} images to {path}")
    return 0
