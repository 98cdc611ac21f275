"""Self-supervised pretraining on a multi-latent generator (or an ImageFolder baseline).

python main_pretrain.py --config-name mlvgm_simclr        # also mlvgm_simsiam, mlvgm_byol
"""

import hydra
from omegaconf import DictConfig

from solo_mlvgm.cli import record_run_folders, run_in_output_dir
from solo_mlvgm.entry.pretrain import run_pretraining


@hydra.main(version_base="1.3", config_path="configs", config_name="mlvgm_simclr")
def main(cfg: DictConfig) -> None:
    run_in_output_dir(run_pretraining, cfg)


if __name__ == "__main__":
    record_run_folders()  # a refused run leaves no folder or file behind, whatever config file it ran
    main()
