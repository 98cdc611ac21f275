"""The training step every data source feeds: the run config's method, backbone, optimiser and precision,
one forward/backward/update per batch, exactly as pretraining runs it (``training_step``)."""

from __future__ import annotations

import contextlib
import warnings

import torch
from omegaconf import DictConfig, open_dict

from solo_mlvgm.errors import ConfigError
from solo_mlvgm.methods import SSLMethod, method_class
from solo_mlvgm.methods.base import _build_optimizer, _split_kwargs

PRECISIONS = {"32-true": None, "32": None, "bf16-mixed": torch.bfloat16}


def check_precision(precision: str, device: torch.device) -> torch.dtype | None:
    if str(precision) not in PRECISIONS:
        raise ConfigError(f"bench precision must be one of {', '.join(PRECISIONS)}, got '{precision}'")
    dtype = PRECISIONS[str(precision)]
    if dtype is not None and device.type == "cpu":
        warnings.warn("bf16-mixed on a CPU is emulated on most CPUs and slow", stacklevel=2)
    return dtype


class TrainingStep:
    """``step(batch)``: one optimisation step of a fresh method built from ``cfg`` (same seed every time, so
    every source trains the same initial network)."""

    def __init__(self, cfg: DictConfig, num_classes: int, device: torch.device, total_steps: int) -> None:
        cls = method_class(cfg.method)
        cfg = cls.validate_cfg(cfg.copy())
        with open_dict(cfg):
            cfg.data.num_classes = int(num_classes)
        torch.manual_seed(int(cfg.seed))
        self.method: SSLMethod = cls(cfg).to(device)
        self.method.total_steps = total_steps  # BYOL's momentum schedule reads it
        self.method.train()
        opt = cfg.optimizer
        exclude, kwargs = _split_kwargs(opt)
        params = [p for p in self.method.parameters() if p.requires_grad]
        lr = float(opt.lr) * int(opt.batch_size) / 256
        self.optimizer = _build_optimizer(opt.name, [{"params": params}], lr, float(opt.weight_decay), kwargs)
        self.device = device
        self.autocast_dtype = check_precision(cfg.precision, device)

    def __call__(self, batch: list) -> None:
        autocast = (
            torch.autocast(self.device.type, dtype=self.autocast_dtype)
            if self.autocast_dtype is not None
            else contextlib.nullcontext()
        )
        with warnings.catch_warnings():  # self.log outside a Trainer only warns; the bench logs nothing
            warnings.filterwarnings("ignore", message=".*self.log.*")
            with autocast:
                loss = self.method.training_step(batch, 0)
        loss.backward()
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
