"""Rendering speed of the full-size generators (random weights): images/s per batch size, precision and
memory format.

    python scripts/generator_speed.py [--generators bigbigan stylegan2 stylegan2_cars] [--batch-sizes 1 2 4]
        [--precisions fp32 bf16] [--formats contiguous channels_last] [--repeats 3] [--device cuda] [--json f]

bigbigan: 128 px, ch 96 (70.4M weights); stylegan2: config-f 512 px (30.3M); stylegan2_cars: the same
network with the LSUN Cars crop (centre 384) and resize (128 px). One timed call maps fresh latents and
renders a batch (as Continuous Sampling does each step, without the views). Median over repeats after a
warm-up call, the device synchronised before every clock read; on CUDA also the peak memory. Defaults: on a
CPU fp32 only (bf16 autocast is emulated and slow on CPUs without bf16 instructions) and small batches.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import json

import torch

from solo_mlvgm.generators import build_generator
from solo_mlvgm.generators.base import MultiLatentGenerator
from solo_mlvgm.timing import device_name, time_calls

GENERATORS = {
    "bigbigan": ("bigbigan", {}),
    "stylegan2": ("stylegan2", {}),
    "stylegan2_cars": ("stylegan2", {"center_crop": 384, "resize": 128}),
}
DTYPES = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}


def render_once(
    generator: MultiLatentGenerator, n: int, dtype: torch.dtype | None, rng: torch.Generator
) -> None:
    device = generator.device
    autocast = torch.autocast(device.type, dtype=dtype) if dtype is not None else contextlib.nullcontext()
    with torch.no_grad(), autocast:
        generator(generator.to_levels(generator.sample_base(n, generator=rng)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--generators", nargs="+", default=list(GENERATORS), choices=list(GENERATORS))
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--batch-sizes", nargs="+", type=int, default=None)
    parser.add_argument("--precisions", nargs="+", default=None, choices=list(DTYPES))
    parser.add_argument("--formats", nargs="+", default=["contiguous", "channels_last"])
    parser.add_argument("--repeats", type=int, default=None)
    parser.add_argument("--json", default=None, help="also write the points to this JSON file")
    args = parser.parse_args()
    device = torch.device(args.device)
    gpu = device.type == "cuda"
    batch_sizes = args.batch_sizes or ([32, 64, 128, 256] if gpu else [1, 2, 4])
    precisions = args.precisions or (["fp32", "bf16"] if gpu else ["fp32"])
    repeats = args.repeats or (10 if gpu else 3)
    bad = [f for f in args.formats if f not in ("contiguous", "channels_last")]
    if bad or min(batch_sizes) < 1 or repeats < 1:
        parser.error("formats are contiguous|channels_last; batch sizes and repeats must be >= 1")
    name = device_name(device)
    print(f"device {device} ({name}) | torch {torch.__version__} | threads {torch.get_num_threads()}")
    print(
        f"{'generator':<16}{'out px':>7}{'precision':>10}{'format':>15}{'batch':>7}{'img/s':>10}"
        f"{'spread':>17}{'peak GiB':>10}"
    )
    points = []
    for key in args.generators:
        registry_name, options = GENERATORS[key]
        torch.manual_seed(0)
        generator = build_generator(registry_name, **options).to(device)
        for memory_format in args.formats:
            fmt = torch.channels_last if memory_format == "channels_last" else torch.contiguous_format
            generator.to(memory_format=fmt)
            for precision in precisions:
                for n in batch_sizes:
                    rng = torch.Generator(device=device).manual_seed(0)
                    if gpu:
                        torch.cuda.reset_peak_memory_stats(device)
                    call = functools.partial(render_once, generator, n, DTYPES[precision], rng)
                    timing = time_calls(call, repeats, device)
                    peak = torch.cuda.max_memory_allocated(device) / 2**30 if gpu else None
                    point = {
                        "generator": key,
                        "resolution": generator.resolution,
                        "precision": precision,
                        "format": memory_format,
                        "batch_size": n,
                        "images_per_s": timing.rate(n),
                        "images_per_s_range": [n / timing.high, n / timing.low],
                        "peak_gib": peak,
                        "repeats": repeats,
                        "device": name,
                    }
                    points.append(point)
                    low, high = point["images_per_s_range"]
                    print(
                        f"{key:<16}{generator.resolution:>7}{precision:>10}{memory_format:>15}{n:>7}"
                        f"{timing.rate(n):>10.2f}{f'{low:.2f}-{high:.2f}':>17}{f'{peak:.2f}' if gpu else '-':>10}",
                        flush=True,
                    )
        del generator
        if gpu:
            torch.cuda.empty_cache()
    if args.json:
        with open(args.json, "w") as f:
            json.dump(points, f, indent=1)
        print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
