"""The view comparison: plan from the hydra config, skipped rows, resume, report, one tiny end-to-end run."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from solo_mlvgm.compare import runner
from solo_mlvgm.compare.plan import RESULT_FILE, base_config_name, compose_run_config, parse_rows, plan_runs
from solo_mlvgm.compare.report import aggregate, margins, render_markdown
from solo_mlvgm.compare.runner import prepare, run_comparison
from solo_mlvgm.errors import ConfigError
from solo_mlvgm.methods import Supervised
from solo_mlvgm.views.walker import Walker, save_walker

from .conftest import CONFIGS, compose_cfg


@pytest.fixture
def hydra_configs():
    """The runner composes each run's config through hydra, initialised on the configs folder."""
    with initialize_config_dir(config_dir=str(CONFIGS), version_base="1.3"):
        yield


def _walkers(root: Path, world, levels: dict[str, tuple[int, ...]]) -> Path:
    for name, indices in levels.items():
        dim = len(world.coords_of(indices))
        meta = {
            "level": name,
            "indices": list(indices),
            "generator": {"name": "toyworld", "arch": world.arch},
        }
        save_walker(root / "levels" / name / "walker.pt", Walker(dim), meta)
    return root


def _cfg(tmp_path: Path, *overrides: str):
    """The comparison config (inside ``hydra_configs``, which the runner's own compose calls need too)."""
    return compose(config_name="compare_toyworld", overrides=[f"out={tmp_path / 'cmp'}", *overrides])


def test_plan_has_every_row_method_and_seed_with_the_same_settings_per_method(tmp_path, hydra_configs):
    cfg = _cfg(tmp_path)
    rows = parse_rows(cfg)
    names = [r.name for r in rows]
    assert names == [
        "real",
        "synth",
        "single_random",
        "ml_random",
        "ml_random_class",
        "single_learned",
        "ml_learned",
        "ml_learned_stochastic",
        "ml_learned_joint",
        "supervised",
    ]
    runs = plan_runs(cfg, rows, [0, 1])
    assert len(runs) == 9 * 2 * 2 + 1 * 2  # nine self-supervised rows x 2 methods x 2 seeds + supervised
    assert {r.method for r in runs if r.row.name == "supervised"} == {"supervised"}
    assert len({r.run_dir for r in runs}) == len(runs)
    by_key = {r.key: compose_run_config(base_config_name(cfg, r.method), r.overrides) for r in runs}
    # every row of a method has the same budget: SimCLR's 806 steps, SimSiam's (per-step learner) 1,984
    budget = {"simclr": (26, 3), "simsiam": (64, 12), "supervised": (26, 3)}
    for run in runs:
        c = by_key[run.key]
        assert (c.method, c.seed, c.optimizer.batch_size) == (run.method, run.seed, 64)
        assert (c.max_epochs, c.scheduler.warmup_epochs) == budget[run.method]
        assert c.backbone.name == "convnet6_standardised" and c.data.get("epoch_size", 2000) == 2000
    assert by_key["real/simclr/seed0"].data.source == "image_folder"
    assert by_key["real/simclr/seed0"].data.train_path == str(tmp_path / "cmp" / "real_data")
    assert by_key["real/simclr/seed0"].views.pixel == "simclr"
    assert set(by_key["ml_random/simsiam/seed1"].views.perturb) == {"pose", "color", "texture"}
    assert by_key["ml_random/simsiam/seed1"].views.pixel == "no_color"
    assert "shape" in by_key["ml_random_class/simclr/seed0"].views.perturb
    assert set(by_key["single_random/simclr/seed0"].views.perturb) == {"all"}
    assert by_key["synth/simclr/seed0"].views.perturb == {}
    assert (
        by_key["ml_learned/simclr/seed0"].views.perturb.pose.walker
        == "runs/mi_quant/latest/levels/pose/walker.pt"
    )
    stochastic = by_key["ml_learned_stochastic/simclr/seed0"].views.perturb
    assert {k: list(v.scale) for k, v in stochastic.items()} == {
        k: [-10, 10] for k in ("pose", "color", "texture")
    }
    (joint,) = by_key["ml_learned_joint/simclr/seed0"].views.perturb.items()
    assert joint[0] == "pose+color+texture+none" and joint[1].walker.startswith("runs/mi_quant_joint/latest/")
    # per-method settings apply to that method only
    assert by_key["synth/simclr/seed0"].optimizer.lr == pytest.approx(8e-3)
    assert by_key["synth/simsiam/seed0"].optimizer.lr == pytest.approx(0.5)  # its own recipe
    assert by_key["synth/simsiam/seed0"].optimizer.batch_size == 64
    # BYOL (not in the default methods) gets SimSiam's longer budget on every row, too
    byol_cfg = _cfg(tmp_path, "methods=[byol]")
    byol_runs = [
        r for r in plan_runs(byol_cfg, parse_rows(byol_cfg), [0]) if r.row.name in ("real", "ml_random")
    ]
    assert [r.method for r in byol_runs] == ["byol", "byol"]
    for run in byol_runs:
        c = compose_run_config(base_config_name(byol_cfg, run.method), run.overrides)
        assert (c.method, c.max_epochs, c.scheduler.warmup_epochs) == ("byol", 64, 6)
    # one setting picks every run's backbone (the earlier tables' plain convnet6)
    plain_cfg = _cfg(tmp_path, "backbone=convnet6")
    (plain,) = [r for r in plan_runs(plain_cfg, parse_rows(plain_cfg), [0]) if r.key == "synth/simsiam/seed0"]
    assert (
        compose_run_config(base_config_name(plain_cfg, "simsiam"), plain.overrides).backbone.name
        == "convnet6"
    )


