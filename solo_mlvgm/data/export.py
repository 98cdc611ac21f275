"""Render labelled generator images: in memory (evaluation splits) or to an ImageFolder on disk.

``python -m solo_mlvgm.data.export --out data/toy2k --n 2000`` writes class folders of PNGs and, last, a
``manifest.json``; an export whose manifest matches the request is complete and is reused as it is.
"""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path

import torch
from torch import Tensor
from torchvision.utils import save_image

from solo_mlvgm.data.seeding import EVAL_STREAM, stream_seed
from solo_mlvgm.errors import ConfigError
from solo_mlvgm.generators import build_generator
from solo_mlvgm.generators.base import MultiLatentGenerator
from solo_mlvgm.runs import write_json

SPLITS = {"train": 0, "test": 1, "export": 2}


@torch.no_grad()
def render_labelled(
    generator: MultiLatentGenerator, n: int, seed: int, split: str, batch_size: int = 512
) -> tuple[Tensor, Tensor]:
    """``n`` unperturbed images in [0, 1] and their labels, fixed by (seed, split) and drawn from streams
    that Continuous Sampling never uses."""
    if split not in SPLITS:
        raise ConfigError(f"unknown split '{split}'; known: {', '.join(SPLITS)}")
    images, labels = [], []
    for chunk, start in enumerate(range(0, n, batch_size)):
        rng = torch.Generator(device=generator.device).manual_seed(
            stream_seed(seed, EVAL_STREAM + SPLITS[split], chunk)
        )
        levels = generator.to_levels(generator.sample_base(min(batch_size, n - start), generator=rng))
        images.append(generator(levels).float().cpu())
        y = generator.labels(levels)
        labels.append(y.cpu() if y is not None else torch.full((images[-1].shape[0],), -1, dtype=torch.long))
    return torch.cat(images), torch.cat(labels)


def export_image_folder(
    generator: MultiLatentGenerator, out: str | Path, n: int, seed: int = 0, fmt: str = "png"
) -> Path:
    """Write ``n`` labelled images as ``out/class_XX/NNNNNN.fmt``; reuse a complete identical export."""
    if fmt not in ("png", "jpg"):
        raise ConfigError(f"export format must be png or jpg, got '{fmt}'")
    if n <= 0:
        raise ConfigError(f"export needs n > 0, got {n}")
    out = Path(out)
    manifest = {
        "n": n,
        "seed": seed,
        "format": fmt,
        "generator": type(generator).__name__,
        "arch": generator.arch,
    }
    manifest_path = out / "manifest.json"
    if manifest_path.exists() and json.loads(manifest_path.read_text()) == manifest:
        return out
    if out.exists():
        # Names an export writes ("." prefixes the temporary files of an interrupted write).
        ours = ("class_", "unlabelled", "manifest.json", ".")
        foreign = [p.name for p in out.iterdir() if not p.name.startswith(ours)]
        if foreign:
            raise ConfigError(
                f"'{out}' holds files that are not an export ({foreign[:3]}); choose another --out"
            )
        # An incomplete or different earlier export: remove it whole so no stale image survives.
        manifest_path.unlink(missing_ok=True)
        for entry in out.iterdir():
            if entry.is_dir():
                shutil.rmtree(entry)
            else:
                entry.unlink()
    images, labels = render_labelled(generator, n, seed, "export")
    for i, (image, label) in enumerate(zip(images, labels.tolist(), strict=True)):
        folder = out / (f"class_{label:02d}" if label >= 0 else "unlabelled")
        folder.mkdir(parents=True, exist_ok=True)
        save_image(image, folder / f"{i:06d}.{fmt}")
    write_json(manifest_path, manifest)  # last: its presence marks a complete export
    return out


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
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
        raise SystemExit(f"error: {err}") from None
    print(f"exported {args.n} images to {path}")


if __name__ == "__main__":
    main()
