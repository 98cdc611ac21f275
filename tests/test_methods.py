"""The lightly backend: config validation, one short training run per method, no NaN without labels."""

from __future__ import annotations

import math
import re

import kornia.augmentation as K
import lightning.pytorch as pl
import pytest
import torch

from solo_mlvgm.entry.pretrain import build_pretraining
from solo_mlvgm.errors import ConfigError
from solo_mlvgm.methods import PRETRAINING_METHODS, build_backbone
from solo_mlvgm.methods.base import OPTIMISER_RECORD
from solo_mlvgm.views.pixel import normalize

from .conftest import TINY as _TINY
from .conftest import TINY_RUN as _TINY_RUN
from .conftest import compose_cfg

# These tests check the lightly backend's own behaviour (tests/test_solo_backend.py covers solo-learn's).
TINY, TINY_RUN = [*_TINY, "backend=lightly"], [*_TINY_RUN, "backend=lightly"]


@pytest.mark.parametrize("method", PRETRAINING_METHODS)
def test_one_short_training_run_per_method(tmp_path, method):
    cfg = (
        compose_cfg("supervised", TINY_RUN)
        if method == "supervised"
        else compose_cfg(f"mlvgm_{method}", TINY)
    )
    job = build_pretraining(cfg, tmp_path)
    before = {k: v.clone() for k, v in job.method.backbone.state_dict().items()}
    job.trainer.fit(job.method, datamodule=job.data)
    assert job.trainer.global_step == 3
    metrics = job.trainer.callback_metrics
    assert math.isfinite(float(metrics["train_loss"])) and "train_acc1" in metrics
    after = job.method.backbone.state_dict()
    assert any(not torch.equal(before[k], after[k]) for k in before if after[k].is_floating_point())


def test_a_run_cut_shorter_than_its_warm_up_says_so(tmp_path, capsys):
    """max_steps below the warm-up leaves the lr warming up to the last step: said in one line, not silent."""
    job = build_pretraining(
        compose_cfg("mlvgm_simclr", [*TINY, "scheduler.warmup_epochs=0.75"]), tmp_path / "a"
    )
    job.trainer.fit(job.method, datamodule=job.data)  # 3 warm-up steps of 4 per epoch; max_steps=3
    assert "is 3 steps, not fewer than this run's 3 (max_steps)" in capsys.readouterr().out
    job = build_pretraining(compose_cfg("mlvgm_simclr", TINY), tmp_path / "b")  # 2 warm-up steps of 3
    job.trainer.fit(job.method, datamodule=job.data)
    assert "warms up until its last step" not in capsys.readouterr().out


@pytest.mark.parametrize("method", ["simclr", "byol"])
def test_no_labels_means_no_probe_and_no_nan(tmp_path, method):
    cfg = compose_cfg(
        f"mlvgm_{method}", [*TINY, "generator.factors=[pose,color,texture]", "views.perturb={}"]
    )
    job = build_pretraining(cfg, tmp_path)
    assert job.method.classifier is None
    job.trainer.fit(job.method, datamodule=job.data)
    metrics = job.trainer.callback_metrics
    assert "train_acc1" not in metrics
    assert all(math.isfinite(float(v)) for v in metrics.values())