def test_missing_walkers_skip_their_rows_with_the_command_that_makes_them(tmp_path, hydra_configs):
    cfg = _cfg(
        tmp_path,
        f"walkers.ml={tmp_path}/none",
        f"walkers.single={tmp_path}/none2",
        f"walkers.joint={tmp_path}/n3",
    )
    runs, skipped, _ = prepare(cfg)
    assert set(skipped) == {"ml_learned", "ml_learned_stochastic", "ml_learned_joint", "single_learned"}
    assert "levels=[pose+color+texture+none]" in skipped["ml_learned_joint"]
    assert "main_quantify.py" in skipped["ml_learned"] and "walker.pt" in skipped["ml_learned"]
    assert "levels=[all]" in skipped["single_learned"]
    assert not {r.row.name for r in runs} & set(skipped)
    assert not (tmp_path / "cmp").exists()  # planning writes nothing


def test_present_walkers_make_their_rows_run(tmp_path, hydra_configs, world):
    ml = _walkers(tmp_path / "ml", world, {"pose": (1,), "color": (2,), "texture": (3,)})
    single = _walkers(tmp_path / "all", world, {"all": tuple(range(5))})
    joint = _walkers(tmp_path / "joint", world, {"pose+color+texture+none": (1, 2, 3, 4)})
    cfg = _cfg(
        tmp_path,
        f"walkers.ml={ml}",
        f"walkers.single={single}",
        f"walkers.joint={joint}",
        "seeds=[0]",
        "methods=[simclr]",
    )
    runs, skipped, configs = prepare(cfg)
    assert skipped == {}
    assert {r.row.name for r in runs} >= {
        "ml_learned",
        "ml_learned_stochastic",
        "ml_learned_joint",
        "single_learned",
    }


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("methods=[mocov9]", "unknown method 'mocov9'"),
        ("seeds=[0,0]", "distinct"),
        ("seeds=3", "e.g. \\[0,1,2\\], got 3"),
        ("methods=simclr", "methods must be a list of method names"),
        (  # a row with an export: its settings are checked before the images are written
            'rows.real.overrides=["data=image_folder","data.train_path=${real_data}","data.num_workers=-1","views=real"]',
            "data.num_workers must be >= 0",
        ),
        ("+rows.synth.colour=1", "unknown keys"),
        ('rows.synth.overrides=["views=nope"]', "views=nope"),
        ('rows.synth.overrides=["views=toyworld_multilevel","views.perturb.pose.std=-1"]', "std"),
        ("linear.probe.epochs=0", "linear.probe.epochs"),
        ("base_configs.simsiam=null", "base_configs"),
    ],
)
def test_bad_comparison_configs_fail_before_anything_is_written(tmp_path, hydra_configs, override, message):
    cfg = _cfg(tmp_path, override)
    with pytest.raises(ConfigError, match=message):
        run_comparison(cfg)
    assert not (tmp_path / "cmp").exists()


