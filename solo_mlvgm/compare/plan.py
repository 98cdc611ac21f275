"""The plan of a view comparison: one pretraining run per (row, method, seed), with its config and inputs.

A row is a view strategy (real data, synthetic, single-latent random, multi-level random, ...) written as
overrides of the method's pretraining config (``mlvgm_<method>``). Every run gets the same ``common``
overrides (backbone, batch size, default budget), then its method's ``method_overrides`` (e.g. a longer
budget for SimSiam and BYOL), so the rows of one method differ only in what the row names. A row whose inputs
are missing (e.g. walkers not trained yet) is skipped with the reason and the command that makes them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from hydra import compose
from hydra.errors import HydraException
from omegaconf import DictConfig, ListConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from solo_mlvgm.errors import ConfigError
from solo_mlvgm.methods import PRETRAINING_METHODS

ROW_KEYS = {"label", "overrides", "methods", "needs", "hint", "export"}
RESULT_FILE = "result.json"
FLOOR_ROW = "random_backbone"  # the results of a randomly initialised backbone (the floor)


@dataclass(frozen=True)
class Row:
    name: str
    label: str
    overrides: tuple[str, ...]
    methods: tuple[str, ...]
    needs: tuple[str, ...] = ()
    hint: str = ""
    export: int = 0  # > 0: export this many generator images to data.train_path before training

    def missing(self) -> list[str]:
        """The inputs of this row that do not exist."""
        return [path for path in self.needs if not Path(path).exists()]

    def skip_reason(self) -> str | None:
        missing = self.missing()
        if not missing:
            return None
        reason = f"missing {', '.join(missing)}"
        return f"{reason} (make it with: {self.hint})" if self.hint else reason


@dataclass
class PlannedRun:
    row: Row
    method: str
    seed: int
    run_dir: Path
    overrides: list[str] = field(default_factory=list)

    @property
    def key(self) -> str:
        return f"{self.row.name}/{self.method}/seed{self.seed}"

    @property
    def finished(self) -> bool:
        return (self.run_dir / RESULT_FILE).is_file()


def parse_rows(cfg: DictConfig) -> list[Row]:
    """The rows of ``cfg.rows`` (a mapping name -> row), in config order, checked."""
    methods = _methods(cfg.methods, "methods")
    if not methods:
        raise ConfigError("methods is empty; e.g. methods=[simclr,simsiam]")
    if not cfg.get("rows"):
        raise ConfigError("the comparison has no rows")
    rows = []
    for name, spec in cfg.rows.items():
        if spec is None:  # a row removed from the command line: rows.<name>=null
            continue
        extra = set(spec) - ROW_KEYS
        if extra:
            raise ConfigError(f"rows.{name} has unknown keys {sorted(extra)}; allowed: {sorted(ROW_KEYS)}")
        row_methods = _methods(spec.get("methods"), f"rows.{name}.methods") or methods
        export = int(spec.get("export") or 0)
        if export < 0:
            raise ConfigError(f"rows.{name}.export must be >= 0, got {export}")
        rows.append(
            Row(
                name=str(name),
                label=str(spec.get("label") or name),
                overrides=tuple(str(o) for o in spec.get("overrides") or ()),
                methods=tuple(row_methods),
                needs=tuple(str(p) for p in spec.get("needs") or ()),
                hint=str(spec.get("hint") or ""),
                export=export,
            )
        )
    if not rows:
        raise ConfigError("every row is disabled")
    return rows


def _methods(names: Sequence[str] | None, where: str) -> list[str]:
    """Method names of a config list, each checked against the pretraining methods."""
    if names is not None and not isinstance(names, list | tuple | ListConfig):
        raise ConfigError(f"{where} must be a list of method names, e.g. [simclr], got {names!r}")
    out = [str(m) for m in names or ()]
    for m in out:
        if m not in PRETRAINING_METHODS:
            raise ConfigError(f"unknown method '{m}' in {where}; known: {', '.join(PRETRAINING_METHODS)}")
    return out


def parse_seeds(cfg: DictConfig) -> list[int]:
    given = cfg.seeds
    is_list = isinstance(given, ListConfig | list)
    seeds = [s for s in given if isinstance(s, int) and s >= 0] if is_list else []
    if not seeds or len(seeds) != len(given) or len(set(seeds)) != len(seeds):
        shown = list(given) if is_list else given
        raise ConfigError(
            f"seeds must be a non-empty list of distinct integers >= 0, e.g. [0,1,2], got {shown!r}"
        )
    return seeds


def plan_runs(cfg: DictConfig, rows: Sequence[Row], seeds: Sequence[int]) -> list[PlannedRun]:
    """Every (row, method, seed) run with its overrides and folder ``<out>/runs/<row>/<method>/seed<s>``.
    Each run composes ``base_configs.<method>`` with ``common``, ``method_overrides.<method>``, the row's
    overrides and its seed, in this order."""
    out = Path(cfg.out)
    common = [str(o) for o in cfg.get("common") or ()]
    per_method = cfg.get("method_overrides") or {}
    return [
        PlannedRun(
            row=row,
            method=method,
            seed=seed,
            run_dir=out / "runs" / row.name / method / f"seed{seed}",
            overrides=[
                *common,
                *(str(o) for o in per_method.get(method) or ()),
                *row.overrides,
                f"seed={seed}",
                f"name={row.name}",
            ],
        )
        for row in rows
        for method in row.methods
        for seed in seeds
    ]


def compose_run_config(config_name: str, overrides: Sequence[str]) -> DictConfig:
    """The pretraining config of one run, composed by hydra as ``main_pretrain.py`` would (hydra must be
    initialised on the configs folder: by the entry point, or ``initialize_config_dir`` in tests)."""
    try:
        cfg = compose(config_name=config_name, overrides=list(overrides))
        OmegaConf.resolve(cfg)
    except (HydraException, OmegaConfBaseException) as err:
        first = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise ConfigError(f"{config_name} with {' '.join(overrides)}: {first}") from None
    return cfg


def base_config_name(cfg: DictConfig, method: str) -> str:
    """The pretraining config a method's runs start from (``base_configs.<method>``, e.g. mlvgm_simclr)."""
    names = cfg.get("base_configs") or {}
    if not names.get(method):
        raise ConfigError(
            f"base_configs has no entry for method '{method}' (e.g. base_configs.{method}=mlvgm_{method})"
        )
    return str(names[method])
