"""The entry-point glue in process: what a user error does to a run folder once the run has written to it."""

import json

import pytest
from hydra import compose, initialize_config_dir
from hydra.core.hydra_config import HydraConfig
from omegaconf import open_dict

from solo_mlvgm.cli import run_in_output_dir
from solo_mlvgm.errors import ConfigError

from .conftest import CONFIGS


@pytest.fixture
def hydra_run(tmp_path, monkeypatch):
    """A composed run config with hydra's run folder made, as hydra's app leaves it for the task."""
    monkeypatch.chdir(tmp_path)
    run = tmp_path / "run"
    with initialize_config_dir(config_dir=str(CONFIGS), version_base="1.3"):
        cfg = compose("mlvgm_simclr", overrides=[f"hydra.run.dir={run}"], return_hydra_config=True)
    with open_dict(cfg):
        cfg.hydra.runtime.output_dir = str(run)
    run.mkdir()
    HydraConfig.instance().set_config(cfg)
    yield cfg, run
    HydraConfig.instance().cfg = None


def test_a_user_error_after_the_run_wrote_something_keeps_it_as_failed(hydra_run):
    cfg, run = hydra_run

    def writes_then_refuses(_cfg, run_dir):
        (run_dir / "checkpoints").mkdir()
        raise ConfigError("found late")

    with pytest.raises(SystemExit) as exit_:
        run_in_output_dir(writes_then_refuses, cfg)
    assert exit_.value.code == 2
    assert (run / "checkpoints").is_dir()  # not removed as a refused run's folder would be
    assert json.loads((run / "status.json").read_text())["status"] == "failed"


def test_a_user_error_before_any_work_leaves_no_status(hydra_run):
    cfg, run = hydra_run

    def refuses(_cfg, _run_dir):
        raise ConfigError("bad setting")

    with pytest.raises(SystemExit):
        run_in_output_dir(refuses, cfg)
    assert not run.exists()  # a folder not recorded as made for the run, holding only hydra's and ours