def _fake_result(run, top1: float, digest: str) -> None:
    run.run_dir.mkdir(parents=True, exist_ok=True)
    result = {
        "row": run.row.name,
        "label": run.row.label,
        "method": run.method,
        "seed": run.seed,
        "top1": top1,
        "top5": 99.0,
        "train_top1": top1,
        "steps": 899,
        "pretrain_seconds": 60.0,
        "probe_seconds": 6.0,
        "run_dir": str(run.run_dir),
        "config_digest": digest,
        "probe_digest": runner.probe_digest(compose(config_name="compare_toyworld").linear),
    }
    (run.run_dir / RESULT_FILE).write_text(json.dumps(result))


def test_finished_runs_are_not_retrained_and_the_report_is_written(tmp_path, hydra_configs, monkeypatch):
    small = ["seeds=[0]", "methods=[simclr]", "rows.ml_learned=null", "rows.single_learned=null"]
    cfg = _cfg(tmp_path, *small, "random_backbone=false")
    runs, _, configs = prepare(cfg)
    for i, run in enumerate(runs):
        _fake_result(run, 50.0 + i, runner.config_digest(configs[run.key]))

    def no_training(*args, **kwargs):
        raise AssertionError("a finished run was retrained")

    monkeypatch.setattr(runner, "train_and_evaluate", no_training)
    monkeypatch.setattr(runner, "_export", lambda row, cfg: None)
    monkeypatch.setattr(runner, "_dry_build", lambda cfg: None)
    summary = run_comparison(cfg)
    assert summary["runs_trained_this_invocation"] == 0
    out = tmp_path / "cmp"
    assert (out / "results.png").stat().st_size > 0
    md = (out / "results.md").read_text()
    assert "multi-level random (ours)" in md and "supervised (upper bound)" in md
    assert md.index("supervised (upper bound)") > md.index("References")  # one-method rows are references
    top1 = {c["row"]: c["top1"]["mean"] for c in summary["cells"]}
    assert summary["margin_over_best_baseline"]["simclr"] == pytest.approx(
        top1["ml_random"] - max(top1[r] for r in ("real", "synth", "single_random"))
    )

    calls = []
    monkeypatch.setattr(
        runner, "train_and_evaluate", lambda run, c, e: calls.append(run.key) or no_training()
    )
    with pytest.raises(AssertionError):
        run_comparison(_cfg(tmp_path, *small, "random_backbone=false", "force=true"))
    assert calls == [runs[0].key]  # force retrains the first run instead of reading it

    # a run finished meanwhile by another invocation on the same out is read, not trained again
    calls.clear()
    for run in runs:
        (run.run_dir / runner.RESULT_FILE).unlink()

    def other_invocation_finishes_the_rest(run, c, e):
        calls.append(run.key)
        for later in runs[1:]:
            _fake_result(later, 60.0, runner.config_digest(configs[later.key]))
        _fake_result(run, 55.0, runner.config_digest(c))
        return json.loads((run.run_dir / runner.RESULT_FILE).read_text())

    monkeypatch.setattr(runner, "train_and_evaluate", other_invocation_finishes_the_rest)
    assert run_comparison(cfg)["runs_trained_this_invocation"] == 1 and calls == [runs[0].key]

    # a result made by another config (e.g. an older recipe of the method) is trained again, not reused
    monkeypatch.setattr(
        runner, "train_and_evaluate", lambda run, c, e: calls.append(run.key) or no_training()
    )
    calls.clear()
    _fake_result(runs[0], 50.0, runner.config_digest(configs[runs[0].key]))
    _fake_result(runs[-1], 50.0, "digest-of-an-older-recipe")
    with pytest.raises(AssertionError):
        run_comparison(cfg)
    assert calls == [runs[-1].key]


