"""The solo-learn backend: our configs build solo-learn's own methods, train on our batches, and evaluate with
solo-learn's linear method; mi_quant is registered in solo-learn's METHODS. Skipped without solo-learn."""

from __future__ import annotations

import math
import sys

import lightning.pytorch as pl
import pytest
import torch

pytest.importorskip(
    "solo", reason="solo-learn is not installed (install it from its repository to test the solo backend)"
)

from solo.methods import METHODS  # noqa: E402
from solo.methods.base import BaseMethod  # noqa: E402

from solo_mlvgm.backends import resolve_backend
from solo_mlvgm.backends import solo as bridge
from solo_mlvgm.data.export import export_image_folder  # noqa: E402
from solo_mlvgm.entry import quantify as driver  # noqa: E402
from solo_mlvgm.entry.linear_eval import rebuild_backbone, run_linear_eval  # noqa: E402
from solo_mlvgm.entry.pretrain import build_pretraining, run_pretraining  # noqa: E402
from solo_mlvgm.errors import ConfigError  # noqa: E402
from solo_mlvgm.methods import build_backbone  # noqa: E402
from solo_mlvgm.runs import BACKBONE_FILE, save_backbone  # noqa: E402
from solo_mlvgm.settings import PretrainSpec  # noqa: E402

from .conftest import TINY, compose_cfg  # noqa: E402

SOLO = [*TINY, "backend=solo", "max_steps=2"]


def _finite_metrics(trainer) -> dict[str, float]:
    metrics = {k: float(v) for k, v in trainer.callback_metrics.items()}
    assert metrics and all(math.isfinite(v) for v in metrics.values()), metrics
    return metrics


def test_auto_is_solo_when_importable_and_lightly_without_it(monkeypatch):
    assert resolve_backend("auto", "simsiam").name == "solo"
    assert resolve_backend("auto", "supervised").name == "lightly"  # our baseline, not a solo-learn method
    monkeypatch.setitem(sys.modules, "solo", None)
    assert resolve_backend("auto", "simsiam").name == "lightly"
    with pytest.raises(ConfigError, match="backend=solo needs solo-learn.*git clone"):
        resolve_backend("solo", "simsiam")


@pytest.mark.parametrize("method", ["simclr", "simsiam", "byol"])
def test_our_config_builds_and_trains_solo_learns_method(tmp_path, method):
    job = build_pretraining(compose_cfg(f"mlvgm_{method}", SOLO), tmp_path)
    model = job.method
    assert isinstance(model, METHODS[method]) and job.backend.name == "solo"
    # solo's own parse_cfg ran: dataset from the generator, classes from its labels, devices as a list
    assert model.cfg.data.dataset.startswith("mlvgm-toyworld-") and model.cfg.data.num_classes == 10
    assert list(model.cfg.devices) == [0]
    scale = bridge.BYOL_LOSS_SCALE if method == "byol" else 1.0  # solo's BYOL loss: 4x the gradient
    assert model.cfg.optimizer.lr == pytest.approx(float(job.cfg.optimizer.lr) * 16 / 256 / scale)
    assert model.cfg.optimizer.weight_decay == pytest.approx(float(job.cfg.optimizer.weight_decay) * scale)
    # the same backbone architecture (and state-dict keys) as the lightly backend
    ours, _ = build_backbone("convnet6", True)
    assert model.backbone.state_dict().keys() == ours.state_dict().keys()
    # the generator stays outside solo's module
    assert not any("generator" in k for k in model.state_dict())
    before = {k: v.clone() for k, v in model.backbone.state_dict().items()}
    job.trainer.fit(model, datamodule=job.data)
    assert job.trainer.global_step == 2
    metrics = _finite_metrics(job.trainer)
    assert "train_acc1" in metrics and "train_class_loss" in metrics
    after = model.backbone.state_dict()
    assert any(not torch.equal(before[k], after[k]) for k in before if after[k].is_floating_point())
    # both collapse signals read solo-learn's projector and backbone through hooks
    assert "collapse_std" in metrics and job.collapse.summary()["monitored"]
    assert job.collapse.feature_rank_summary()["final"] is not None
    assert not job.data.generator.training
    assert job.data.generator.device.type == job.trainer.strategy.root_device.type  # rendered where it trains
    # the Lightning checkpoint loads safely (SimSiam's scheduler partial is not saved)
    ckpt = torch.load(tmp_path / "checkpoints" / "last.ckpt", weights_only=True)
    assert ckpt["global_step"] == job.trainer.global_step


