"""The training step every data source feeds: the run config's method, backbone, optimiser and precision,
one forward/backward/update per batch, exactly as pretraining runs it (``training_step``)."""

from __future__ import annotations

import torch
from omegaconf import DictConfig

from solo_mlvgm.errors import ConfigError
from solo_mlvgm.methods import SSLMethod, method_class

PRECISIONS = {"32-true": None, "32": None, "bf16-mixed": torch.bfloat16}


def precision_dtype(precision: str) -> torch.dtype | None:
    """The autocast dtype of a Lightning precision the benchmark runs (fp32, or bf16 mixed)."""
    if str(precision) not in PRECISIONS:
        raise ConfigError(f"bench precision must be one of {', '.join(PRECISIONS)}, got '{precision}'")
    return PRECISIONS[str(precision)]


class TrainingStep:
    """``step(batch)``: one optimisation step of a fresh method built from ``cfg`` (same seed every time, so
    every source trains the same initial network), with the optimiser pretraining builds for one device.
    The method's ``self.log`` calls only warn outside a Trainer; the caller filters that warning once."""

    def __init__(self, cfg: DictConfig, num_classes: int, device: torch.device, total_steps: int) -> None:
        cls = method_class(cfg.method)
        cfg = cls.validate_cfg(cfg.copy())
        torch.manual_seed(int(cfg.seed))
        self.method: SSLMethod = cls(cfg, int(num_classes)).to(device)
        self.method.total_steps = total_steps  # BYOL's momentum schedule reads it
        self.method.train()
        self.optimizer = self.method.build_optimizer(world_size=1)
        dtype = precision_dtype(cfg.precision)
        self.autocast = torch.autocast(device.type, dtype=dtype, enabled=dtype is not None)

    def __call__(self, batch: list) -> None:
        with self.autocast:
            loss = self.method.training_step(batch, 0)
        loss.backward()
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