def test_aggregate_reports_mean_and_sample_std_over_seeds():
    results = [
        {
            "row": "a",
            "label": "A",
            "method": "simclr",
            "seed": s,
            "top1": t,
            "top5": 90.0 + s,
            "pretrain_seconds": 60.0,
            "probe_seconds": 0.0,
        }
        for s, t in [(0, 80.0), (1, 84.0)]
    ] + [
        {
            "row": "b",
            "label": "B",
            "method": "simclr",
            "seed": 0,
            "top1": 70.0,
            "top5": 90.0,
            "pretrain_seconds": 120.0,
            "probe_seconds": 0.0,
        }
    ]
    cells = aggregate(results)
    a = cells[0]
    assert a["top1"]["mean"] == pytest.approx(82.0)
    assert a["top1"]["std"] == pytest.approx(2.8284271, rel=1e-6)
    assert a["minutes_per_run"] == pytest.approx(1.0)
    assert cells[1]["top1"]["std"] == 0.0
    assert margins(cells, "a", ["b"]) == {"simclr": pytest.approx(12.0)}


def test_supervised_method_needs_labels():
    cfg = Supervised.validate_cfg(compose_cfg("supervised", ["data.num_classes=0"]))
    with pytest.raises(ConfigError, match="needs labels"):
        Supervised(cfg, 0)  # an unlabelled source (a generator without classes) has num_classes 0
    assert Supervised(cfg, 10).classifier.out_features == 10


def test_tiny_comparison_end_to_end_then_resumes(tmp_path, hydra_configs):
    tiny = [
        "seeds=[0]",
        "methods=[simclr]",
        "rows.ml_learned=null",
        "rows.single_learned=null",
        "rows.ml_random_class=null",
        "rows.single_random=null",
        "rows.real.export=64",
        'common=["optimizer.batch_size=16","++data.epoch_size=64","max_epochs=1",'
        '"scheduler.warmup_epochs=0.5","log_every_n_steps=1"]',
        "linear.data.n_train=200",
        "linear.data.n_test=100",
        "linear.probe.epochs=2",
    ]
    summary = run_comparison(_cfg(tmp_path, *tiny))
    out = tmp_path / "cmp"
    assert summary["runs_trained_this_invocation"] == 4  # real, synth, ml_random, supervised
    for row, method in [
        ("real", "simclr"),
        ("synth", "simclr"),
        ("ml_random", "simclr"),
        ("supervised", "supervised"),
    ]:
        result = json.loads((out / "runs" / row / method / "seed0" / RESULT_FILE).read_text())
        assert 0.0 <= result["top1"] <= 100.0 and result["steps"] == 4
        assert (out / "runs" / row / method / "seed0" / "backbone.pt").is_file()
    assert (out / "real_data" / "manifest.json").is_file()
    assert json.loads((out / "runs" / "random_backbone" / "seed0" / RESULT_FILE).read_text())["steps"] == 0
    again = run_comparison(_cfg(tmp_path, *tiny))
    assert again["runs_trained_this_invocation"] == 0
    assert [c["top1"] for c in again["cells"]] == [c["top1"] for c in summary["cells"]]

    # other linear settings: the stored backbones (and the floor) are probed again, none is retrained
    probed = run_comparison(_cfg(tmp_path, *tiny[:-1], "linear.probe.epochs=3"))
    assert probed["runs_trained_this_invocation"] == 0
    digest = runner.probe_digest(_cfg(tmp_path, *tiny[:-1], "linear.probe.epochs=3").linear)
    for folder in [*(out / "runs").glob("*/*/seed0"), out / "runs" / "random_backbone" / "seed0"]:
        assert json.loads((folder / RESULT_FILE).read_text())["probe_digest"] == digest, folder


def _real_generator_comparison(config_name: str, checkpoint: Path, tmp_path: Path):
    """A real-generator comparison config with every input given: a checkpoint, one exported image folder
    (one batch) for the real-data row and the probe, and no walkers."""
    from solo_mlvgm.data.export import export_image_folder
    from solo_mlvgm.generators import build_generator

    folder = export_image_folder(build_generator("toyworld"), tmp_path / "images", 256)
    overrides = [
        f"out={tmp_path / 'cmp'}",
        f"checkpoint={checkpoint}",
        f"real_data={folder}",
        f"linear.data.train_path={folder}",
        f"linear.data.val_path={folder}",
        f"walkers.ml={tmp_path}/no_walkers",
    ]
    return compose(config_name=config_name, overrides=overrides), folder


