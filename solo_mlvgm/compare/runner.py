"""Run a view comparison: check every run's config, export the finite dataset, pretrain and probe each
(row, method, seed) that is not finished yet, probe a random backbone per seed, then write the report.

A run is finished when its folder holds ``result.json`` (written last) made by the same pretraining
config (its digest is stored); re-running the command skips it, ``force=true`` recomputes it. An
unfinished folder (an interrupted run), or one trained with another config, is cleared and trained again.
The collapse thresholds only judge a finished run, so they are left out of the digest: a stored run is
judged again against the current ones instead of being retrained. What else a stored figure depends on is
checked too: the backend the run resolved to (retrained if ``backend: auto`` now resolves to another), the
contents of the files its row reads (retrained when a walker at the same path was trained again), and the
linear-evaluation settings (a stored backbone is probed again when they changed; the floor likewise).
"""

from __future__ import annotations

import hashlib
import json
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig, OmegaConf

from solo_mlvgm.backends import resolve_backend
from solo_mlvgm.compare.plan import (
    FLOOR_ROW,
    RESULT_FILE,
    PlannedRun,
    Row,
    base_config_name,
    compose_run_config,
    parse_rows,
    parse_seeds,
    plan_runs,
)
from solo_mlvgm.compare.report import write_report
from solo_mlvgm.data.export import export_image_folder
from solo_mlvgm.entry.linear_eval import labelled_splits, rebuild_backbone
from solo_mlvgm.entry.pretrain import build_pretraining, check_settings, run_pretraining
from solo_mlvgm.errors import ConfigError
from solo_mlvgm.methods.collapse import DEFAULT_RANK_THRESHOLD, DEFAULT_THRESHOLD
from solo_mlvgm.methods.linear_probe import probe_backbone
from solo_mlvgm.runs import load_backbone_file, write_json
from solo_mlvgm.settings import GeneratorSpec, LinearSpec


def prepare(cfg: DictConfig) -> tuple[list[PlannedRun], dict[str, str], dict[str, DictConfig]]:
    """(runs to do, skipped rows -> reason, run key -> pretraining config); every config is composed and
    checked here, so a bad one fails before any training."""
    rows = parse_rows(cfg)
    seeds = parse_seeds(cfg)
    _check_linear(cfg.linear)
    skipped = {row.name: reason for row in rows if (reason := row.skip_reason())}
    runs = [run for run in plan_runs(cfg, rows, seeds) if run.row.name not in skipped]
    configs = {run.key: compose_run_config(base_config_name(cfg, run.method), run.overrides) for run in runs}
    _dry_build_rows(runs, configs, exported=False)
    for run in runs:  # rows with an export: their settings now, their data source once the export exists
        if run.row.export:
            check_settings(configs[run.key])
    return runs, skipped, configs


def _check_linear(linear: DictConfig) -> None:
    for key in ("epochs", "batch_size"):
        if int(linear.probe[key]) <= 0:
            raise ConfigError(f"linear.probe.{key} must be > 0, got {linear.probe[key]}")
    if linear.data.source not in ("generator", "image_folder"):
        raise ConfigError(f"linear.data.source must be generator or image_folder, got '{linear.data.source}'")
    if linear.data.source == "image_folder":
        for role in ("train_path", "val_path"):
            path = linear.data.get(role)
            if not path or not Path(path).is_dir():
                raise ConfigError(f"linear.data.{role} '{path}' is not a folder of class subfolders")
        if linear.data.get("resolution") is None:
            raise ConfigError(
                "linear.data.source=image_folder needs linear.data.resolution=<px> in a comparison "
                "(one evaluation size for every run)"
            )


def _dry_build_rows(runs: list[PlannedRun], configs: dict[str, DictConfig], exported: bool) -> None:
    """Dry-build one run per (row, method) of the rows with (or without) a dataset export."""
    seen: set[tuple[str, str]] = set()
    for run in runs:
        if bool(run.row.export) == exported and (run.row.name, run.method) not in seen:
            seen.add((run.row.name, run.method))
            _dry_build(configs[run.key])


