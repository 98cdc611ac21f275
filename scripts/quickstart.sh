#!/usr/bin/env bash
# Quickstart: SimCLR on Continuous Sampling from the toy world, then linear evaluation of the backbone
# against a randomly initialised one. Extra arguments go to main_pretrain.py (hydra overrides).
set -euo pipefail
cd "$(dirname "$0")/.."
python main_pretrain.py --config-name mlvgm_simclr name=quickstart "$@"
python main_linear.py pretrained=runs/quickstart/latest
