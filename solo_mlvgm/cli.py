"""Entry-point glue: user errors become one line on stderr and exit code 2, before any work starts."""

from __future__ import annotations

import contextlib
import os
import shutil
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from hydra.core.hydra_config import HydraConfig
from hydra.experimental.callback import Callback
from omegaconf import DictConfig
from omegaconf.errors import OmegaConfBaseException

from solo_mlvgm.errors import ConfigError
from solo_mlvgm.runs import STATUS_FILE, write_status

T = TypeVar("T")
RUN_DIR_ENV = "SOLO_MLVGM_RUN_DIR"  # the run folder rank 0 chose, for the ranks it starts
_FOLDERS_HYDRA_WILL_MAKE: list[Path] = []  # the run folder and its missing parents, deepest first


class NoteMissingRunFolders(Callback):
    """Hydra makes the run folder, parents included, before the task runs. Noting just before which of
    them do not exist yet lets a refused run remove exactly those, and never a folder the user had.
    (Named in the run configs' ``hydra.callbacks``.)"""

    def on_run_start(self, config: DictConfig, **kwargs: Any) -> None:
        try:
            folder = Path(str(config.hydra.run.dir)).absolute()
        except OmegaConfBaseException:  # e.g. a ${hydra:...} that resolves only once the job starts
            folder = Path.cwd()
        missing = []
        while not folder.exists():
            missing.append(folder)
            folder = folder.parent
        _FOLDERS_HYDRA_WILL_MAKE[:] = missing


def run_or_exit(fn: Callable[[], T]) -> T:
    try:
        return fn()
    except (ConfigError, OmegaConfBaseException) as err:
        message = str(err).splitlines()[0] if str(err) else type(err).__name__
        print(f"error: {message}", file=sys.stderr)
        raise SystemExit(2) from None


def run_in_output_dir(fn: Callable[[DictConfig, Path], T], cfg: DictConfig) -> T:
    """``fn(cfg, run_dir)`` in the hydra app's output folder (the run folder), user errors as one line.

    Hydra makes the folder (its ``.hydra`` record and the job log) before ``fn`` runs; a run refused with
    a user error leaves no folder behind when that is all it holds. Otherwise the folder's ``status.json``
    says how the run ended: ``running`` while it runs (and after a kill), then ``finished``, ``failed`` or
    ``interrupted``; only a finished run is ever ``latest``."""
    hydra = HydraConfig.get()
    run_dir = Path(hydra.runtime.output_dir)
    made: list[Path] = []  # folders made here, removed again (when empty) after a refused run
    if run_dir.resolve() == Path.cwd().resolve():
        # solo-learn's config files switch hydra's folders off (hydra.run.dir: .): a run still gets its
        # own folder, and the working directory is never written into or removed
        chosen = os.environ.get(RUN_DIR_ENV)
        if chosen and "LOCAL_RANK" in os.environ:  # a DDP rank Lightning started: rank 0's folder
            run_dir = Path(chosen)
        else:
            run_dir = _new_run_dir(Path("runs") / str(cfg.get("name", "run")))
            made = [p for p in (run_dir.parent.parent, run_dir.parent) if not p.exists()]
            run_dir.mkdir(parents=True)
            os.environ[RUN_DIR_ENV] = str(run_dir.resolve())  # inherited by the ranks Lightning starts
    own = {".hydra", f"{hydra.job.name}.log", STATUS_FILE}
    write_status(run_dir, "running")
    try:
        result = run_or_exit(lambda: fn(cfg, run_dir))
    except SystemExit as err:
        if err.code == 2:  # a user error, refused before any work
            if run_dir.is_dir() and {p.name for p in run_dir.iterdir()} <= own:
                shutil.rmtree(run_dir, ignore_errors=True)
            for folder in [*_FOLDERS_HYDRA_WILL_MAKE, *reversed(made)]:
                with contextlib.suppress(OSError):
                    folder.rmdir()  # only when empty
        else:  # Lightning turns Ctrl-C during training into exit(1) after a graceful shutdown
            write_status(run_dir, "interrupted", f"exit code {err.code}")
        raise
    except KeyboardInterrupt:
        write_status(run_dir, "interrupted")
        raise
    except BaseException as err:
        write_status(run_dir, "failed", f"{type(err).__name__}: {err}".splitlines()[0])
        raise
    write_status(run_dir, "finished")
    return result


def _new_run_dir(parent: Path) -> Path:
    """``parent/<start time>``, with a suffix when another run started in the same second."""
    stamp = time.strftime("%Y%m%d-%H%M%S")
    run_dir, n = parent / stamp, 1
    while run_dir.exists():
        run_dir, n = parent / f"{stamp}-{n}", n + 1
    return run_dir