def test_a_solo_run_resumed_with_other_optimiser_settings_is_refused(tmp_path):
    job = build_pretraining(compose_cfg("mlvgm_simsiam", SOLO), tmp_path / "first")
    job.trainer.fit(job.method, datamodule=job.data)
    checkpoint = tmp_path / "first" / "checkpoints" / "last.ckpt"
    more = [*SOLO, "max_epochs=2", "max_steps=4", f"resume_from_checkpoint={checkpoint}"]
    with pytest.raises(ConfigError, match="method_kwargs.pred_lr_scale 10.0 -> 5.0"):
        build_pretraining(
            compose_cfg("mlvgm_simsiam", [*more, "method_kwargs.pred_lr_scale=5"]), tmp_path / "x"
        )
    assert not (tmp_path / "x").exists()
    resumed = build_pretraining(compose_cfg("mlvgm_simsiam", more), tmp_path / "same")
    resumed.trainer.fit(resumed.method, datamodule=resumed.data, ckpt_path=str(checkpoint))
    predictor = [g for g in resumed.trainer.optimizers[0].param_groups if g["name"] == "predictor"]
    backbone = [g for g in resumed.trainer.optimizers[0].param_groups if g["name"] == "backbone"]
    assert predictor[0]["lr"] == pytest.approx(10 * backbone[0]["initial_lr"])  # held at 10x after resuming


def test_solo_learns_resnet_stays_solo_learns_and_evaluates(tmp_path, capsys):
    """Our run configs on the solo backend keep solo-learn's ResNet: its factory (kwargs reach torchvision),
    its CIFAR stem for small_image_stem, online and momentum backbone alike; main_linear.py rebuilds it."""
    overrides = [*SOLO, "max_steps=1", "backbone.name=resnet18", "+backbone.kwargs.zero_init_residual=true"]
    run = run_pretraining(compose_cfg("mlvgm_byol", overrides), tmp_path / "run")
    payload = torch.load(run / BACKBONE_FILE, weights_only=True)
    assert payload["solo_learn"]["cifar_stem"] and payload["solo_learn"]["kwargs"] == {
        "zero_init_residual": True
    }
    job = build_pretraining(compose_cfg("mlvgm_byol", overrides), tmp_path / "again")
    for net in (job.method.backbone, job.method.momentum_backbone):
        assert net.conv1.padding == (2, 2) and isinstance(net.maxpool, torch.nn.Identity)  # solo-learn's
        assert all(not block.bn2.weight.any() for block in net.layer1)  # zero_init_residual reached it
    plain = compose_cfg("mlvgm_byol", [*overrides, "backbone.small_image_stem=false"])
    assert build_pretraining(plain, tmp_path / "plain").method.backbone.conv1.kernel_size == (7, 7)
    cfg = compose_cfg(
        "linear",
        [f"pretrained={run}", "backend=lightly", "data.n_train=64", "data.n_test=32", "probe.epochs=1"],
    )
    results = run_linear_eval(cfg)  # strict state-dict load into the rebuilt solo-learn ResNet
    assert 0 <= results["pretrained"]["top1"] <= 100 and "random_backbone" in results
    assert "linear probe (resnet18, byol pretrained)" in capsys.readouterr().out
    # a file written before cifar_stem was recorded: the dataset it names decides the stem, as it did then
    older = {**payload, "solo_learn": {**payload["solo_learn"], "dataset": "cifar10"}}
    del older["solo_learn"]["cifar_stem"]
    net, _ = rebuild_backbone(older, weights=True)
    assert net.conv1.padding == (2, 2)


