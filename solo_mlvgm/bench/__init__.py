"""Data-source speed benchmark: Continuous Sampling against the torch DataLoader, DALI and FFCV on the same
training step (``python main_bench.py --config-name bench``)."""

from solo_mlvgm.bench.driver import run_benchmark

__all__ = ["run_benchmark"]