@pytest.mark.parametrize("optimizer", ["sgd", "lars", "adam", "adamw"])
def test_every_optimizer_builds_and_steps(tmp_path, optimizer):
    cfg = compose_cfg(
        "mlvgm_simclr",
        [*TINY, f"optimizer.name={optimizer}", "max_steps=1", "+optimizer.kwargs.exclude_bias_n_norm=true"],
    )
    job = build_pretraining(cfg, tmp_path)
    job.trainer.fit(job.method, datamodule=job.data)
    assert job.trainer.global_step == 1


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("method=moco", "unknown method 'moco'"),
        ("backbone.name=vit", "unknown backbone 'vit'"),
        ("optimizer.name=rmsprop", "unknown optimizer 'rmsprop'"),
        ("+method_kwargs.temprature=0.1", "no method_kwargs \\['temprature'\\]"),
        ("method_kwargs.temperature=-0.1", "method_kwargs.temperature must be > 0"),
        ("optimizer.lr=0", "optimizer.lr must be > 0"),
        ("generator.name=stylegan9", "unknown generator 'stylegan9'"),
        ("+views.perturb.shoe.std=1", "unknown level or group 'shoe'"),
        ("views.perturb.pose.std=-1", "perturbation std must be >= 0"),
        ("data.source=disk", "unknown data.source 'disk'"),
        ("accelerator=tpu9", "trainer settings"),
        ("scheduler.warmup_epochs=5", "warmup_epochs must be in"),
        ("scheduler.warmup_epochs=-1", "scheduler.warmup_epochs must be >= 0"),
        ("+optimizer.kwargs.betas=3", "optimizer.kwargs do not fit optimizer 'adamw'"),
        ("views.perturb.pose.std=abc", "views.perturb.pose: could not convert"),
        ("data.epoch_size=8", "smaller than one global batch"),
        ("collapse_threshold=1.5", "collapse_threshold must be in \\(0, 1\\)"),
        ("seed=-1", "seed must be >= 0"),
        ("seed=abc", "seed must be an integer, got 'abc'"),
        ("optimizer.batch_size=abc", "optimizer.batch_size must be an integer, got 'abc'"),
        ("optimizer.lr=abc", "optimizer.lr must be a number, got 'abc'"),
        ("scheduler.warmup_epochs=abc", "scheduler.warmup_epochs must be a number, got 'abc'"),
        ("method_kwargs.temperature=abc", "method_kwargs.temperature must be a number, got 'abc'"),
        ("max_steps=0", "max_steps must be >= 1 \\(or -1: no limit\\), got 0"),
        ("max_epochs=abc", "max_epochs must be an integer, got 'abc'"),
        ("devices=[0,abc]", "devices must be an integer, got 'abc'"),
        ("data.channels_last=abc", "data.channels_last must be true or false, got 'abc'"),
        ("data.num_classes=abc", "data.num_classes must be an integer, got 'abc'"),
    ],
)
def test_bad_configs_fail_before_training(tmp_path, override, message):
    cfg = compose_cfg("mlvgm_simclr", [*TINY, override])
    with pytest.raises(ConfigError, match=message):
        build_pretraining(cfg, tmp_path)
    assert not any(tmp_path.iterdir())  # nothing written


def test_a_one_epoch_mlvgm_simsiam_run_is_refused_with_the_warm_up_that_fits(tmp_path):
    """Its default warm-up is one epoch, the whole of a one-epoch run: one line names a warm-up that fits."""
    one_epoch = [o for o in TINY if not o.startswith("scheduler.warmup_epochs")]  # the config's own warm-up
    with pytest.raises(ConfigError, match=r"max_epochs=1\), got 1: .*scheduler\.warmup_epochs=0\.5"):
        build_pretraining(compose_cfg("mlvgm_simsiam", one_epoch), tmp_path / "run")
    assert not (tmp_path / "run").exists()
    build_pretraining(
        compose_cfg("mlvgm_simsiam", [*one_epoch, "scheduler.warmup_epochs=0.5"]), tmp_path / "ok"
    )


@pytest.mark.parametrize("name", ["resnet18", "convnet6", "convnet6_standardised"])
def test_backbones_with_small_image_stem_keep_resolution(name):
    net, dim = build_backbone(name, small_image_stem=True)
    out = net.eval()(torch.rand(2, 3, 32, 32))
    assert out.shape == (2, dim)


def test_standardised_backbone_ignores_brightness_and_contrast():
    """Each image's own scale and offset leave the standardised backbone's features unchanged; SimCLR's
    brightness and contrast jitter, applied before the ImageNet normalisation, nearly so. Plain convnet6's
    features change."""
    torch.manual_seed(0)
    images = torch.rand(4, 3, 32, 32) * 0.6 + 0.2
    scale, offset = torch.tensor([0.6, 1.0, 1.4, 2.0]), torch.tensor([0.1, -0.2, 0.0, 0.3])
    rescaled = images * scale.view(4, 1, 1, 1) + offset.view(4, 1, 1, 1)
    jitter = K.ColorJitter(brightness=(1.4, 1.4), contrast=(0.6, 0.6), p=1.0)

    def change(net: torch.nn.Module, a: torch.Tensor, b: torch.Tensor) -> float:
        fa, fb = net(a), net(b)
        return ((fa - fb).norm(dim=1) / fa.norm(dim=1)).max().item()

    with torch.no_grad():
        net = build_backbone("convnet6_standardised")[0].eval()
        assert change(net, images, rescaled) < 1e-3
        assert change(net, normalize(images), normalize(jitter(images))) < 0.15
        plain = build_backbone("convnet6")[0].eval()
        assert change(plain, images, rescaled) > 0.2
        assert change(plain, normalize(images), normalize(jitter(images))) > 0.2