@pytest.mark.parametrize("method", ["simsiam", "byol"])
def test_no_labels_log_no_nan_and_no_classifier_metrics(tmp_path, method):
    cfg = compose_cfg(
        f"mlvgm_{method}",
        [*SOLO, "generator.factors=[pose,color,texture]", "views.perturb={}"],
    )
    job = build_pretraining(cfg, tmp_path)
    assert job.method.cfg.data.no_labels and not job.method.cfg.knn_eval.enabled
    job.trainer.fit(job.method, datamodule=job.data)
    metrics = _finite_metrics(job.trainer)
    assert not any(k.startswith(bridge.CLASSIFIER_METRICS) for k in metrics), metrics
    # solo's own step on all -1 targets is NaN: that is what the solo backend avoids
    _, views, targets = job.data.render(0, "cpu")  # Lightning moves the module back to the CPU after fit
    plain = METHODS[method]._base_shared_step(job.method, views[0], targets)
    assert torch.isnan(plain["loss"])


def test_image_folder_baseline_trains_the_same_solo_method(tmp_path, world):
    folder = export_image_folder(world, tmp_path / "toy", n=40)
    tiny = [o for o in SOLO if not o.startswith("data.")]
    cfg = compose_cfg(
        "mlvgm_simclr",
        [*tiny, "data=image_folder", f"data.train_path={folder}", "data.num_workers=0", "views=real"],
    )
    job = build_pretraining(cfg, tmp_path / "run")
    assert job.generator is None and isinstance(job.method, METHODS["simclr"])
    assert job.method.cfg.data.dataset == "custom" and job.method.cfg.data.num_classes == 10
    job.trainer.fit(job.method, datamodule=job.data)
    assert job.trainer.global_step == 2 and _finite_metrics(job.trainer)


def test_dataset_names_tell_generators_apart():
    def name(*overrides: str) -> str:
        return bridge.generator_dataset_name(
            PretrainSpec.from_config(compose_cfg("mlvgm_simclr", list(overrides)))
        )

    a, b = name(), name("generator.coupling=0.5")
    assert a != b and a == name()


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("method=supervised", "method 'supervised' is not a solo-learn pretraining method"),
        ("method=mi_quant", "main_quantify.py"),
        ("backbone.name=vit9", "unknown backbone 'vit9' for solo-learn"),
        ("+optimizer.kwargs.betas=3", "optimizer.kwargs do not fit optimizer 'adamw'"),
        ("+auto_resume.enabled=true", "resume_from_checkpoint"),
        ("+method_kwargs.temprature=0.5", "no method_kwargs \\['temprature'\\]"),  # as on the lightly backend
        ("+wandb.enabled=true", "wandb.enabled=true is not used by these run configs"),
        ("+checkpoint.enabled=true", "checkpoint.enabled=true is not used by these run configs"),
        (
            "+knn_eval.enabled=true",
            "knn_eval.enabled=true is not used by these run configs: it needs a labelled",
        ),
        (
            "backbone.name=vit_tiny",
            "backbone.small_image_stem=true applies to convnet6, convnet6_standardised, resnet18, resnet50, "
            "not to solo-learn's 'vit_tiny'",
        ),
    ],
)
def test_bad_solo_configs_fail_before_anything_is_written(tmp_path, override, message):
    with pytest.raises(ConfigError, match=message) as err:
        build_pretraining(compose_cfg("mlvgm_simclr", [*SOLO, override]), tmp_path)
    assert "\n" not in str(err.value) and not any(tmp_path.iterdir())