def _dry_build(run_cfg: DictConfig) -> None:
    """Build method, data source and trainer of a run without training (all of its checks run)."""
    with tempfile.TemporaryDirectory() as tmp:
        build_pretraining(run_cfg, Path(tmp))


def _export(row: Row, run_cfg: DictConfig) -> None:
    """Write the row's finite dataset (reused when an identical complete export is there)."""
    path = run_cfg.data.get("train_path")
    if not path:
        raise ConfigError(f"rows.{row.name}.export needs data.train_path in the row's overrides")
    generator = GeneratorSpec.from_config(run_cfg.generator).build()
    export_image_folder(generator, path, row.export, seed=0)
    print(f"[{row.name}] finite dataset: {row.export} images in {path}")


class Evaluator:
    """Linear evaluation with labelled splits computed once per evaluation source and reused by every run.
    ``digest``: a hash of the ``linear`` settings, stored with every figure it measures."""

    def __init__(self, linear: LinearSpec, digest: str) -> None:
        self.linear, self.digest = linear, digest
        self._splits: dict[str, tuple] = {}

    def splits(self, run_cfg: DictConfig) -> tuple:
        source = self.linear.source
        key = source if source == "image_folder" else OmegaConf.to_yaml(run_cfg.generator)
        if key not in self._splits:
            self._splits[key] = labelled_splits(self.linear, run_cfg)
        return self._splits[key]

    def evaluate(self, backbone: torch.nn.Module, run_cfg: DictConfig, seed: int) -> dict[str, float]:
        torch.manual_seed(seed)
        p = self.linear.probe
        return probe_backbone(
            backbone,
            self.splits(run_cfg),
            epochs=p.epochs,
            lr=p.lr,
            batch_size=p.batch_size,
            weight_decay=p.weight_decay,
            seed=seed,
        )


# pretrain.json's collapse signals and the run-config keys of the thresholds that judge them
JUDGED_SIGNALS = {"collapse": "collapse_threshold", "feature_rank": "feature_rank_threshold"}
_DEFAULT_THRESHOLDS = {
    "collapse_threshold": DEFAULT_THRESHOLD,
    "feature_rank_threshold": DEFAULT_RANK_THRESHOLD,
}


def _digest(container: Any) -> str:
    return hashlib.sha1(json.dumps(container, sort_keys=True, default=str).encode()).hexdigest()


def config_digest(run_cfg: DictConfig) -> str:
    """A hash of what a run's training depends on: a stored result counts only for the config that made
    it. The collapse thresholds are left out (they judge the finished run; ``judged_collapsed``)."""
    container = OmegaConf.to_container(run_cfg, resolve=False)
    assert isinstance(container, dict)
    return _digest({k: v for k, v in container.items() if k not in JUDGED_SIGNALS.values()})


def probe_digest(linear: DictConfig) -> str:
    """A hash of the linear-evaluation settings: a stored figure counts only for the probe that made it."""
    return _digest(OmegaConf.to_container(linear, resolve=True))


def _needed_files(row: Row) -> list[Path]:
    files: list[Path] = []
    for need in sorted(row.needs):
        path = Path(need)
        files += sorted(f for f in path.rglob("*") if f.is_file()) if path.is_dir() else [path]
    return files


def inputs_digest(row: Row) -> str | None:
    """A hash of the contents of the files a row reads (its walkers), or None for a row that reads none."""
    if not row.needs:
        return None
    h = hashlib.sha1()
    for f in _needed_files(row):
        h.update(str(f).encode())
        h.update(f.read_bytes())
    return h.hexdigest()


def judged_collapsed(record: dict[str, Any], run_cfg: DictConfig) -> bool:
    """Whether either collapse signal of a run's ``pretrain.json`` ended below the run config's threshold
    (the monitor's own rule: its final value under the threshold)."""
    for signal, key in JUDGED_SIGNALS.items():
        final = record.get(signal, {}).get("final")
        if final is not None and final < float(run_cfg.get(key, _DEFAULT_THRESHOLDS[key])):
            return True
    return False


