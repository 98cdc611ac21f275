"""Linear evaluation of a pretrained backbone on labelled data.

python main_linear.py pretrained=runs/mlvgm_simclr/latest
"""

import hydra
from omegaconf import DictConfig

from solo_mlvgm.cli import run_or_exit
from solo_mlvgm.entry.linear_eval import run_linear_eval


@hydra.main(version_base="1.3", config_path="configs", config_name="linear")
def main(cfg: DictConfig) -> None:
    run_or_exit(lambda: run_linear_eval(cfg))


if __name__ == "__main__":
    main()