def test_mi_quant_is_registered_and_solo_builds_it_by_name(tmp_path):
    bridge.SoloBackend()  # registers our backbones and mi_quant in solo-learn
    assert METHODS["mi_quant"] is bridge.SoloMIQuant and "convnet6" in BaseMethod._BACKBONES
    cfg = compose_cfg(
        "mi_quant",
        [
            "+level=pose",
            "max_steps=4",
            "method_kwargs.encoder_warmup_steps=1",
            "optimizer.batch_size=8",
            "method_kwargs.proj_hidden_dim=16",
            "method_kwargs.proj_output_dim=8",
        ],
    )
    model = METHODS[cfg.method](cfg)  # as solo-learn's main_pretrain.py builds a method
    assert model.level_name == "pose" and model.indices == (1,)
    assert not any("generator" in k for k in model.state_dict())
    # a solo-learn batch is accepted: the method renders its own pairs
    batch = [torch.arange(8), [torch.zeros(8, 3, 32, 32)] * 2, torch.full((8,), -1)]
    batches = torch.utils.data.DataLoader([batch] * 3, batch_size=None)
    from solo_mlvgm.settings import TrainerSpec
    from solo_mlvgm.trainer import make_trainer

    trainer = make_trainer(
        TrainerSpec.from_config(cfg),
        max_epochs=1,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
    )
    walker = {k: v.clone() for k, v in model.walker.state_dict().items()}
    trainer.fit(model, train_dataloaders=batches)
    assert [h["step"] for h in model.history] == [0, 1, 2]
    assert any(not torch.equal(walker[k], v) for k, v in model.walker.state_dict().items())


def test_quantify_one_level_with_the_solo_backend(tmp_path):
    cfg = compose_cfg(
        "mi_quant",
        [
            "backend=solo",
            "levels=[pose]",
            "max_steps=6",
            "method_kwargs.encoder_warmup_steps=2",
            "optimizer.batch_size=8",
            "monte_carlo.samples=64",
            "log_every_n_steps=0",
        ],
    )
    (record,) = driver.run_quantification(cfg, tmp_path / "run")
    assert record["backend"] == "solo" and record["steps"] == 6 and math.isfinite(record["mu"])


def test_solo_linear_evaluation_of_our_backbone(tmp_path, capsys):
    run_cfg = compose_cfg("mlvgm_simclr", SOLO)
    net, _ = build_backbone("convnet6", True)
    save_backbone(tmp_path / BACKBONE_FILE, net, run_cfg)
    cfg = compose_cfg(
        "linear",
        [
            f"pretrained={tmp_path}",
            "backend=solo",
            "data.n_train=64",
            "data.n_test=32",
            "solo_linear.max_epochs=1",
            "solo_linear.optimizer.batch_size=32",
            "compare_random=false",
        ],
    )
    results = run_linear_eval(cfg)
    assert results["backend"] == "solo" and 0 <= results["pretrained"]["top1"] <= 100
    assert results["pretrained"]["top5"] >= results["pretrained"]["top1"]
    assert "solo-learn linear (convnet6, simclr pretrained)" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("+solo_linear.knn_eval.enabled=true", "knn_eval.enabled=true is not used by these run configs"),
        ("+solo_linear.wandb.enabled=true", "wandb.enabled=true is not used by these run configs"),
        ("solo_linear.optimizer.name=nope", "unknown optimizer 'nope'; known: sgd, lars, adam, adamw"),
        ("solo_linear.scheduler.name=nope", "unknown scheduler 'nope'; known: warmup_cosine, step, none"),
        ("solo_linear.scheduler.name=reduce", "scheduler.name=reduce does not run on the solo backend"),
        ("solo_linear.scheduler.name=exponential", "its linear model decays by optimizer.weight_decay"),
        ("solo_linear.scheduler.name=None", "unknown scheduler 'None'"),  # none in lower case only there
    ],
)
def test_solo_linear_settings_are_refused_before_any_split_is_rendered(tmp_path, capsys, override, message):
    net, _ = build_backbone("convnet6", True)
    save_backbone(tmp_path / BACKBONE_FILE, net, compose_cfg("mlvgm_simclr", SOLO))
    cfg = compose_cfg("linear", [f"pretrained={tmp_path}", "backend=solo", override])
    with pytest.raises(ConfigError, match=message):
        run_linear_eval(cfg)
    assert "preparing the labelled" not in capsys.readouterr().out


