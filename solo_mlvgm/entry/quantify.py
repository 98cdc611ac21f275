"""main_quantify.py: run mi_quant on every selected level, then Monte Carlo, Table 1, plots, recommended views.

Run folder::

    config.yaml                       the resolved config (a resumed run must match it)
    levels/<level>/history.csv        loss, smoothed loss and mean ||p(z)|| per step
    levels/<level>/walker.pt          the walker at the stop (state dict + meta; a learned view)
    levels/<level>/encoder.pt         the encoder and head at the stop (state dict + config)
    levels/<level>/result.json        written last: a level with this file is finished and never rerun
    mi_table.{json,csv,md}, loss_curves.png, mu_sigma.png, recommended_views.yaml

Each level is written as soon as it finishes, so an interrupted run keeps its finished levels; running the
same command with ``resume=<run folder>`` trains only the rest. Every level starts from the same seed, so a
level's result does not depend on which levels ran before it in the same process.
"""

from __future__ import annotations

import csv
import json
import time
import warnings
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import torch
import yaml
from lightning.pytorch.utilities import rank_zero_only
from omegaconf import DictConfig, OmegaConf, open_dict

from solo_mlvgm.backends import Backend, resolve_backend
from solo_mlvgm.checks import integer, number
from solo_mlvgm.data.seeding import EVAL_STREAM, stream_seed
from solo_mlvgm.errors import ConfigError
from solo_mlvgm.generators.base import MultiLatentGenerator
from solo_mlvgm.quantify.method import MIQuant
from solo_mlvgm.quantify.monte_carlo import monte_carlo_stats
from solo_mlvgm.quantify.plots import plot_loss_curves, plot_mu_sigma
from solo_mlvgm.quantify.recommend import recommended_views
from solo_mlvgm.quantify.table import assign_verdicts, write_table
from solo_mlvgm.runs import point_latest, save_config, save_torch, write_atomic, write_csv, write_json
from solo_mlvgm.settings import QuantifySpec
from solo_mlvgm.trainer import make_trainer, quiet_lightning
from solo_mlvgm.views.walker import save_walker

MC_STREAM = EVAL_STREAM + 100  # Monte Carlo anchors: a stream no training batch or eval split uses
# Keys that may differ between a run and its resumption: they do not change a finished level's result.
# The backend only changes which registry the (same) module comes from.
RESUME_FREE_KEYS = ("levels", "recommend", "resume", "accelerator", "devices", "log_every_n_steps", "backend")


def selected_levels(spec: QuantifySpec, generator: MultiLatentGenerator) -> list[tuple[str, tuple[int, ...]]]:
    """(name, level indices) of every level or group to quantify; when ``levels`` is null, the generator's
    units: every level alone (StyleGAN2: every group of w's)."""
    if spec.levels is None:
        return generator.units()
    return [(name, generator.resolve(name)) for name in spec.levels]


def check_cfg(cfg: DictConfig) -> tuple[DictConfig, QuantifySpec, Backend]:
    """The method's config with mi_quant's defaults filled (a copy), our settings as a ``QuantifySpec``,
    and the backend; one ``ConfigError`` line on any bad setting."""
    spec = QuantifySpec.from_config(cfg)
    integer(cfg.optimizer.batch_size, "optimizer.batch_size", 1)
    for key in ("encoder_lr", "walker_lr"):
        number(cfg.optimizer[key], f"optimizer.{key}")
    method_cfg = MIQuant.validate_cfg(cfg.copy())
    return method_cfg, spec, resolve_backend(spec.backend)


def _comparable(cfg: DictConfig | dict) -> dict:
    data = OmegaConf.to_container(cfg, resolve=True) if isinstance(cfg, DictConfig) else dict(cfg)
    assert isinstance(data, dict)
    return {k: v for k, v in data.items() if k not in RESUME_FREE_KEYS}


def check_resume(cfg: DictConfig, run_dir: Path) -> None:
    """A resumed folder must have been made by the same config (up to ``RESUME_FREE_KEYS``)."""
    saved = run_dir / "config.yaml"
    if not saved.is_file():
        if cfg.get("resume"):
            raise ConfigError(f"resume folder '{run_dir}' has no config.yaml from main_quantify.py")
        return
    before, now = _comparable(yaml.safe_load(saved.read_text())), _comparable(cfg)
    differ = sorted(k for k in set(before) | set(now) if before.get(k) != now.get(k))
    if differ:
        raise ConfigError(
            f"run folder '{run_dir}' was made with different settings for {differ}; use a new folder"
        )