def stored_result(run: PlannedRun, run_cfg: DictConfig, say: bool = True) -> dict[str, Any] | None:
    """The run's ``result.json`` if it was trained with ``run_cfg``, its ``collapsed`` judged (and stored)
    against ``run_cfg``'s thresholds; None if missing or made by another config (e.g. a method whose
    recipe changed since), which is then trained again (said when ``say``)."""
    if not run.finished:
        return None
    path = run.run_dir / RESULT_FILE
    result = json.loads(path.read_text())
    record_path = run.run_dir / "pretrain.json"
    record = json.loads(record_path.read_text()) if record_path.is_file() else {}
    digest, stored = config_digest(run_cfg), result.get("config_digest")
    if stored != digest and stored != _whole_config_digest(run_cfg, record):
        if say:
            print(f"note: {run.key} was trained with another config: training it again")
        return None
    backend = resolve_backend(str(run_cfg.get("backend", "auto")), str(run_cfg.method)).name
    if record.get("backend", backend) != backend:
        if say:
            print(
                f"note: {run.key} was trained by the {record['backend']} backend, now {backend}: training it again"
            )
        return None
    current: dict[str, Any] = {"config_digest": digest}
    inputs = inputs_digest(run.row)
    if inputs is not None:
        stored_inputs = result.get("inputs_digest")
        written = path.stat().st_mtime
        changed = (
            stored_inputs != inputs
            if stored_inputs is not None  # results stored before the digest was: by the files' times
            else any(f.stat().st_mtime > written for f in _needed_files(run.row))
        )
        if changed:
            if say:
                print(f"note: {run.key} read other versions of {', '.join(run.row.needs)}: training it again")
            return None
        current["inputs_digest"] = inputs
    if record:
        current["collapsed"] = judged_collapsed(record, run_cfg)
    if any(result.get(k) != v for k, v in current.items()):
        result.update(current)
        write_json(path, result)
    return result


def _whole_config_digest(run_cfg: DictConfig, record: dict[str, Any]) -> str:
    """The digest results were stored with when it hashed the whole config, thresholds included: with the
    thresholds that run was judged by (its ``pretrain.json``), so a later change of them still finds it."""
    container = OmegaConf.to_container(run_cfg, resolve=False)
    assert isinstance(container, dict)
    for signal, key in JUDGED_SIGNALS.items():
        if key in container and record.get(signal, {}).get("threshold") is not None:
            container[key] = record[signal]["threshold"]
    return _digest(container)


def train_and_evaluate(run: PlannedRun, run_cfg: DictConfig, evaluator: Evaluator) -> dict[str, Any]:
    """Pretrain one run into its folder, probe its backbone, write ``result.json`` last."""
    if run.run_dir.exists():
        shutil.rmtree(run.run_dir)  # an interrupted or forced run starts from an empty folder
    start = time.perf_counter()
    run_pretraining(run_cfg, run.run_dir)
    pretrain_seconds = time.perf_counter() - start
    record = json.loads((run.run_dir / "pretrain.json").read_text())
    result = {
        "row": run.row.name,
        "label": run.row.label,
        "method": run.method,
        "seed": run.seed,
        **probe_run(run, run_cfg, evaluator),
        "steps": record["steps"],
        "collapsed": judged_collapsed(record, run_cfg),
        "config_digest": config_digest(run_cfg),
        "inputs_digest": inputs_digest(run.row),
        "pretrain_seconds": pretrain_seconds,
        "run_dir": str(run.run_dir),
    }
    write_json(run.run_dir / RESULT_FILE, result)
    return result


def probe_run(run: PlannedRun, run_cfg: DictConfig, evaluator: Evaluator) -> dict[str, Any]:
    """The scores of a run's ``backbone.pt`` (either backend's), with the probe's settings digest and time."""
    backbone, _ = rebuild_backbone(load_backbone_file(run.run_dir), weights=True)
    start = time.perf_counter()
    scores = evaluator.evaluate(backbone, run_cfg, run.seed)
    return {**scores, "probe_digest": evaluator.digest, "probe_seconds": time.perf_counter() - start}