def test_solo_learns_methods_survive_ddp_spawn(tmp_path):
    """ddp_spawn pickles the module: our composed solo-learn classes and backbone factories must pickle."""
    cfg = compose_cfg("mlvgm_simclr", [*SOLO, "accelerator=cpu", "devices=2", "strategy=ddp_spawn"])
    job = build_pretraining(cfg, tmp_path / "run")
    job.trainer.fit(job.method, datamodule=job.data)  # trained in two spawned processes
    saved = torch.load(tmp_path / "run" / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
    assert saved["global_step"] == 2


@pytest.mark.parametrize("static", [False, True])
def test_byols_static_predictor_lr_is_honoured_by_solo_learns_byol(tmp_path, static):
    cfg = compose_cfg("mlvgm_byol", [*SOLO, f"++method_kwargs.static_pred_lr={str(static).lower()}"])
    groups = {g["name"]: g for g in build_pretraining(cfg, tmp_path).method.learnable_params}
    assert bool(groups["predictor"].get("static_lr")) is static
    assert not any(g.get("static_lr") for name, g in groups.items() if name != "predictor")


@pytest.mark.parametrize(("config", "static"), [("mlvgm_simsiam", True), ("mlvgm_byol", False)])
def test_pred_lr_scale_is_honoured_by_solo_learns_methods(tmp_path, config, static):
    """The predictor's rate is pred_lr_scale x the rest's, also where solo-learn holds it constant."""
    overrides = [*SOLO, "++method_kwargs.pred_lr_scale=10"]
    if config == "mlvgm_byol":
        overrides.append("++method_kwargs.static_pred_lr=false")
    job = build_pretraining(compose_cfg(config, overrides), tmp_path)
    job.trainer.fit(job.method, datamodule=job.data)
    groups = {g["name"]: g for g in job.trainer.optimizers[0].param_groups}
    base = groups["backbone"]["initial_lr"]
    assert groups["predictor"]["initial_lr"] == pytest.approx(10 * base)
    assert (groups["predictor"]["lr"] == pytest.approx(10 * base)) is static
    assert groups["backbone"]["lr"] != pytest.approx(base)


@pytest.mark.parametrize(
    "config, override, message",
    [
        (
            "mlvgm_simsiam",
            "++method_kwargs.static_pred_lr=false",
            "static_pred_lr applies to byol, not to simsiam",
        ),
        (
            "mlvgm_simclr",
            "++method_kwargs.static_pred_lr=true",
            "static_pred_lr applies to byol, not to simclr",
        ),
        ("mlvgm_byol", "++method_kwargs.static_pred_lr=maybe", "static_pred_lr must be true or false"),
        ("mlvgm_simclr", "++method_kwargs.pred_lr_scale=10", "pred_lr_scale applies to simsiam and byol"),
        ("mlvgm_simsiam", "method_kwargs.pred_lr_scale=0", "pred_lr_scale must be > 0"),
        ("mlvgm_byol", "method_kwargs.pred_lr_scale=-1", "pred_lr_scale must be > 0"),
        ("mlvgm_byol", "method_kwargs.pred_lr_scale=nan", "pred_lr_scale must be > 0 and finite"),
    ],
)
def test_predictor_settings_are_refused_where_solo_learn_cannot_honour_them(
    tmp_path, config, override, message
):
    with pytest.raises(ConfigError, match=message):
        build_pretraining(compose_cfg(config, [*SOLO, override]), tmp_path / "run")
    assert not (tmp_path / "run").exists()


def test_a_methods_own_fixed_rate_without_warm_up_is_refused_on_solo(tmp_path):
    """All4One gives its transformer encoder lr 0.1, which solo-learn's scheduler would lose."""
    overrides = [
        *SOLO,
        "method=all4one",
        "+method_kwargs.pred_hidden_dim=16",
        "++method_kwargs.temperature=0.2",
        "+method_kwargs.queue_size=64",
        "optimizer.classifier_lr=2e-3",  # the run's lr: only the transformer's rate is at stake
    ]
    with pytest.raises(
        ConfigError, match=r"^solo-learn's all4one gives parameter group \d+ \(lr 0.1\) its own"
    ):
        build_pretraining(
            compose_cfg("mlvgm_simclr", [*overrides, "scheduler.warmup_epochs=0"]), tmp_path / "a"
        )
    job = build_pretraining(compose_cfg("mlvgm_simclr", overrides), tmp_path / "b")  # with a warm-up
    job.trainer.fit(job.method, datamodule=job.data)
    assert job.trainer.global_step == 2


@pytest.mark.parametrize("name", ["exponential", "reduce", "cosine", "nope", "Step"])
def test_schedulers_solo_learn_would_not_run_are_refused(tmp_path, name):
    with pytest.raises(
        ConfigError, match=f"(scheduler.name={name} does not run)|(unknown scheduler '{name}')"
    ):
        build_pretraining(compose_cfg("mlvgm_simclr", [*SOLO, f"scheduler.name={name}"]), tmp_path / "run")


def test_a_scheduler_of_none_in_any_case_runs_in_pretraining(tmp_path):
    job = build_pretraining(compose_cfg("mlvgm_simclr", [*SOLO, "scheduler.name=None"]), tmp_path / "run")
    job.trainer.fit(job.method, datamodule=job.data)  # solo-learn's BaseMethod reads it as none
    assert job.trainer.global_step == 2


def test_a_scaled_scheduled_predictor_without_warm_up_is_refused_on_solo(tmp_path):
    """solo-learn's scheduler starts every group at one rate without a warm-up: the multiple would be lost."""
    # the classifier at the scheduled lr (BYOL's SGD lr / 4 on solo-learn), so only the predictor is at stake
    overrides = [
        *SOLO,
        "method_kwargs.static_pred_lr=false",
        "scheduler.warmup_epochs=0",
        "optimizer.classifier_lr=0.125",
    ]
    with pytest.raises(
        ConfigError, match=r"^method_kwargs.pred_lr_scale with a scheduled predictor .*static_pred_lr=true"
    ):
        build_pretraining(compose_cfg("mlvgm_byol", overrides), tmp_path / "run")
    assert not (tmp_path / "run").exists()
    build_pretraining(
        compose_cfg("mlvgm_byol", [*overrides, "method_kwargs.pred_lr_scale=1"]), tmp_path / "ok"
    )


@pytest.mark.parametrize(
    ("config", "more", "message"),
    [
        ("mlvgm_simclr", [], "optimizer.classifier_lr 0.01 .*: set a warm-up, classifier_lr=0.002"),
        # compared with the lr solo-learn runs: BYOL's SGD lr / 4 (its predictor unscaled, not at stake)
        (
            "mlvgm_byol",
            ["optimizer.classifier_lr=0.5", "method_kwargs.pred_lr_scale=1"],
            "optimizer.classifier_lr 0.5 .*: set a warm-up, classifier_lr=0.125",
        ),
    ],
)
def test_the_online_classifiers_own_lr_without_warm_up_is_refused_on_solo(tmp_path, config, more, message):
    """Without a warm-up solo-learn runs the classifier at optimizer.lr: its classifier_lr would be lost."""
    overrides = [*SOLO, "scheduler.warmup_epochs=0", *more]
    with pytest.raises(ConfigError, match=message):
        build_pretraining(compose_cfg(config, overrides), tmp_path / "run")
    assert not (tmp_path / "run").exists()
    # no online classifier: nothing to lose
    build_pretraining(compose_cfg(config, [*overrides, "data.num_classes=0"]), tmp_path / "none")


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (
            ["max_steps=-1", "scheduler.warmup_epochs=0.25", "+accumulate_grad_batches=2"],
            "is 0.5 optimiser steps",
        ),
        (["scheduler.warmup_epochs=-1"], "scheduler.warmup_epochs must be >= 0"),
        (["scheduler.warmup_epochs=1"], r"must be in \[0, max_epochs=1\), got 1: a shorter run"),
    ],
)
def test_warm_ups_solo_learn_would_not_run_as_set_are_refused(tmp_path, overrides, message):
    """Accumulated batches count as one step (0.25 epochs of 2 steps: under one); a negative warm-up is no
    warm-up to solo-learn; one of the whole run's epochs would warm up to its end, as on the lightly backend."""
    with pytest.raises(ConfigError, match=message):
        build_pretraining(compose_cfg("mlvgm_simclr", [*SOLO, *overrides]), tmp_path / "run")
    assert not (tmp_path / "run").exists()