def test_the_bigbigan_comparison_plans_every_row_from_a_checkpoint_and_folders(tmp_path, hydra_configs):
    from solo_mlvgm.generators import build_generator

    torch.manual_seed(0)
    checkpoint = tmp_path / "BigBiGAN_x1.pth"
    torch.save(build_generator("bigbigan", ch=4, dim_z=24, shared_dim=8).state_dict(), checkpoint)
    cfg, folder = _real_generator_comparison("compare_bigbigan", checkpoint, tmp_path)
    runs, skipped, configs = prepare(cfg)  # every runnable row is composed and built (not trained)
    assert set(skipped) == {"ml_learned", "single_learned"}
    assert "generator=bigbigan" in skipped["ml_learned"]
    ml = configs["ml_random/simclr/seed0"]
    assert ml.generator.name == "bigbigan" and ml.generator.checkpoint == str(checkpoint)
    assert set(ml.views.perturb) == {"z1", "z2", "z3", "z4", "z5"} and ml.data.crop_size == 112
    assert "z0" in configs["ml_random_class/simsiam/seed0"].views.perturb
    assert configs["real/simclr/seed0"].data.train_path == str(folder)
    assert configs["supervised/supervised/seed0"].method == "supervised"


def test_the_stylegan2_cars_comparison_plans_every_row_and_method(tmp_path, hydra_configs):
    from solo_mlvgm.generators import build_generator

    torch.manual_seed(0)
    checkpoint = tmp_path / "cars.pt"  # 512 px and 16 w's like config-f, 2 channels: cheap to build
    build_generator("stylegan2", z_dim=16, w_dim=16, mapping_layers=2, channel_max=2).save_checkpoint(
        str(checkpoint)
    )
    cfg, _ = _real_generator_comparison("compare_stylegan2_cars", checkpoint, tmp_path)
    runs, skipped, configs = prepare(cfg)
    assert set(skipped) == {"ml_learned", "single_learned"}
    assert "generator=stylegan2_cars" in skipped["ml_learned"]
    rows = {key.split("/")[0] for key in configs}
    assert rows == {"real", "synth", "single_random", "ml_random"}  # no supervised row: LSUN has no labels
    assert {key.split("/")[1] for key in configs} == {"simclr", "simsiam", "byol"}
    ml = configs["ml_random/byol/seed0"]
    assert ml.generator.name == "stylegan2" and ml.generator.center_crop == 384 and ml.generator.resize == 128
    assert list(ml.views.perturb) == ["ws0_4", "ws4_8", "ws8_12", "ws12_16"] and ml.optimizer.name == "lars"


def test_report_flags_collapsed_seeds_and_rows_below_the_random_floor():
    def result(row: str, seed: int, top1: float, collapsed: bool = False) -> dict:
        return {
            "row": row,
            "label": row.upper(),
            "method": "simsiam" if row != "random_backbone" else "none",
            "seed": seed,
            "top1": top1,
            "top5": 90.0,
            "collapsed": collapsed,
            "pretrain_seconds": 60.0,
            "probe_seconds": 1.0,
        }

    results = [
        result("good", 0, 90.0),
        result("good", 1, 91.0),
        result("flat", 0, 20.0, collapsed=True),
        result("flat", 1, 25.0),
        result("random_backbone", 0, 28.0),
    ]
    cells = aggregate(results)
    assert next(c for c in cells if c["row"] == "flat")["collapsed_seeds"] == [0]
    text = render_markdown(cells, ["simsiam"], "t", [])
    assert "| GOOD | 90.5 ± 0.7 |" in text and "| FLAT | 22.5 ± 3.5 (!) |" in text
    assert "- FLAT, simsiam: collapsed in seed 0; below the random-backbone floor (28.0)" in text
    assert "GOOD, simsiam" not in text


