"""Collapse detection: a constant backbone is flagged for every method, so is one whose features span one
direction while its projector output stays spread, and a healthy run is not."""

from __future__ import annotations

import csv

import pytest
import torch
from torch import Tensor, nn

from solo_mlvgm.entry.pretrain import build_pretraining
from solo_mlvgm.errors import ConfigError
from solo_mlvgm.methods.collapse import (
    COLLAPSE_METRIC,
    RANK_METRIC,
    CollapseMonitor,
    check_rank_threshold,
    check_threshold,
    effective_rank_fraction,
    normalised_std,
)

from .conftest import TINY, compose_cfg

METHODS = ("simclr", "simsiam", "byol")


class ConstantBackbone(nn.Module):
    """Maps every image to the same (trainable) feature vector: the collapsed representation."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.value = nn.Parameter(torch.randn(dim))

    def forward(self, images: Tensor) -> Tensor:
        return self.value.expand(len(images), -1) + 0.0 * images.mean()


class OneDirectionBackbone(nn.Module):
    """A trained convnet whose features are squeezed onto one direction: every image still gets its own
    point, so the projector output spreads, but the backbone keeps one number per image."""

    def __init__(self, backbone: nn.Module) -> None:
        super().__init__()
        self.backbone = backbone

    def forward(self, images: Tensor) -> Tensor:
        features = self.backbone(images)
        return features[:, :1] * torch.ones_like(features)


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
    rank = job.collapse.feature_rank_summary()
    assert rank["monitored"] and rank["collapsed"] and rank["final"] < 0.1, rank
    err = capfd.readouterr().err.splitlines()
    for what in ("representation collapse", "dimensional collapse"):
        warnings = [line for line in err if what in line]
        assert len(warnings) == 1 and warnings[0].startswith("warning: "), err


@pytest.mark.parametrize("method", METHODS)
def test_features_on_one_direction_are_flagged_by_the_feature_rank(tmp_path, capfd, method):
    job = _job(tmp_path, method, "max_steps=6", "data.epoch_size=96")
    job.collapse.window = 3  # two windows of 48 feature rows each
    job.method.backbone = OneDirectionBackbone(job.method.backbone)
    if method == "byol":
        job.method.momentum_backbone = OneDirectionBackbone(job.method.momentum_backbone)
    job.trainer.fit(job.method, datamodule=job.data)
    rank, spread = job.collapse.feature_rank_summary(), job.collapse.summary()
    assert rank["collapsed"] and rank["first_below_step"] == 3, rank
    assert rank["final"] < 2 / job.method.feature_dim  # about one of its dimensions
    assert not spread["collapsed"], spread  # what the projector signal alone would have missed
    with open(tmp_path / "logs" / "metrics.csv") as f:  # one row per window, at its last step
        rows = [r for r in csv.DictReader(f) if r.get(RANK_METRIC)]
    assert [int(r["step"]) for r in rows] == [2, 5]
    err = capfd.readouterr().err
    assert err.count("warning: dimensional collapse: at the end of training") == 1
    assert "representation collapse" not in err


def test_a_diverged_run_reads_rank_zero_and_a_short_last_window_is_left_out():
    assert float(effective_rank_fraction(torch.full((64, 8), float("nan")))) == 0.0
    monitor = CollapseMonitor(window=4)
    monitor.monitored = monitor.started = True
    rng = torch.Generator().manual_seed(0)
    low = torch.zeros(16, 8)
    low[:, 0] = torch.randn(16, generator=rng)  # one direction of 8
    for step in range(1, 6):  # a full window of one-direction features, then one step of spread ones
        monitor._step_value = torch.tensor(0.9)
        monitor._step_features = low if step <= 4 else torch.randn(16, 8, generator=rng)
        monitor.on_train_batch_end(_Trainer(step), _Module(), None, None, step)
    monitor._close_window(_Trainer(5))  # what the end of fit does: 1 of 4 batches, left out
    assert monitor.rank.recent == [pytest.approx(monitor.rank.lowest)] and monitor.rank.last < 0.2


def test_effective_rank_fraction_reads_the_directions_features_span():
    rng = torch.Generator().manual_seed(0)
    assert 0.9 < float(effective_rank_fraction(torch.randn(4096, 32, generator=rng))) <= 1.0
    half = torch.randn(4096, 32, generator=rng)
    half[:, 16:] = 0.0
    assert float(effective_rank_fraction(half)) == pytest.approx(0.5, abs=0.05)
    assert float(effective_rank_fraction(torch.ones(64, 32))) == pytest.approx(1 / 32, rel=0.01)
    few = torch.randn(8, 32, generator=rng)  # fewer samples than dimensions: the fraction of 8
    assert 0.5 < float(effective_rank_fraction(few)) <= 1.0


@pytest.mark.parametrize("method", METHODS)
def test_healthy_run_is_not_flagged(tmp_path, capfd, method):
    job = _job(tmp_path, method)
    job.trainer.fit(job.method, datamodule=job.data)
    summary = job.collapse.summary()
    assert summary["monitored"] and not summary["collapsed"], summary
    assert summary["final"] > 0.3 and summary["first_below_step"] is None
    rank = job.collapse.feature_rank_summary()
    assert rank["monitored"] and not rank["collapsed"] and rank["final"] > 0.3, rank
    assert "collapse" not in capfd.readouterr().err


def test_warning_waits_for_a_window_and_survives_resume():
    monitor = CollapseMonitor(threshold=0.5, window=2)
    monitor.monitored = monitor.started = True
    for step, value in enumerate([0.9, 0.8, 0.2, 0.1], start=1):
        monitor._step_value = torch.tensor(value)
        monitor.on_train_batch_end(_Trainer(step), _Module(), None, None, step)
    assert monitor.summary()["first_below_step"] == 4 and monitor.summary()["lowest"] == pytest.approx(0.15)
    resumed = CollapseMonitor(threshold=0.5)
    resumed.load_state_dict(monitor.state_dict())
    assert resumed.std.first_below_step == 4
    monitor.rank.add(0.3, 2)
    monitor.rank.add(0.1, 4)  # judged on the mean of the last windows, not on one
    assert monitor.feature_rank_summary()["final"] == pytest.approx(0.2)
    resumed.load_state_dict(monitor.state_dict())
    assert resumed.rank.recent == [0.3, 0.1] and resumed.rank.first_below_step == 4
    older = CollapseMonitor(threshold=0.5)  # a checkpoint written before the feature rank existed
    older.load_state_dict({"first_below_step": 3, "last": 0.2, "lowest": 0.1})
    assert older.std.first_below_step == 3 and older.rank.first_below_step is None


@pytest.mark.parametrize("bad", [0, 1, -0.2, "abc", None])
def test_bad_threshold_is_one_line(bad):
    with pytest.raises(ConfigError, match="collapse_threshold must be in \\(0, 1\\)"):
        check_threshold(bad)
    with pytest.raises(ConfigError, match="feature_rank_threshold must be in \\(0, 1\\)"):
        check_rank_threshold(bad)


class _Trainer:
    progress_bar_callback = None
    loggers: list = []

    def __init__(self, step: int) -> None:
        self.global_step = step


class _Module:
    def log(self, *args: object, **kwargs: object) -> None:
        pass