def test_a_warm_up_of_a_non_whole_number_of_steps_is_said_on_solo(tmp_path, capsys):
    """1.5 steps never land on the set rates: solo-learn's warm-up ends at 2x them, in one printed line."""
    build_pretraining(compose_cfg("mlvgm_simclr", [*SOLO, "max_steps=3"]), tmp_path / "run")
    assert "is 1.5 optimiser steps of this run, not a whole number" in capsys.readouterr().out
    build_pretraining(compose_cfg("mlvgm_simclr", SOLO), tmp_path / "whole")  # 1 step: nothing to say
    assert "not a whole number" not in capsys.readouterr().out


def test_a_warm_up_under_one_step_is_refused_on_solo(tmp_path):
    """Under one step, solo-learn's warmup_cosine holds every group at warmup_start_lr for the whole run."""
    # TINY: 64 images of batch 16 per epoch, one epoch; SOLO stops after 2 steps
    with pytest.raises(
        ConfigError, match=r"warmup_epochs=0.25 is 0.5 optimiser steps of this run, under one"
    ):
        build_pretraining(
            compose_cfg("mlvgm_simclr", [*SOLO, "scheduler.warmup_epochs=0.25"]), tmp_path / "run"
        )
    assert not (tmp_path / "run").exists()
    job = build_pretraining(
        compose_cfg("mlvgm_simclr", [*SOLO, "scheduler.warmup_epochs=0.5"]), tmp_path / "ok"
    )
    rates = []

    class Record(pl.Callback):
        def on_train_batch_start(self, trainer, *args):
            rates.append(trainer.optimizers[0].param_groups[0]["lr"])

    job.trainer.callbacks.append(Record())
    job.trainer.fit(job.method, datamodule=job.data)
    assert rates[1] == pytest.approx(job.trainer.optimizers[0].param_groups[0]["initial_lr"])  # warmed up