def test_changed_collapse_thresholds_judge_stored_runs_again_without_retraining(
    tmp_path, hydra_configs, monkeypatch
):
    small = ["seeds=[0]", "methods=[simclr]", "rows.ml_learned=null", "rows.single_learned=null"]
    cfg = _cfg(tmp_path, *small, "random_backbone=false")
    runs, _, configs = prepare(cfg)
    # as the monitor wrote them: the rank ended below the default threshold 0.2, the std above 0.1
    signals = {
        "collapse": {"final": 0.9, "threshold": 0.1},
        "feature_rank": {"final": 0.15, "threshold": 0.2},
    }
    for run in runs:
        _fake_result(run, 70.0, runner.config_digest(configs[run.key]))
        (run.run_dir / "pretrain.json").write_text(json.dumps(signals))

    def no_training(*args, **kwargs):
        raise AssertionError("a finished run was retrained")

    monkeypatch.setattr(runner, "train_and_evaluate", no_training)
    monkeypatch.setattr(runner, "_export", lambda row, cfg: None)
    monkeypatch.setattr(runner, "_dry_build", lambda cfg: None)

    def compare_with_rank_threshold(threshold: str) -> set[bool]:
        changed = _cfg(tmp_path, *small, "random_backbone=false")
        changed.common = [*changed.common, f"feature_rank_threshold={threshold}"]
        assert run_comparison(changed)["runs_trained_this_invocation"] == 0
        assert {
            r["collapsed"] for r in json.loads((tmp_path / "cmp" / "results.json").read_text())["runs"]
        } == {
            json.loads((run.run_dir / RESULT_FILE).read_text())["collapsed"] for run in runs
        }  # the verdict is stored in each run's result.json too
        return {json.loads((run.run_dir / RESULT_FILE).read_text())["collapsed"] for run in runs}

    assert compare_with_rank_threshold("0.2") == {True}
    assert compare_with_rank_threshold("0.1") == {False}

    # a result stored when the digest hashed the whole config, thresholds included, still counts after the
    # thresholds change, and is stored again under today's digest
    whole = runner._digest(OmegaConf.to_container(configs[runs[0].key], resolve=False))
    assert whole != runner.config_digest(configs[runs[0].key])
    _fake_result(runs[0], 70.0, whole)
    assert compare_with_rank_threshold("0.1") == {False}
    stored = json.loads((runs[0].run_dir / RESULT_FILE).read_text())
    assert stored["config_digest"] == runner.config_digest(configs[runs[0].key])


def test_image_folder_evaluation_in_a_comparison_needs_one_named_size(tmp_path):
    """Every run of a comparison is probed on the same folder splits, so their size is given, not guessed."""
    folder = tmp_path / "images" / "class_0"
    folder.mkdir(parents=True)
    linear = OmegaConf.create(
        {
            "probe": {"epochs": 1, "batch_size": 8},
            "data": {
                "source": "image_folder",
                "train_path": str(folder.parent),
                "val_path": str(folder.parent),
            },
        }
    )
    with pytest.raises(ConfigError, match="needs linear.data.resolution"):
        runner._check_linear(linear)
    linear.data.resolution = 112
    runner._check_linear(linear)


def test_a_row_whose_walker_was_trained_again_at_the_same_path_is_retrained(tmp_path, hydra_configs, world):
    import os

    single = _walkers(tmp_path / "all", world, {"all": tuple(range(5))})
    cfg = _cfg(tmp_path, f"walkers.single={single}", "seeds=[0]", "methods=[simclr]")
    runs, _, configs = prepare(cfg)
    run = next(r for r in runs if r.row.name == "single_learned")
    _fake_result(run, 50.0, runner.config_digest(configs[run.key]))
    path = run.run_dir / RESULT_FILE
    assert runner.stored_result(run, configs[run.key]) is not None  # no inputs digest yet: files older
    assert json.loads(path.read_text())["inputs_digest"] == runner.inputs_digest(run.row)  # now stored

    torch.manual_seed(123)
    _walkers(tmp_path / "all", world, {"all": tuple(range(5))})  # trained again: other weights, same path
    assert runner.stored_result(run, configs[run.key]) is None

    # a result stored before the digest existed: a walker file newer than it means another walker
    result = json.loads(path.read_text())
    del result["inputs_digest"]
    path.write_text(json.dumps(result))
    os.utime(path, (1, 1))
    assert runner.stored_result(run, configs[run.key]) is None
