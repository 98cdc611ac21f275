"""The MI method: walker, gamma stop, Monte Carlo, verdicts, recommended views, resumable driver."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml

from solo_mlvgm.entry import quantify as driver
from solo_mlvgm.entry.pretrain import build_pretraining
from solo_mlvgm.errors import ConfigError
from solo_mlvgm.generators import build_generator
from solo_mlvgm.methods import METHODS, method_class
from solo_mlvgm.quantify.method import MIQuant
from solo_mlvgm.quantify.monte_carlo import monte_carlo_stats
from solo_mlvgm.quantify.recommend import recommended_views, std_for_change
from solo_mlvgm.quantify.stop import GammaStop
from solo_mlvgm.quantify.table import assign_verdicts
from solo_mlvgm.settings import GeneratorSpec
from solo_mlvgm.views import ViewSampler, ViewSpec
from solo_mlvgm.views.walker import Walker, load_walker, save_walker

from .conftest import ROOT, TINY, compose_cfg

# A quantification that finishes in seconds: small batch, short warm-up and budget, few Monte Carlo samples.
TINY_MI = [
    "optimizer.batch_size=16",
    "method_kwargs.encoder_warmup_steps=3",
    "method_kwargs.proj_hidden_dim=32",
    "method_kwargs.proj_output_dim=16",
    "max_steps=8",
    "monte_carlo.samples=500",
    "monte_carlo.chunk=200",
]


def _constant_walker(dim: int, value: torch.Tensor) -> Walker:
    walker = Walker(dim)
    with torch.no_grad():
        walker.net[2].weight.zero_()
        walker.net[2].bias.copy_(value)
    return walker


def test_walker_starts_as_the_identity(world):
    walker = Walker(8)
    base = world.sample_base(256, generator=torch.Generator().manual_seed(0))
    z = base[:, world.coords_of((1,))]
    assert walker(z).norm(dim=1).max() < 1e-2 * z.norm(dim=1).min()
    anchor = world(world.to_levels(base))
    positive = world(world.perturb(base, [((1,), walker(z))]))
    assert (anchor - positive).abs().max() < 1e-2  # far below one grey level of 8-bit images


def test_gradients_reach_the_walker_through_the_generator_but_never_change_it(world):
    cfg = MIQuant.validate_cfg(compose_cfg("mi_quant", TINY_MI))
    module = MIQuant(cfg, world, world.resolve("pose"))
    buffers = {k: v.clone() for k, v in world.named_buffers()}
    base = world.sample_base(16, generator=torch.Generator().manual_seed(0))
    anchor, positive, _ = module.views(base)
    (-module.info_nce(anchor, positive)).backward()
    grads = [p.grad for p in module.walker.parameters()]
    assert all(g is not None and g.abs().sum() > 0 for g in grads)
    assert all(torch.equal(buffers[k], v) for k, v in world.named_buffers())
    assert not any(p.requires_grad for p in world.parameters())
    assert not any(k.startswith("_generator") for k in module.state_dict())  # never saved with the method


def test_a_dead_level_gives_its_walker_exactly_zero_gradient(world):
    cfg = MIQuant.validate_cfg(compose_cfg("mi_quant", TINY_MI))
    module = MIQuant(cfg, world, world.resolve("none"))
    anchor, positive, _ = module.views(world.sample_base(16, generator=torch.Generator().manual_seed(0)))
    module.info_nce(anchor, positive).backward()
    assert all(p.grad is None or p.grad.abs().sum() == 0 for p in module.walker.parameters())


def test_stop_fires_at_the_first_smoothed_crossing():
    stop = GammaStop(gamma=1.0, tolerance=0.05, smoothing=3)
    losses = [0.1, 0.1, 0.1, 0.5, 0.9, 1.2, 1.5, 2.0]
    fired = [step for step, loss in enumerate(losses) if stop.update(step, loss)]
    # smoothed: ..., (0.5+0.9+1.2)/3 = 0.867 at step 5, (0.9+1.2+1.5)/3 = 1.2 >= 0.95 at step 6
    assert fired == [6] and stop.fired_at == 6 and math.isclose(stop.smoothed, 1.2)


def test_best_loss_is_finite_from_the_arming_step_on():
    stop = GammaStop(gamma=1.0, tolerance=0.05, smoothing=1)
    stop.update(0, 0.8)
    assert not stop.armed
    assert not stop.update(1, 0.3)  # arms here, the budget may end here
    assert stop.armed and stop.best == pytest.approx(0.3)


def test_stop_ignores_a_one_step_spike_and_the_untrained_start():
    spike = GammaStop(gamma=1.0, tolerance=0.05, smoothing=3)
    assert not any(spike.update(s, x) for s, x in enumerate([0.1, 0.1, 0.1, 2.0, 0.1, 0.1]))
    assert spike.armed and math.isclose(spike.best, (0.1 + 0.1 + 2.0) / 3)
    start = GammaStop(gamma=1.0, tolerance=0.0, smoothing=1)
    # An untrained encoder starts far above gamma: not a stop. The rule arms below gamma / 2.
    assert [s for s, x in enumerate([4.0, 3.0, 0.4, 0.8, 1.0]) if start.update(s, x)] == [4]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [({"gamma": 0}, "gamma must be > 0"), ({"tolerance": 1.0}, "tolerance"), ({"smoothing": 0}, "smoothing")],
)
def test_bad_stop_settings_are_rejected(kwargs, message):
    with pytest.raises(ConfigError, match=message):
        GammaStop(**kwargs)


def test_monte_carlo_is_exact_for_a_constant_walker(world):
    value = torch.tensor([3.0, 0.0, -4.0, 0.0, 0.0, 0.0, 0.0, 0.0])  # norm 5
    stats = monte_carlo_stats(world, _constant_walker(8, value), (2,), samples=3000, chunk=1000)
    assert stats.samples == 3000
    assert stats.mu == pytest.approx(5.0, abs=1e-5) and stats.sigma < 1e-3


def test_monte_carlo_measures_a_group_on_all_its_levels(world):
    value = torch.ones(16)  # one walker on two levels of 8 coordinates: norm 4
    stats = monte_carlo_stats(world, _constant_walker(16, value), (1, 2), samples=1000)
    assert stats.mu == pytest.approx(4.0, abs=1e-5)


def _record(level: str, mu: float, reached: bool, indices: tuple[int, ...]) -> dict:
    return {"level": level, "mu": mu, "sigma": 0.1, "reached_gamma": reached, "indices": list(indices)}


def test_verdicts_follow_the_documented_rule():
    records = [
        _record("a", 0.5, True, (0,)),  # 0.5 < 0.25 x median(0.5, 3, 4, 6) = 0.875: over-used
        _record("b", 3.0, True, (1,)),
        _record("c", 4.0, True, (2,)),
        _record("d", 6.0, True, (3,)),
        _record("e", 0.0, False, (4,)),  # never reached gamma: unused, whatever its mu
    ]
    assert [r["verdict"] for r in assign_verdicts(records)] == ["over-used", "used", "used", "used", "unused"]


def test_recommended_views_leave_out_bad_levels_and_match_the_magnitude_rule(world):
    records = assign_verdicts(
        [
            _record("shape", 0.2, True, (0,)),
            _record("pose", 2.0, True, (1,)),
            _record("color", 3.0, True, (2,)),
            _record("none", 0.0, False, (4,)),
        ]
    )
    views = recommended_views(world, records, magnitude_fraction=0.5)
    assert set(views["perturb"]) == {"pose", "color"}
    spec = ViewSpec.from_config(views)  # ready for pretraining
    for (_, p), mu in zip(spec.resolve(world), (2.0, 3.0), strict=True):
        delta = p.sample(20000, 8, torch.device("cpu"), torch.Generator().manual_seed(2))
        assert delta.norm(dim=1).mean() == pytest.approx(0.5 * mu, rel=0.03)
    assert std_for_change(world, (1,), 0.0) == 0.0


def _save_constant(tmp_path: Path, world, level: str, value: torch.Tensor) -> Path:
    indices = world.resolve(level)
    meta = {"level": level, "indices": list(indices), "generator": {"name": "toyworld", "arch": world.arch}}
    return save_walker(tmp_path / level / "walker.pt", _constant_walker(len(value), value), meta)


def test_learned_views_load_and_change_only_their_levels(tmp_path, world):
    path = _save_constant(tmp_path, world, "color", torch.full((8,), 0.5))
    walker, meta = load_walker(path)
    assert meta["level"] == "color" and not any(p.requires_grad for p in walker.parameters())
    spec = ViewSpec.from_config(
        {"pixel": "none", "perturb": {"color": {"type": "learned", "walker": str(path)}}}
    )
    pair = ViewSampler(world, spec).sample_levels(32, torch.Generator().manual_seed(0))
    anchor, positive = pair.anchor, pair.positive
    changed = [i for i, (a, p) in enumerate(zip(anchor, positive, strict=True)) if not torch.equal(a, p)]
    assert changed == [2]
    assert torch.allclose(positive[2] - anchor[2], torch.full((32, 8), 0.5), atol=1e-6)


def test_single_latent_learned_view_uses_one_walker_on_the_whole_latent(tmp_path, world):
    path = _save_constant(tmp_path, world, "all", torch.full((40,), 0.1))
    spec = ViewSpec.from_config({"perturb": {"all": {"type": "learned", "walker": str(path)}}})
    pair = ViewSampler(world, spec)(8, torch.Generator().manual_seed(0))
    assert not torch.equal(pair.anchor, pair.positive)


def test_learned_views_reject_a_walker_from_another_level_or_generator(tmp_path, world):
    path = _save_constant(tmp_path, world, "color", torch.zeros(8))
    on_pose = ViewSpec.from_config({"perturb": {"pose": {"type": "learned", "walker": str(path)}}})
    with pytest.raises(ConfigError, match="trained on level 'color', not on 'pose'"):
        on_pose.resolve(world)
    spec = ViewSpec.from_config({"perturb": {"color": {"type": "learned", "walker": str(path)}}})
    with pytest.raises(ConfigError, match="different generator"):
        spec.resolve(build_generator("toyworld", world_seed=7))
    with pytest.raises(ConfigError, match="no walker at"):
        ViewSpec.from_config({"perturb": {"color": {"type": "learned", "walker": str(tmp_path / "nope.pt")}}})
    with pytest.raises(ConfigError, match="needs walker="):
        ViewSpec.from_config({"perturb": {"color": {"type": "learned"}}})


@pytest.mark.parametrize("level", [0, 1, 2, 3, 4])
def test_forward_pair_matches_rendering_both_views(world, level):
    base = world.sample_base(16, generator=torch.Generator().manual_seed(0))
    anchor = world.to_levels(base)
    positive = world.perturb(
        base, [((level,), torch.randn(16, 8, generator=torch.Generator().manual_seed(1)))]
    )
    first, second = world.forward_pair(anchor, positive, level)
    assert torch.equal(first, world(anchor)) and torch.allclose(second, world(positive), atol=1e-6)


def test_mi_quant_is_not_a_pretraining_method():
    assert "mi_quant" not in METHODS
    with pytest.raises(ConfigError, match="main_quantify.py"):
        method_class("mi_quant")


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("levels=[shoe]", "unknown level or group 'shoe'"),
        ("method_kwargs.encoder_mode=sometimes", "encoder_mode must be one of"),
        ("method_kwargs.tolerance=2.0", "tolerance must be in"),
        ("optimizer.betas=[0.5]", "optimizer.betas"),
        ("max_steps=2", "must exceed method_kwargs.encoder_warmup_steps"),
        ("+method_kwargs.lambda=1", "no method_kwargs"),
        ("monte_carlo.samples=1", "monte_carlo.samples"),
        ("method_kwargs.input_size=-8", "input_size must be > 0"),
        ("method_kwargs.walker_hidden_dim=0", "walker_hidden_dim must be > 0"),
        ("method_kwargs.encoder_mode=frozen devices=2", "frozen runs in one process"),
    ],
)
def test_bad_quantification_configs_fail_before_any_work(tmp_path, override, message):
    cfg = compose_cfg("mi_quant", [*TINY_MI, *override.split()])
    with pytest.raises(ConfigError, match=message):
        driver.run_quantification(cfg, tmp_path / "run")
    assert not (tmp_path / "run").exists()


def test_frozen_mode_is_refused_whenever_the_trainer_would_start_several_processes(tmp_path, monkeypatch):
    """devices=auto on a machine with several GPUs starts several processes, as devices=2 does."""

    class TwoProcesses:
        world_size = 2

    monkeypatch.setattr(driver, "_build_trainer", lambda spec: TwoProcesses())
    cfg = compose_cfg("mi_quant", [*TINY_MI, "method_kwargs.encoder_mode=frozen", "devices=auto"])
    with pytest.raises(ConfigError, match="frozen runs in one process, but devices=auto gives 2"):
        driver.run_quantification(cfg, tmp_path / "run")
    assert not (tmp_path / "run").exists()


def test_quantification_writes_every_output_and_resumes_without_recomputing(tmp_path, monkeypatch):
    run_dir = tmp_path / "run"
    cfg = compose_cfg("mi_quant", [*TINY_MI, "levels=[pose,none]"])
    records = driver.run_quantification(cfg, run_dir)
    assert [r["level"] for r in records] == ["pose", "none"]
    for name in ("config.yaml", "mi_table.json", "mi_table.csv", "mi_table.md", "loss_curves.png",
                 "mu_sigma.png", "recommended_views.yaml"):  # fmt: skip
        assert (run_dir / name).is_file(), name
    table = json.loads((run_dir / "mi_table.json").read_text())
    assert {"level", "final_loss", "mu", "sigma", "steps", "verdict"} <= set(table[0])
    assert table[1]["verdict"] == "unused"  # the dead level cannot reach gamma
    ViewSpec.from_config(yaml.safe_load((run_dir / "recommended_views.yaml").read_text()))
    assert load_walker(run_dir / "levels" / "pose")[1]["level"] == "pose"

    # An interrupted run: 'none' never finished. Resuming trains only 'none'.
    (run_dir / "levels" / "none" / "result.json").unlink()
    pose_result = (run_dir / "levels" / "pose" / "result.json").read_text()
    trained = []
    original = driver.quantify_level
    monkeypatch.setattr(
        driver, "quantify_level", lambda cfg, g, name, *a: trained.append(name) or original(cfg, g, name, *a)
    )
    resumed = compose_cfg("mi_quant", [*TINY_MI, "levels=[pose,none]", f"resume={run_dir}"])
    driver.run_quantification(resumed, tmp_path / "unused")
    assert trained == ["none"]
    assert (run_dir / "levels" / "pose" / "result.json").read_text() == pose_result
    assert (run_dir / "levels" / "none" / "result.json").is_file()

    changed = compose_cfg("mi_quant", [*TINY_MI, "seed=1", f"resume={run_dir}"])

    def no_build(self):
        raise AssertionError("the generator was built before the resume folder was checked")

    monkeypatch.setattr(GeneratorSpec, "build", no_build)
    with pytest.raises(ConfigError, match=r"different settings for \['seed'\]"):
        driver.run_quantification(changed, tmp_path / "unused")


def test_main_quantify_reports_bad_input_in_one_line(tmp_path):
    done = subprocess.run(
        [
            sys.executable,
            str(ROOT / "main_quantify.py"),
            "levels=[shoe]",
            f"hydra.run.dir={tmp_path / 'run'}",
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 2
    assert done.stderr.strip().splitlines()[-1].startswith("error: unknown level or group 'shoe'")


def test_recommended_views_file_feeds_pretraining(tmp_path):
    views = tmp_path / "recommended_views.yaml"
    views.write_text(
        yaml.safe_dump({"name": "mi_recommended", "pixel": "none", "perturb": {"color": {"std": 0.3}}})
    )
    job = build_pretraining(compose_cfg("mlvgm_simclr", [*TINY, f"views_file={views}"]), tmp_path / "run")
    assert job.spec.views.name == "mi_recommended" and set(job.spec.views.perturb) == {"color"}
    with pytest.raises(ConfigError, match="views_file"):
        build_pretraining(
            compose_cfg("mlvgm_simclr", [*TINY, f"views_file={tmp_path / 'no.yaml'}"]), tmp_path
        )


def test_an_ad_hoc_group_gets_one_joint_walker_usable_as_a_view(tmp_path):
    """``levels=[pose+texture]``: one walker over both levels' coordinates (the paper's joint "1_6")."""
    cfg = compose_cfg("mi_quant", [*TINY_MI, "levels=[pose+texture]"])
    (record,) = driver.run_quantification(cfg, tmp_path / "run")
    assert record["level"] == "pose+texture"
    walker_file = tmp_path / "run" / "levels" / "pose+texture" / "walker.pt"
    walker, meta = load_walker(walker_file)
    world = build_generator("toyworld")
    assert tuple(meta["indices"]) == world.resolve("texture+pose") and walker.dim == 16
    spec = ViewSpec.from_config(
        {"perturb": {"pose+texture": {"type": "learned", "walker": str(walker_file)}}}
    )
    pair = ViewSampler(world, spec).sample_levels(8, torch.Generator().manual_seed(0))
    changed = [
        world.level_names[i]
        for i, (a, p) in enumerate(zip(pair.anchor, pair.positive, strict=True))
        if not torch.equal(a, p)
    ]
    assert sorted(changed) == ["pose", "texture"]


def test_a_stochastic_walker_scales_its_delta_per_sample(tmp_path, world):
    path = _save_constant(tmp_path, world, "color", torch.full((8,), 0.5))
    spec = ViewSpec.from_config(
        {"perturb": {"color": {"type": "learned", "walker": str(path), "scale": [-1, 1]}}}
    )
    assert spec.perturb["color"].describe().endswith("x U[-1, 1]")
    pair = ViewSampler(world, spec).sample_levels(256, torch.Generator().manual_seed(0))
    moved = pair.positive[2] - pair.anchor[2]  # 0.5 x s, one s per sample, the same on every coordinate
    s = moved[:, 0] / 0.5
    assert torch.allclose(moved, 0.5 * s[:, None].expand(-1, 8), atol=1e-6)
    assert s.min() < -0.8 and s.max() > 0.8 and s.abs().max() <= 1
    again = ViewSampler(world, spec).sample_levels(256, torch.Generator().manual_seed(0))
    assert torch.equal(pair.positive[2], again.positive[2])
    for bad in ([1, -1], "wide", [0, float("nan")]):
        with pytest.raises(ConfigError, match="scale"):
            ViewSpec.from_config(
                {"perturb": {"color": {"type": "learned", "walker": str(path), "scale": bad}}}
            )