def test_byol_keeps_its_sgd_recipe_in_solo_learns_loss_scale_and_says_so(tmp_path, capsys):
    """solo-learn's BYOL loss (2 - 2 cos over both view orders) has 4x our gradient: with SGD the run
    gets a quarter of the lr and 4x the weight decay, in one printed line; other optimisers are left."""
    job = build_pretraining(compose_cfg("mlvgm_byol", SOLO), tmp_path / "sgd")
    assert "optimizer.lr 0.5 -> 0.125 and optimizer.weight_decay 0.002 -> 0.008" in capsys.readouterr().out
    assert job.method.cfg.optimizer.weight_decay == pytest.approx(0.008)
    adamw = ["optimizer.name=adamw", "optimizer.lr=2e-3", "~optimizer.kwargs.momentum"]
    job = build_pretraining(compose_cfg("mlvgm_byol", [*SOLO, *adamw]), tmp_path / "adamw")
    assert "BYOL loss" not in capsys.readouterr().out
    assert job.method.cfg.optimizer.weight_decay == pytest.approx(0.002)
    assert job.method.cfg.optimizer.lr == pytest.approx(2e-3 * 16 / 256)


def test_byol_momentum_is_taken_from_either_place_and_a_disagreement_refused():
    def momentum(*overrides: str) -> dict:
        cfg = compose_cfg("mlvgm_byol", [*SOLO, *overrides])
        solo = bridge.solo_pretrain_cfg(cfg, PretrainSpec.from_config(cfg), num_classes=10, num_devices=1)
        return dict(solo.momentum)

    assert momentum()["base_tau"] == 0.6  # mlvgm_byol's method_kwargs.base_tau
    # solo-learn's place, given alone, is honoured over our default (0.99)
    assert momentum("~method_kwargs.base_tau", "+momentum.base_tau=0.9")["base_tau"] == 0.9
    with pytest.raises(ConfigError, match="momentum.base_tau=0.9 and method_kwargs.base_tau=0.6 disagree"):
        momentum("+momentum.base_tau=0.9")  # mlvgm_byol sets method_kwargs.base_tau: 0.6
