"""Collapse detection: a constant backbone is flagged for every method, a healthy run is not."""

from __future__ import annotations

import pytest
import torch
from torch import Tensor, nn

from solo_mlvgm.entry.pretrain import build_pretraining
from solo_mlvgm.errors import ConfigError
from solo_mlvgm.methods.collapse import COLLAPSE_METRIC, CollapseMonitor, check_threshold, normalised_std

from .conftest import TINY, compose_cfg

METHODS = ("simclr", "simsiam", "byol")


class ConstantBackbone(nn.Module):
    """Maps every image to the same (trainable) feature vector: the collapsed representation."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.value = nn.Parameter(torch.randn(dim))

    def forward(self, images: Tensor) -> Tensor:
        return self.value.expand(len(images), -1) + 0.0 * images.mean()


def _job(tmp_path, method: str, *extra: str):
    cfg = compose_cfg(f"mlvgm_{method}", [*TINY, "backend=lightly", "max_steps=4", *extra])
    return build_pretraining(cfg, tmp_path)


def test_normalised_std_is_zero_when_collapsed_and_near_one_when_spread():
    assert float(normalised_std(torch.ones(64, 32))) == 0.0
    spread = float(normalised_std(torch.randn(4096, 32, generator=torch.Generator().manual_seed(0))))
    assert 0.9 < spread <= 1.0
    one_dim = torch.zeros(4096, 32)
    one_dim[:, 0] = torch.randn(4096)  # everything on one axis: +-e1
    assert float(normalised_std(one_dim)) < 0.2
    for batch in (2, 3, 16):  # never above 1, however small the batch
        assert float(normalised_std(torch.randn(batch, 64))) <= 1.0 + 1e-6


@pytest.mark.parametrize("method", METHODS)
def test_constant_backbone_is_flagged_once(tmp_path, capfd, method):
    job = _job(tmp_path, method)
    constant = ConstantBackbone(job.method.feature_dim)
    job.method.backbone = constant
    if method == "byol":
        job.method.momentum_backbone = ConstantBackbone(job.method.feature_dim)
    job.trainer.fit(job.method, datamodule=job.data)
    summary = job.collapse.summary()
    assert summary["monitored"] and summary["collapsed"], summary
    assert summary["final"] < 0.01 and summary["first_below_step"] is not None
    assert COLLAPSE_METRIC in job.trainer.callback_metrics
    warnings = [line for line in capfd.readouterr().err.splitlines() if "representation collapse" in line]
    assert len(warnings) == 1 and warnings[0].startswith("warning: ")


@pytest.mark.parametrize("method", METHODS)
def test_healthy_run_is_not_flagged(tmp_path, capfd, method):
    job = _job(tmp_path, method)
    job.trainer.fit(job.method, datamodule=job.data)
    summary = job.collapse.summary()
    assert summary["monitored"] and not summary["collapsed"], summary
    assert summary["final"] > 0.3 and summary["first_below_step"] is None
    assert "representation collapse" not in capfd.readouterr().err


def test_warning_waits_for_a_window_and_survives_resume():
    monitor = CollapseMonitor(threshold=0.5, window=2)
    monitor.monitored = monitor.started = True
    for step, value in enumerate([0.9, 0.8, 0.2, 0.1], start=1):
        monitor._step_value = torch.tensor(value)
        monitor.on_train_batch_end(_Trainer(step), _Module(), None, None, step)
    assert monitor.summary()["first_below_step"] == 4 and monitor.summary()["lowest"] == pytest.approx(0.15)
    resumed = CollapseMonitor(threshold=0.5)
    resumed.load_state_dict(monitor.state_dict())
    assert resumed.first_below_step == 4


@pytest.mark.parametrize("bad", [0, 1, -0.2, "abc", None])
def test_bad_threshold_is_one_line(bad):
    with pytest.raises(ConfigError, match="collapse_threshold must be in \\(0, 1\\)"):
        check_threshold(bad)


class _Trainer:
    progress_bar_callback = None

    def __init__(self, step: int) -> None:
        self.global_step = step


class _Module:
    def log(self, *args: object, **kwargs: object) -> None:
        pass
