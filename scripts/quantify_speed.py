"""Speed-up of rendering a perturbed pair with the shared prefix computed once (``forward_pair``).

    python scripts/quantify_speed.py [--generator toyworld] [--batch-size 64] [--repeats 20] [--device cpu]

For each level, times one MI-quantification generator pass (anchor and positive, forward and backward into
the walker's delta) rendered as one 2B batch and with ``forward_pair``, which computes what comes before the
perturbed level once. Median over repeats after a warm-up call; on CUDA the device is synchronised before
every clock read.
"""

from __future__ import annotations

import argparse

import torch

from solo_mlvgm.generators import build_generator
from solo_mlvgm.generators.base import MultiLatentGenerator
from solo_mlvgm.timing import median_seconds


def pair_pass(generator: MultiLatentGenerator, base: torch.Tensor, level: int, shared: bool) -> None:
    coords = generator.coords_of((level,))
    delta = torch.full((base.shape[0], len(coords)), 0.1, device=base.device, requires_grad=True)
    anchor, positive = generator.to_levels(base), generator.perturb(base, [((level,), delta)])
    if shared:
        a, p = generator.forward_pair(anchor, positive, level)
    else:
        a, p = MultiLatentGenerator.forward_pair(generator, anchor, positive, level)  # the plain 2B pass
    (a.float().mean() + p.float().mean()).backward()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--generator", default="toyworld")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = parser.parse_args()
    device = torch.device(args.device)
    generator = build_generator(args.generator).freeze().to(device)
    base = generator.sample_base(args.batch_size, generator=torch.Generator(device=device).manual_seed(0))
    print(
        f"{args.generator} | device {device} | torch threads {torch.get_num_threads()} | batch {args.batch_size}"
    )
    for i, level in enumerate(generator.levels):
        plain = median_seconds(lambda: pair_pass(generator, base, i, False), args.repeats, device)  # noqa: B023
        shared = median_seconds(lambda: pair_pass(generator, base, i, True), args.repeats, device)  # noqa: B023
        print(
            f"level {i} {level.name:>8}: 2B pass {1e3 * plain:7.1f} ms | shared prefix {1e3 * shared:7.1f} ms "
            f"| speed-up x{plain / shared:.2f}"
        )


if __name__ == "__main__":
    main()
