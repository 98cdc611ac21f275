"""Data-source speed benchmark: the same training step fed by Continuous Sampling, the torch DataLoader,
DALI, FFCV and a reused batch (the limit), per batch size; time per epoch, images/s, memory, energy/CO2.

python main_bench.py --config-name bench
"""

import hydra
from omegaconf import DictConfig

from solo_mlvgm.bench import run_benchmark
from solo_mlvgm.cli import record_run_folders, run_in_output_dir


@hydra.main(version_base="1.3", config_path="configs", config_name="bench")
def main(cfg: DictConfig) -> None:
    run_in_output_dir(run_benchmark, cfg)


if __name__ == "__main__":
    record_run_folders()  # a refused run leaves no folder or file behind, whatever config file it ran
    main()
