"""Self-supervised pretraining on a multi-latent generator (or an ImageFolder baseline).

python main_pretrain.py --config-name mlvgm_simclr        # also mlvgm_simsiam, mlvgm_byol
"""

from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig

from solo_mlvgm.cli import run_or_exit
from solo_mlvgm.pretrain import run_pretraining


@hydra.main(version_base="1.3", config_path="configs", config_name="mlvgm_simclr")
def main(cfg: DictConfig) -> None:
    run_dir = Path(HydraConfig.get().runtime.output_dir)
    run_or_exit(lambda: run_pretraining(cfg, run_dir))


if __name__ == "__main__":
    main()
