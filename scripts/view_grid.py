"""Write the level grid PNG (the paper's Figure 4): anchors, then one row per level perturbed alone.

python scripts/view_grid.py out=view_grid.png [generator.resolution=64] [views=single_random]
"""

import hydra
from omegaconf import DictConfig

from solo_mlvgm.checks import integer
from solo_mlvgm.cli import run_or_exit
from solo_mlvgm.settings import GeneratorSpec
from solo_mlvgm.views import RandomPerturbation, ViewSpec, save_level_grid


@hydra.main(version_base="1.3", config_path="../configs", config_name="view_grid")
def main(cfg: DictConfig) -> None:
    def write() -> None:
        n_anchors = integer(cfg.n_anchors, "n_anchors", 1)
        generator = GeneratorSpec.from_config(cfg.generator).build()
        rows = save_level_grid(
            cfg.out,
            generator,
            n_anchors=n_anchors,
            spec=ViewSpec.from_config(cfg.views),
            default=RandomPerturbation(std=float(cfg.default_std)),
            seed=int(cfg.seed),
        )
        print(f"wrote {cfg.out}: rows {rows}")

    run_or_exit(write)


if __name__ == "__main__":
    main()
