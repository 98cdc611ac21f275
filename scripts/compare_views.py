"""Compare view strategies: pretrain every row x method x seed, probe linearly, write the results table.

python scripts/compare_views.py --config-name compare_toyworld            # the toy-world Table 2
python scripts/compare_views.py --config-name compare_toyworld force=true # recompute finished runs
"""

import hydra
from omegaconf import DictConfig

from solo_mlvgm.cli import run_or_exit
from solo_mlvgm.compare.runner import run_comparison


@hydra.main(version_base="1.3", config_path="../configs", config_name="compare_toyworld")
def main(cfg: DictConfig) -> None:
    run_or_exit(lambda: run_comparison(cfg))


if __name__ == "__main__":
    main()