@pytest.mark.parametrize("method", ["simsiam", "byol"])
def test_same_seed_gives_bit_identical_weights(tmp_path, method):
    """A run is a pure function of its config on one machine: the same seed trains the same weights."""

    def train(seed: int, folder: str) -> dict[str, torch.Tensor]:
        pl.seed_everything(seed, verbose=False)  # as run_pretraining does, before building
        job = build_pretraining(compose_cfg(f"mlvgm_{method}", [*TINY, f"seed={seed}"]), tmp_path / folder)
        job.trainer.fit(job.method, datamodule=job.data)
        return job.method.backbone.state_dict()

    first, again, other = train(3, "a"), train(3, "b"), train(4, "c")
    assert all(torch.equal(first[k], again[k]) for k in first)
    assert any(not torch.equal(first[k], other[k]) for k in first if first[k].is_floating_point())


@pytest.mark.parametrize(
    "config, overrides",
    [("mlvgm_simsiam", []), ("mlvgm_byol", ["++method_kwargs.static_pred_lr=true"])],
)
def test_predictor_keeps_a_constant_lr_while_the_rest_follows_the_schedule(tmp_path, config, overrides):
    """The SimSiam paper's (and solo-learn's) recipe, and BYOL's with ``static_pred_lr``: the predictor's
    lr is not decayed."""
    job = build_pretraining(compose_cfg(config, [*TINY, *overrides]), tmp_path)
    job.trainer.fit(job.method, datamodule=job.data)
    groups = job.trainer.optimizers[0].param_groups
    predictor = {id(p) for p in job.method.predictor.parameters()}
    static = [g for g in groups if g.get("static_lr")]
    assert static and all(id(p) in predictor for g in static for p in g["params"])
    assert sum(len(g["params"]) for g in static) == len(predictor)
    assert all(g["lr"] == g["initial_lr"] for g in static)
    scheduled = [g for g in groups if not g.get("static_lr")]
    assert scheduled and all(g["lr"] != g["initial_lr"] for g in scheduled)


@pytest.mark.parametrize(
    "config, override, message",
    [
        ("mlvgm_byol", "++method_kwargs.static_pred_lr=maybe", "static_pred_lr must be true or false"),
        ("mlvgm_byol", "++method_kwargs.static_pred_lr=0", "static_pred_lr must be true or false"),
        ("mlvgm_simclr", "++method_kwargs.static_pred_lr=true", "no method_kwargs \\['static_pred_lr'\\]"),
        ("mlvgm_simclr", "++method_kwargs.pred_lr_scale=10", "no method_kwargs \\['pred_lr_scale'\\]"),
        ("mlvgm_simsiam", "++method_kwargs.pred_lr_scale=0", "pred_lr_scale must be > 0"),
        ("mlvgm_simsiam", "++method_kwargs.pred_lr_scale=nan", "pred_lr_scale must be > 0 and finite"),
        ("mlvgm_byol", "++method_kwargs.pred_lr_scale=inf", "pred_lr_scale must be > 0 and finite"),
        ("mlvgm_byol", "++method_kwargs.pred_lr_scale=fast", "pred_lr_scale must be a number"),
    ],
)
def test_predictor_settings_are_refused_where_they_do_not_apply_or_are_out_of_range(
    tmp_path, config, override, message
):
    with pytest.raises(ConfigError, match=message):
        build_pretraining(compose_cfg(config, [*TINY, override]), tmp_path / "run")
    assert not (tmp_path / "run").exists()