def evaluate_random_backbone(
    run_cfg: DictConfig, payload: dict[str, Any], seed: int, folder: Path, evaluator: Evaluator, force: bool
) -> dict[str, Any]:
    """The floor: a randomly initialised backbone of the same architecture as a run's ``backbone.pt``
    (``payload``: solo-learn's or ours), probed the same way."""
    path = folder / RESULT_FILE
    architecture = {k: payload.get(k) for k in ("backbone", "small_image_stem", "solo_learn")}
    if path.is_file() and not force:
        stored = json.loads(path.read_text())
        if stored.get("probe_digest") == evaluator.digest and stored.get("architecture") == architecture:
            return stored
        print(f"note: the random-backbone floor of seed {seed} was probed otherwise: probing it again")
    torch.manual_seed(seed)
    backbone, _ = rebuild_backbone(payload, weights=False)
    start = time.perf_counter()
    scores = evaluator.evaluate(backbone, run_cfg, seed)
    result = {
        "row": FLOOR_ROW,
        "label": "random backbone (floor)",
        "method": "none",
        "seed": seed,
        **scores,
        "steps": 0,
        "pretrain_seconds": 0.0,
        "probe_seconds": time.perf_counter() - start,
        "run_dir": str(folder),
        "probe_digest": evaluator.digest,
        "architecture": architecture,
    }
    write_json(path, result)
    return result


def run_comparison(cfg: DictConfig) -> dict[str, Any]:
    """The whole comparison; returns the summary written to ``<out>/results.json``."""
    wall_start = time.perf_counter()
    runs, skipped, configs = prepare(cfg)
    if not runs:
        raise ConfigError(f"no row can run: {'; '.join(f'{k}: {v}' for k, v in skipped.items())}")
    evaluator = Evaluator(LinearSpec.from_config(cfg.linear), probe_digest(cfg.linear))  # checked before work
    force = bool(cfg.force)
    for name, reason in skipped.items():
        print(f"skipping row '{name}': {reason}")
    exported: set[str] = set()
    for run in runs:
        if run.row.export and run.row.name not in exported:
            _export(run.row, configs[run.key])
            exported.add(run.row.name)
    _dry_build_rows(runs, configs, exported=True)
    stored = {run.key: None if force else stored_result(run, configs[run.key]) for run in runs}
    n_todo = sum(result is None for result in stored.values())
    print(f"comparison '{cfg.name}': {len(runs)} runs, {len(runs) - n_todo} finished, {n_todo} to train")

    results, trained = [], 0
    for run in runs:
        done = stored[run.key]
        if done is None and not force:  # finished meanwhile by another invocation on the same ``out``
            done = stored_result(run, configs[run.key], say=False)
        if done is not None and done.get("probe_digest") != evaluator.digest:
            print(f"note: {run.key} was probed with other linear settings: probing its backbone again")
            done = {**done, **probe_run(run, configs[run.key], evaluator)}
            write_json(run.run_dir / RESULT_FILE, done)
        if done is not None:
            results.append(done)
            continue
        trained += 1
        print(f"[{trained}/{n_todo}] {run.key}")
        r = train_and_evaluate(run, configs[run.key], evaluator)
        print(f"[{run.key}] top-1 {r['top1']:.2f}%  top-5 {r['top5']:.2f}%  ({r['pretrain_seconds']:.0f} s)")
        results.append(r)
    out = Path(cfg.out)
    if cfg.get("random_backbone", True):
        reference_cfg, payload = configs[runs[0].key], load_backbone_file(runs[0].run_dir)
        for seed in sorted({run.seed for run in runs}):
            folder = out / "runs" / FLOOR_ROW / f"seed{seed}"
            results.append(evaluate_random_backbone(reference_cfg, payload, seed, folder, evaluator, force))
    summary = write_report(
        out, cfg, results, skipped, wall_seconds=time.perf_counter() - wall_start, trained=trained
    )
    return summary
