"""The linear probe's arithmetic on data with a known answer."""

from __future__ import annotations

import pytest
import torch

from solo_mlvgm.errors import ConfigError
from solo_mlvgm.methods.linear_probe import topk_accuracy, train_linear_probe

from .conftest import compose_cfg


def test_topk_accuracy_by_hand():
    logits = torch.tensor([[0.1, 0.9, 0.0], [0.8, 0.15, 0.05], [0.2, 0.3, 0.5]])
    targets = torch.tensor([1, 1, 0])
    assert topk_accuracy(logits, targets, 1) == pytest.approx(100 / 3)
    assert topk_accuracy(logits, targets, 2) == pytest.approx(200 / 3)


def test_probe_separates_separable_classes_and_not_noise():
    g = torch.Generator().manual_seed(0)
    centers = torch.randn(4, 16, generator=g) * 4
    y = torch.randint(0, 4, (800,), generator=g)
    x = centers[y] + torch.randn(800, 16, generator=g)
    good = train_linear_probe(x[:600], y[:600], x[600:], y[600:], 4, epochs=20)
    assert good["top1"] > 95
    noise = torch.randn(800, 16, generator=g)
    bad = train_linear_probe(noise[:600], y[:600], noise[600:], y[600:], 4, epochs=20)
    assert bad["top1"] < 40


def test_linear_eval_warns_when_pretraining_does_not_beat_random_init(tmp_path, capsys):
    """A 'pretrained' backbone that is the random init itself cannot beat it: one warning line, recorded."""
    from solo_mlvgm.entry.linear_eval import run_linear_eval
    from solo_mlvgm.methods import build_backbone
    from solo_mlvgm.runs import save_backbone

    from .conftest import TINY, compose_cfg

    run_cfg = compose_cfg("mlvgm_simclr", TINY)
    torch.manual_seed(0)  # the seed main_linear.py gives its random backbone
    untrained, _ = build_backbone(run_cfg.backbone.name, run_cfg.backbone.small_image_stem)
    save_backbone(tmp_path / "backbone.pt", untrained, run_cfg)
    cfg = compose_cfg(
        "linear",
        [
            f"pretrained={tmp_path}",
            "backend=lightly",
            "data.n_train=200",
            "data.n_test=100",
            "probe.epochs=2",
        ],
    )
    results = run_linear_eval(cfg)
    assert results["pretrained"]["top1"] == results["random_backbone"]["top1"]
    assert results["beats_random"] is False
    warnings = [line for line in capsys.readouterr().err.splitlines() if line.startswith("warning:")]
    assert len(warnings) == 1 and "does not beat a randomly initialised" in warnings[0]


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("probe.epochs=0", "probe.epochs must be >= 1, got 0"),
        ("probe.lr=abc", "probe.lr must be a number, got 'abc'"),
        ("data.n_train=0", "data.n_train must be >= 1, got 0"),
        ("seed=-1", "seed must be >= 0, got -1"),
        ("compare_random=maybe", "compare_random must be true or false"),
        ("data.source=disk", "unknown data.source 'disk'"),
    ],
)
def test_bad_linear_settings_are_refused_before_any_backbone_is_read(tmp_path, override, message):
    from solo_mlvgm.entry.linear_eval import run_linear_eval

    cfg = compose_cfg("linear", [f"pretrained={tmp_path / 'missing'}", override])
    with pytest.raises(ConfigError, match=message):
        run_linear_eval(cfg)
    assert not any(tmp_path.iterdir())


def test_image_folders_are_evaluated_at_the_size_the_run_trained_at():
    """backbone.pt records its training size; older files fall back to their config; a run whose config
    does not say (a StyleGAN2 run reading its resolution from the checkpoint) is refused, not probed at 32."""
    from solo_mlvgm.entry.linear_eval import recorded_input_size

    assert recorded_input_size({"input_size": 112, "config": {}}) == 112
    folder_run = {
        "config": {"data": {"source": "image_folder", "resolution": 64}, "generator": {"resolution": 32}}
    }
    assert recorded_input_size(folder_run) == 64  # the folder's size, not the unused toy world's
    cropped = {
        "config": {"data": {"source": "continuous", "crop_size": 112}, "generator": {"resolution": 128}}
    }
    assert recorded_input_size(cropped) == 112
    stylegan2 = {"config": {"data": {"source": "continuous"}, "generator": {"name": "stylegan2"}}}
    with pytest.raises(ConfigError, match="data.resolution"):
        recorded_input_size(stylegan2)