def test_byols_predictor_follows_the_schedule_without_static_pred_lr(tmp_path):
    job = build_pretraining(
        compose_cfg("mlvgm_byol", [*TINY, "++method_kwargs.static_pred_lr=false"]), tmp_path
    )
    job.trainer.fit(job.method, datamodule=job.data)
    assert not any(g.get("static_lr") for g in job.trainer.optimizers[0].param_groups)


@pytest.mark.parametrize(
    "config, overrides, static",
    [
        ("mlvgm_simsiam", [], True),
        ("mlvgm_byol", ["++method_kwargs.static_pred_lr=true"], True),
        ("mlvgm_byol", ["++method_kwargs.static_pred_lr=false"], False),
    ],
)
def test_the_predictor_learns_at_pred_lr_scale_times_the_rate(tmp_path, config, overrides, static):
    """Tian et al. (2021): a predictor that learns faster than the rest keeps the features from shrinking
    onto a few directions; its rate is ``pred_lr_scale`` x the configured one, constant or scheduled."""
    job = build_pretraining(
        compose_cfg(config, [*TINY, *overrides, "++method_kwargs.pred_lr_scale=10"]), tmp_path
    )
    job.trainer.fit(job.method, datamodule=job.data)
    groups = job.trainer.optimizers[0].param_groups
    predictor = {id(p) for p in job.method.predictor.parameters()}
    classifier = {id(p) for p in job.method.classifier.parameters()}  # the online probe: its own lr
    groups = [g for g in groups if not any(id(p) in classifier for p in g["params"])]
    fast = [g for g in groups if all(id(p) in predictor for p in g["params"])]
    rest = [g for g in groups if not any(id(p) in predictor for p in g["params"])]
    assert fast and rest and len(fast) + len(rest) == len(groups)
    base = {g["initial_lr"] for g in rest}
    assert len(base) == 1 and {g["initial_lr"] for g in fast} == {10 * base.pop()}
    assert all(g["lr"] == g["initial_lr"] for g in fast) is static
    assert all(g["lr"] != g["initial_lr"] for g in rest)


def test_a_checkpoint_to_resume_from_is_checked_before_the_run(tmp_path):
    """Text, foreign pickled code and another method's checkpoint are refused in one line, before any work."""
    text = tmp_path / "notes.ckpt"
    text.write_text("not a checkpoint")
    hostile = tmp_path / "hostile.ckpt"
    torch.save({"state_dict": {}, "payload": _Hostile()}, hostile)
    other = tmp_path / "simsiam.ckpt"
    torch.save({"state_dict": {"projector.0.weight": torch.zeros(3, 3)}}, other)
    truncated = tmp_path / "truncated.ckpt"
    truncated.write_bytes(other.read_bytes()[:200])
    cases = [
        (text, "is not a torch checkpoint file \\(not a complete zip archive"),
        (truncated, "is not a torch checkpoint file \\(not a complete zip archive"),
        (hostile, "holds objects other than tensors and plain values"),
        (other, "was saved by another method or architecture"),
    ]
    for path, message in cases:
        run_dir = tmp_path / f"run-{path.stem}"
        cfg = compose_cfg("mlvgm_simclr", [*TINY, f"resume_from_checkpoint={path}"])
        with pytest.raises(ConfigError, match=message) as err:
            build_pretraining(cfg, run_dir)
        assert "\n" not in str(err.value) and not run_dir.exists()


class _Hostile:
    """Pickled as a global: refused by ``weights_only`` loading, never called."""

    def __reduce__(self):
        return (print, ("this must never run",))


def test_resuming_a_run_that_reached_max_epochs_is_refused(tmp_path):
    job = build_pretraining(compose_cfg("mlvgm_simclr", TINY), tmp_path / "first")
    job.trainer.fit(job.method, datamodule=job.data)
    checkpoint = tmp_path / "first" / "checkpoints" / "last.ckpt"
    assert checkpoint.is_file() and (tmp_path / "first" / "checkpoints" / "epoch0.ckpt").is_file()
    again = compose_cfg("mlvgm_simclr", [*TINY, f"resume_from_checkpoint={checkpoint}"])
    with pytest.raises(ConfigError, match="already trained 1 epochs \\(3 steps\\): raise max_epochs"):
        build_pretraining(again, tmp_path / "second")
    assert not (tmp_path / "second").exists()
    more = compose_cfg(
        "mlvgm_simclr", [*TINY, "max_epochs=2", "max_steps=6", f"resume_from_checkpoint={checkpoint}"]
    )
    build_pretraining(more, tmp_path / "third")  # more steps to go: accepted


