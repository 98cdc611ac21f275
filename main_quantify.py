"""MI quantification of a generator's latent levels: the paper's Table 1, plots and recommended views.

python main_quantify.py --config-name mi_quant
"""

from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf

from solo_mlvgm.cli import run_or_exit
from solo_mlvgm.quantify.driver import run_quantification

# hydra.run.dir of configs/mi_quant.yaml: the resume folder when one is given, else a new timestamped folder.
OmegaConf.register_new_resolver("resume_or", lambda resume, fresh: resume or fresh, replace=True)


@hydra.main(version_base="1.3", config_path="configs", config_name="mi_quant")
def main(cfg: DictConfig) -> None:
    run_dir = Path(HydraConfig.get().runtime.output_dir)
    run_or_exit(lambda: run_quantification(cfg, run_dir))


if __name__ == "__main__":
    main()
