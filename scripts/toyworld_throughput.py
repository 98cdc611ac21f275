"""Toy-world speed on this machine: generator images/s and Continuous Sampling batches/s.

    python scripts/toyworld_throughput.py [--batch-size 256] [--repeats 10] [--device cpu]

Prints the median over repeats after one warm-up call; on CUDA the device is synchronised before every
clock read.
"""

from __future__ import annotations

import argparse

import torch
from omegaconf import OmegaConf

from solo_mlvgm.data import ContinuousSampling
from solo_mlvgm.generators import build_generator
from solo_mlvgm.timing import median_seconds
from solo_mlvgm.views import ViewSpec


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = parser.parse_args()
    device, n = torch.device(args.device), args.batch_size
    spec = ViewSpec.from_config(OmegaConf.load("configs/views/toyworld_multilevel.yaml"))
    print(f"device {device} | torch threads {torch.get_num_threads()} | batch {n}")
    for resolution in (32, 64):
        world = build_generator("toyworld", resolution=resolution).to(device)
        rng = torch.Generator(device=device).manual_seed(0)
        levels = world.to_levels(world.sample_base(n, generator=rng))
        with torch.no_grad():
            t_gen = median_seconds(lambda: world(levels), args.repeats, device)  # noqa: B023
        dm = ContinuousSampling(world, spec, batch_size=n, epoch_size=n * 100)
        step = iter(range(10**9))
        t_batch = median_seconds(lambda: dm.render(next(step), device), args.repeats, device)  # noqa: B023
        print(
            f"{resolution:>3} px: generator {n / t_gen:8.0f} images/s | Continuous Sampling "
            f"{1 / t_batch:6.2f} batches/s ({2 * n / t_batch:6.0f} augmented view images/s)"
        )


if __name__ == "__main__":
    main()