def test_resuming_with_other_optimiser_settings_is_refused(tmp_path):
    """The optimiser's state (rates, weight decay) comes back from the checkpoint: a changed setting would
    not apply, so it is refused; older checkpoints without the record are read from their config."""
    job = build_pretraining(compose_cfg("mlvgm_simsiam", TINY), tmp_path / "first")
    job.trainer.fit(job.method, datamodule=job.data)
    checkpoint = tmp_path / "first" / "checkpoints" / "last.ckpt"
    more = [*TINY, "max_epochs=2", "max_steps=6", f"resume_from_checkpoint={checkpoint}"]
    for change, detail in [
        ("method_kwargs.pred_lr_scale=5", "method_kwargs.pred_lr_scale 10.0 -> 5.0"),
        ("optimizer.weight_decay=1e-4", "optimizer.weight_decay 0.001 -> 0.0001"),
    ]:
        with pytest.raises(ConfigError, match=f"other optimiser settings \\({re.escape(detail)}\\)"):
            build_pretraining(compose_cfg("mlvgm_simsiam", [*more, change]), tmp_path / "refused")
        assert not (tmp_path / "refused").exists()
    build_pretraining(compose_cfg("mlvgm_simsiam", more), tmp_path / "same")  # the same settings: accepted

    saved = torch.load(checkpoint, map_location="cpu", weights_only=True)
    del saved[OPTIMISER_RECORD]  # as written before the record existed
    older = tmp_path / "older.ckpt"
    torch.save(saved, older)
    changed = [*TINY, "max_epochs=2", "max_steps=6", f"resume_from_checkpoint={older}", "optimizer.lr=0.1"]
    with pytest.raises(ConfigError, match="optimizer.lr 0.5 -> 0.1"):
        build_pretraining(compose_cfg("mlvgm_simsiam", changed), tmp_path / "refused")


def test_a_solo_learn_lars_option_the_lightly_backend_lacks_is_refused_not_dropped(tmp_path):
    over = [*TINY, "backend=lightly", "optimizer.name=lars", "+optimizer.kwargs.clip_lr=true"]
    with pytest.raises(ConfigError, match="clip_lr=true is solo-learn's LARS option"):
        build_pretraining(compose_cfg("mlvgm_simclr", over), tmp_path)
    assert not any(tmp_path.iterdir())  # nothing written
    off = [*TINY, "backend=lightly", "optimizer.name=lars", "+optimizer.kwargs.clip_lr=false"]
    build_pretraining(compose_cfg("mlvgm_simclr", off), tmp_path / "off")  # false asks for nothing missing


def test_further_lightning_trainer_arguments_reach_the_trainer_or_are_refused(tmp_path):
    over = [*TINY, "+gradient_clip_val=0.5", "+accumulate_grad_batches=2"]
    job = build_pretraining(compose_cfg("mlvgm_simclr", over), tmp_path / "ok")
    assert job.trainer.gradient_clip_val == 0.5 and job.trainer.accumulate_grad_batches == 2
    with pytest.raises(ConfigError, match="enable_checkpointing is set by the run itself"):
        build_pretraining(
            compose_cfg("mlvgm_simclr", [*TINY, "+enable_checkpointing=false"]), tmp_path / "no"
        )
    assert not (tmp_path / "no").exists()


def test_a_misspelled_top_level_setting_is_refused_not_ignored(tmp_path):
    with pytest.raises(ConfigError, match="unknown setting\\(s\\) \\['max_epoch'\\]"):
        build_pretraining(compose_cfg("mlvgm_simclr", [*TINY, "+max_epoch=3"]), tmp_path / "typo")
    with pytest.raises(ConfigError, match="momentum: solo-learn's, read with backend=solo"):
        build_pretraining(
            compose_cfg("mlvgm_byol", [*TINY, "backend=lightly", "+momentum.base_tau=0.9"]), tmp_path / "solo"
        )
    assert not any(tmp_path.iterdir())  # nothing written