def _build_trainer(spec: QuantifySpec) -> pl.Trainer:
    return make_trainer(
        spec.trainer,
        max_epochs=1,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        use_distributed_sampler=False,  # every rank runs every step number; seeds differ by rank
    )


def read_history(path: Path) -> list[dict[str, float]]:
    with path.open() as f:
        return [{k: float(v) for k, v in row.items()} for row in csv.DictReader(f)]


def quantify_level(
    cfg: DictConfig,
    generator: MultiLatentGenerator,
    name: str,
    indices: tuple[int, ...],
    level_dir: Path,
    spec: QuantifySpec,
    backend: Backend,
) -> dict[str, Any]:
    """Train one level's walker until the gamma stop (or the budget), save it, and measure mu and sigma."""
    pl.seed_everything(spec.seed, verbose=False)
    module = backend.build_quantifier(cfg, generator, name, indices)
    trainer = _build_trainer(spec)
    steps: list[int] = list(range(spec.max_steps))  # the batches are step numbers
    tickets = torch.utils.data.DataLoader(steps, batch_size=None)  # type: ignore[arg-type,var-annotated]
    start = time.perf_counter()
    with quiet_lightning(), warnings.catch_warnings():
        warnings.filterwarnings(
            "ignore", message=".*isinstance\\(treespec, LeafSpec\\).*"
        )  # Lightning-internal
        trainer.fit(module, train_dataloaders=tickets)
    seconds = time.perf_counter() - start
    stop, history = module.stop, module.history
    at_stop = history[-1]
    if stop.fired:
        final_loss = stop.smoothed
    else:
        final_loss = stop.best if stop.armed else at_stop["smoothed"]
    print(
        f"    {name}: walker trained in {len(history)} steps; Monte Carlo over {spec.mc_samples} anchors",
        flush=True,
    )
    stats = monte_carlo_stats(  # on the generator's device (the module may have been moved back to the CPU)
        generator,
        module.walker,
        indices,
        samples=spec.mc_samples,
        chunk=spec.mc_chunk,
        seed=stream_seed(spec.seed, MC_STREAM, 0),
    )
    record = {
        "level": name,
        "indices": list(indices),
        "final_loss": float(final_loss),
        "mu": stats.mu,
        "sigma": stats.sigma,
        "steps": len(history),
        "reached_gamma": stop.fired,
        "stop_step": stop.fired_at,
        "armed": stop.armed,
        "delta_norm_at_stop": at_stop["delta_norm"],
        "mc_samples": stats.samples,
        "encoder_mode": str(cfg.method_kwargs.encoder_mode),
        "backend": backend.name,
        "seconds": seconds,
    }
    _write_level(cfg, generator, module, record, level_dir)
    return record


@rank_zero_only
def _write_level(
    cfg: DictConfig, generator: MultiLatentGenerator, module: MIQuant, record: dict, level_dir: Path
) -> None:
    meta = {
        "level": record["level"],
        "indices": record["indices"],
        "generator": {"name": str(cfg.generator.name), "arch": generator.arch},
        "gamma": float(cfg.method_kwargs.gamma),
        "stop_step": record["stop_step"],
        "reached_gamma": record["reached_gamma"],
        "mu": record["mu"],
    }
    write_csv(level_dir / "history.csv", module.history)
    save_walker(level_dir / "walker.pt", module.walker, meta)
    encoder = {
        "encoder": {k: v.detach().cpu() for k, v in module.encoder.state_dict().items()},
        "projector": {k: v.detach().cpu() for k, v in module.projector.state_dict().items()},
        "config": OmegaConf.to_container(cfg, resolve=True),
    }
    save_torch(level_dir / "encoder.pt", encoder)
    write_json(level_dir / "result.json", record)  # last: marks the level finished


