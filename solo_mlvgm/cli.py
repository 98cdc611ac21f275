"""Entry-point glue: user errors become one line on stderr and exit code 2, before any work starts."""

from __future__ import annotations

import contextlib
import io
import os
import shutil
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from hydra._internal.utils import get_args_parser  # the parser hydra.main uses (hydra-core 1.3)
from hydra.core.hydra_config import HydraConfig
from hydra.experimental.callback import Callback
from omegaconf import DictConfig
from omegaconf.errors import OmegaConfBaseException

from solo_mlvgm.errors import ConfigError
from solo_mlvgm.runs import STATUS_FILE, write_status

T = TypeVar("T")
RUN_DIR_ENV = "SOLO_MLVGM_RUN_DIR"  # the run folder rank 0 chose, for the ranks it starts
# Named on every entry point's command line, so that it applies whatever config file runs (solo-learn's too).
RUN_FOLDER_CALLBACK = "++hydra.callbacks.solo_mlvgm_run_folder._target_=solo_mlvgm.cli.RecordRunFolder"


@dataclass
class _RunFolderBefore:
    """The file system around a run folder just before hydra makes or reuses it."""

    folder: Path | None = None
    missing: list[Path] = field(default_factory=list)  # the folder and parents hydra makes, deepest first
    saved: dict[Path, bytes | None] = field(default_factory=dict)  # what hydra or the run overwrite there


_before = _RunFolderBefore()


class RecordRunFolder(Callback):
    """Hydra makes the run folder (parents included) and writes its record there before the task runs.
    Recording just before which folders are missing, and in an existing folder (``resume=``, one the user
    named, or the working directory) the files about to be overwritten, lets a refused run leave
    everything as it was. (Multirun jobs are not recorded: there only hydra's own files are removed.)"""

    def on_run_start(self, config: DictConfig, **kwargs: Any) -> None:
        HydraConfig.instance().set_config(config)  # as hydra does next, so that ${hydra:...} resolves
        folder = Path(str(config.hydra.run.dir)).absolute()  # as hydra makes it: out/../x makes out/
        missing, parent = [], folder
        while not parent.exists():
            missing.append(parent)
            parent = parent.parent
        saved: dict[Path, bytes | None] = {}
        if not missing:
            record = [] if config.hydra.output_subdir is None else [folder / str(config.hydra.output_subdir)]
            files = [folder / STATUS_FILE, folder / f"{config.hydra.job.name}.log"]
            files += [d / f"{n}.yaml" for d in record for n in ("config", "hydra", "overrides")]
            saved = {f: f.read_bytes() if f.is_file() else None for f in files}
            missing = [d for d in record if not d.exists()]
        _before.folder, _before.missing, _before.saved = _absolute(folder), missing, saved


def record_run_folders() -> None:
    """Add ``RecordRunFolder`` to this process's hydra app (call before the app's ``main()``). The override
    goes right after the command line's own overrides, which argparse takes only as one run of words;
    not to ``--info`` (whose optional value would take it) nor ``--experimental-rerun``, which run no
    new job, nor to a command line hydra will refuse anyway."""
    argv = sys.argv[1:]
    args = _hydra_args(argv)
    if args is None or RUN_FOLDER_CALLBACK in argv or args.info is not None or args.experimental_rerun:
        return
    wanted = [*args.overrides, RUN_FOLDER_CALLBACK]
    n = len(args.overrides)
    # where the overrides end: each place argv holds them as one run of words (the end, when there are none)
    ends = (
        [i + n for i in range(len(argv) - n + 1) if argv[i : i + n] == args.overrides] if n else [len(argv)]
    )
    for at in ends:
        candidate = [*argv[:at], RUN_FOLDER_CALLBACK, *argv[at:]]
        parsed = _hydra_args(candidate)
        if parsed is not None and list(parsed.overrides) == wanted:  # the place argparse reads as intended
            sys.argv[1:] = candidate
            return


def _hydra_args(argv: list[str]) -> Any:
    """``argv`` as hydra.main's own parser reads it, quietly; None where it refuses it (or only prints)."""
    try:
        with contextlib.redirect_stderr(io.StringIO()), contextlib.redirect_stdout(io.StringIO()):
            return get_args_parser().parse_args(argv)
    except SystemExit:
        return None


def _absolute(path: str | Path) -> Path:
    """Absolute and normalised (``..`` removed, links kept), as hydra makes ``runtime.output_dir``."""
    return Path(os.path.abspath(path))


def _listing(folder: Path) -> set[str]:
    return {p.name for p in folder.iterdir()} if folder.is_dir() else set()


def _undo(run_dir: Path, made: list[Path], hydras: set[str]) -> None:
    """After a refused run: remove the folders made for it and put back the files it overwrote."""
    new = [*_before.missing, *made]
    here = _absolute(run_dir)
    if here in map(_absolute, new) or (here != _before.folder and _listing(here) <= hydras):  # not recorded
        shutil.rmtree(here, ignore_errors=True)
    for path, content in _before.saved.items():
        if content is None:
            path.unlink(missing_ok=True)
        else:
            path.write_bytes(content)
    for folder in new:
        with contextlib.suppress(OSError):
            folder.rmdir()  # only when empty (and never a "..")
    _before.folder, _before.missing, _before.saved = None, [], {}  # used once


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
    a user error leaves the file system as ``RecordRunFolder`` found it (``record_run_folders``). Otherwise the folder's ``status.json``
    says how the run ended: ``running`` while it runs (and after a kill), then ``finished``, ``failed`` or
    ``interrupted``; only a finished run is ever ``latest``."""
    hydra = HydraConfig.get()
    run_dir = Path(hydra.runtime.output_dir)
    made: list[Path] = []  # folders made here (absolute), removed again after a refused run
    if run_dir.resolve() == Path(hydra.runtime.cwd).resolve():
        # solo-learn's config files switch hydra's folders off (hydra.run.dir: .): a run still gets its
        # own folder, and the working directory is never written into or removed
        chosen = os.environ.get(RUN_DIR_ENV)
        if chosen and "LOCAL_RANK" in os.environ:  # a DDP rank Lightning started: rank 0's folder
            run_dir = Path(chosen)
        else:
            run_dir = _new_run_dir(Path("runs") / str(cfg.get("name", "run")))
            made = [_absolute(p) for p in (run_dir, run_dir.parent, run_dir.parent.parent) if not p.exists()]
            run_dir.mkdir(parents=True)
            os.environ[RUN_DIR_ENV] = str(run_dir.resolve())  # inherited by the ranks Lightning starts
    hydras = {".hydra", f"{hydra.job.name}.log", STATUS_FILE}
    present = _listing(run_dir) | hydras
    write_status(run_dir, "running")
    try:
        result = run_or_exit(lambda: fn(cfg, run_dir))
    except SystemExit as err:
        if err.code == 2 and _listing(run_dir) <= present:  # refused before any work: undo all of it
            _undo(run_dir, made, hydras)
        elif err.code == 2:  # a user error found after the run wrote something: keep what it wrote
            write_status(run_dir, "failed", "refused with a user error after the run started")
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
