"""MI quantification of a generator's latent levels: the paper's Table 1, plots and recommended views.

python main_quantify.py --config-name mi_quant
"""

import hydra
from omegaconf import DictConfig, OmegaConf

from solo_mlvgm.cli import record_run_folders, run_in_output_dir
from solo_mlvgm.entry.quantify import run_quantification

# hydra.run.dir of configs/mi_quant.yaml: the resume folder when one is given, else a new timestamped folder.
OmegaConf.register_new_resolver("resume_or", lambda resume, fresh: resume or fresh, replace=True)


@hydra.main(version_base="1.3", config_path="configs", config_name="mi_quant")
def main(cfg: DictConfig) -> None:
    run_in_output_dir(run_quantification, cfg)


if __name__ == "__main__":
    record_run_folders()  # a refused run leaves no folder or file behind, whatever config file it ran
    main()