def run_quantification(cfg: DictConfig, run_dir: Path) -> list[dict[str, Any]]:
    """Check everything, then quantify each selected level that is not finished yet, then write Table 1."""
    cfg, spec, backend = check_cfg(cfg)
    if spec.resume is not None:
        run_dir = spec.resume
    check_resume(cfg, run_dir)  # before the generator is built: a checkpoint can take a while to read
    trainer = _build_trainer(spec)  # bad trainer settings fail before any work
    if cfg.method_kwargs.encoder_mode == "frozen" and trainer.world_size > 1:
        # the frozen encoder stops requiring gradients mid-run, which DDP does not allow
        raise ConfigError(
            f"method_kwargs.encoder_mode=frozen runs in one process, but devices={spec.trainer.devices} "
            f"gives {trainer.world_size}: set devices=1 (and one node)"
        )
    generator = spec.generator.build()
    levels = selected_levels(spec, generator)
    saved = cfg.copy()
    with open_dict(saved):
        saved.backend = backend.name  # the backend used, recorded with the run
    _write_config(run_dir, saved)

    kw = cfg.method_kwargs
    print(
        f"mi_quant ({backend.name} backend): generator {cfg.generator.name}, levels {[n for n, _ in levels]}, encoder "
        f"{cfg.backbone.name} ({kw.encoder_mode}), gamma {kw.gamma}, budget {spec.max_steps} steps per level"
    )
    records = []
    total_start = time.perf_counter()
    for name, indices in levels:
        level_dir = run_dir / "levels" / name
        done = level_dir / "result.json"
        if done.is_file():
            record = json.loads(done.read_text())
            print(
                f"  {name}: finished earlier (kept): loss {record['final_loss']:.3f}, mu {record['mu']:.3g}"
            )
        else:
            record = quantify_level(cfg, generator, name, indices, level_dir, spec, backend)
            outcome = (
                f"reached gamma at step {record['stop_step']}"
                if record["reached_gamma"]
                else f"never reached gamma in {record['steps']} steps (best {record['final_loss']:.3f})"
            )
            print(
                f"  {name}: {outcome}; mu {record['mu']:.3g} +- {record['sigma']:.3g} ({record['seconds']:.0f} s)"
            )
        records.append(record)
    records = assign_verdicts(records, spec.recommend.overused_below)
    _write_results(cfg, spec, generator, run_dir, records)
    print(f"all levels: {time.perf_counter() - total_start:.0f} s this call")
    return records


@rank_zero_only
def _write_config(run_dir: Path, cfg: DictConfig) -> None:
    run_dir.mkdir(parents=True, exist_ok=True)
    save_config(run_dir / "config.yaml", cfg)


@rank_zero_only
def _write_results(
    cfg: DictConfig, spec: QuantifySpec, generator: MultiLatentGenerator, run_dir: Path, records: list[dict]
) -> None:
    kw, rec = cfg.method_kwargs, spec.recommend
    histories = {r["level"]: read_history(run_dir / "levels" / r["level"] / "history.csv") for r in records}
    title = (
        f"Table 1: {cfg.generator.name}, encoder {cfg.backbone.name} ({kw.encoder_mode}), gamma {kw.gamma}, "
        f"seed {spec.seed}, Monte Carlo over {spec.mc_samples} samples"
    )
    write_table(run_dir, records, title)
    plot_loss_curves(run_dir / "loss_curves.png", histories, records, float(kw.gamma))
    plot_mu_sigma(run_dir / "mu_sigma.png", records, title=f"{cfg.generator.name}: mu +- sigma per level")
    views = recommended_views(
        generator,
        records,
        magnitude_fraction=rec.magnitude_fraction,
        truncation=rec.truncation,
        pixel=rec.pixel,
        crop_min_scale=rec.crop_min_scale,
    )
    header = (
        f"# Views recommended by main_quantify.py from {run_dir.name}: over-used and unused levels left out;\n"
        f"# std chosen so that E||change of the level|| = {rec.magnitude_fraction} x mu (solo_mlvgm/quantify/recommend.py).\n"
        "# Use: python main_pretrain.py --config-name mlvgm_simclr views_file=<this file>\n"
    )
    write_atomic(run_dir / "recommended_views.yaml", header + yaml.safe_dump(views, sort_keys=False))
    point_latest(run_dir)
    _print_table(title, records, run_dir)


def _print_table(title: str, records: list[dict], run_dir: Path) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=title)
    for column in ("level", "InfoNCE", "mu", "sigma", "steps", "verdict"):
        table.add_column(column)
    for r in records:
        table.add_row(
            r["level"],
            f"{r['final_loss']:.3f}",
            f"{r['mu']:.3g}",
            f"{r['sigma']:.3g}",
            str(r["steps"]),
            r["verdict"],
        )
    Console().print(table)
    print(f"results: {run_dir}/mi_table.md, loss_curves.png, mu_sigma.png, recommended_views.yaml")
