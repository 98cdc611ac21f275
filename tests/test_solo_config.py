"""A solo-learn pretrain config file with ``data.format=mlvgm``: every key honoured, reported as not
applicable or not read, or refused in one line before any work (``backends/solo_config.py``).

These tests need no solo-learn: the config is a copy of the shape of solo-learn's own
``scripts/pretrain/cifar/simsiam.yaml`` and the method's source is a stand-in text. Running solo-learn's
files for real is in ``test_solo_backend.py`` (skipped without solo-learn)."""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

import pytest
from omegaconf import OmegaConf

from solo_mlvgm.backends.solo_config import GIVEN_FILE, find_resumable, is_solo_file, parse_solo_file
from solo_mlvgm.errors import ConfigError

from .test_crops import ASYMMETRIC

SIMSIAM_FILE = {  # the keys of solo-learn's cifar simsiam.yaml after composition (symmetric_weak, private)
    "name": "simsiam-cifar10",
    "method": "simsiam",
    "backbone": {"name": "resnet18"},
    "method_kwargs": {
        "proj_hidden_dim": 2048,
        "proj_output_dim": 2048,
        "pred_hidden_dim": 512,
        "temperature": 0.2,
    },
    "data": {
        "dataset": "cifar10",
        "train_path": "./datasets",
        "val_path": "datasets/imagenet100/val",
        "format": "mlvgm",
        "num_workers": 4,
    },
    "optimizer": {"name": "sgd", "batch_size": 256, "lr": 0.5, "classifier_lr": 0.1, "weight_decay": 1e-5},
    "scheduler": {"name": "warmup_cosine"},
    "checkpoint": {"enabled": True, "dir": "trained_models", "frequency": 1},
    "auto_resume": {"enabled": True},
    "max_epochs": 1000,
    "devices": [0],
    "sync_batchnorm": True,
    "accelerator": "gpu",
    "strategy": "ddp",
    "precision": "16-mixed",
    "augmentations": [ASYMMETRIC],
    "wandb": {"enabled": False, "entity": None, "project": "solo-learn"},
    "generator": {"name": "toyworld", "checkpoint": None},
    "views": {"name": "ml", "pixel": "no_color", "perturb": {"pose": {"std": 0.75}}},
}
# what solo-learn's SimSiam classes read, as their source text would show it
SOURCES = {
    "SimSiam": "cfg.method_kwargs.proj_hidden_dim cfg.method_kwargs.proj_output_dim "
    "cfg.method_kwargs.pred_hidden_dim"
}


def _cfg(**changes):
    cfg = OmegaConf.create(SIMSIAM_FILE)
    for key, value in changes.items():
        OmegaConf.update(cfg, key.replace("__", "."), value, force_add=True)
    return cfg


def _parse(cfg, root: Path = Path("/nonexistent")):
    return parse_solo_file(cfg, root, SOURCES)


def test_every_key_is_honoured_not_applicable_or_not_read():
    run = _parse(_cfg())
    keys = run.keys
    assert keys.not_read == {"method_kwargs.temperature": "solo-learn's simsiam never reads it"}
    assert set(keys.not_applicable) == {"data.train_path", "data.num_workers", "views.pixel"}
    for key in (
        "optimizer.lr",
        "augmentations",
        "sync_batchnorm",
        "checkpoint.dir",
        "auto_resume.enabled",
        "data.dataset",
        "generator.name",
        "views.perturb.pose.std",
        "method_kwargs.pred_hidden_dim",
    ):
        assert key in keys.honoured, key
    every = set(keys.honoured) | set(keys.not_applicable) | set(keys.not_read)
    assert len(every) == len(keys.honoured) + len(keys.not_applicable) + len(keys.not_read)  # one kind each
    assert run.solo_cfg.data.format == "image_folder" and "generator" not in run.solo_cfg


def test_a_key_nobody_reads_is_reported_not_dropped():
    keys = _parse(_cfg(augmentations_cfg="defaults/weak.yaml", max_epoch=3)).keys
    for key in ("augmentations_cfg", "max_epoch"):
        assert keys.not_read[key] == "neither solo-learn nor Lightning's Trainer reads it (a typo?)"
    assert (
        "key not read: max_epoch (neither solo-learn nor Lightning's Trainer reads it (a typo?))"
        in keys.lines()
    )


def test_a_misspelt_key_in_solo_learns_own_blocks_is_reported_not_dropped():
    keys = _parse(_cfg(checkpoint__frequncy=5, auto_resume__max_hour=2, checkpoint__keep_prev=True)).keys
    assert keys.not_read["checkpoint.frequncy"] == (
        "solo-learn reads only enabled, dir, frequency, keep_prev of checkpoint (a typo?)"
    )
    assert "auto_resume.max_hour" in keys.not_read
    assert "checkpoint.keep_prev" in keys.honoured and "checkpoint.dir" in keys.honoured


@pytest.mark.parametrize("block", ["knn_eval", "auto_umap"])
def test_an_empty_block_is_read_without_a_traceback(block):
    assert block in _parse(_cfg(**{block: {}})).keys.honoured


def test_the_file_settings_reach_the_run_spec():
    run = _parse(_cfg(seed=7, accumulate_grad_batches=4, gradient_clip_val=1.0))
    spec = run.spec
    assert spec.backend == "solo" and spec.method == "simsiam" and spec.seed == 7
    assert spec.data.epoch_size == 50_000  # cifar10's training set: an epoch means what it means in solo
    assert spec.normalization == ((0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616))
    assert [(g.crop_size, g.num_crops) for g in spec.crops] == [(32, 2)]
    assert spec.trainer.extra == {
        "accumulate_grad_batches": 4,
        "gradient_clip_val": 1.0,
        "sync_batchnorm": True,
    }
    assert spec.trainer.strategy == "ddp" and spec.trainer.precision == "16-mixed"
    assert run.checkpoint == {"enabled": True, "dir": "trained_models", "frequency": 1, "keep_prev": False}
    assert _parse(_cfg(data__epoch_size=640)).spec.data.epoch_size == 640
    assert _parse(_cfg()).spec.seed == 5  # solo-learn's default seed
    assert not _parse(_cfg()).spec.data.repeat_anchors
    assert _parse(_cfg(method="deepclusterv2")).spec.data.repeat_anchors  # per-index state across epochs


def test_a_val_path_means_a_rendered_validation_split():
    assert _parse(_cfg()).spec.data.val_size == 5000
    assert _parse(_cfg(data__val_size=64)).spec.data.val_size == 64
    assert _parse(_cfg(data__val_path=None)).spec.data.val_size == 0  # solo-learn: no path, no validation
    assert _parse(_cfg(data__no_labels=True)).spec.data.val_size == 0


def test_knn_needs_the_torchmetrics_solo_learn_was_written_for(monkeypatch):
    import torchmetrics

    monkeypatch.setattr(torchmetrics, "__version__", "1.9.0")
    with pytest.raises(ConfigError, match="knn_eval.enabled=True needs torchmetrics < 0.12 .* found 1.9.0"):
        _parse(_cfg(knn_eval={"enabled": True}))
    monkeypatch.setattr(torchmetrics, "__version__", "0.11.4")
    assert "knn_eval.enabled" in _parse(_cfg(knn_eval={"enabled": True})).keys.honoured


def test_our_own_configs_are_not_solo_files():
    assert is_solo_file(_cfg())
    assert not is_solo_file(OmegaConf.create({"data": {"source": "continuous"}, "views": {}}))


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"data__format": "image_folder"}, "this is a solo-learn config \\(data.format='image_folder'\\)"),
        (
            {"knn_eval": {"enabled": True}, "data__val_path": None},
            "knn_eval.enabled=True needs the labelled validation split",
        ),
        (
            {"auto_umap": {"enabled": True}, "data__val_path": None},
            "auto_umap.enabled=True needs the labelled validation split",
        ),
        ({"data__fraction": 0.5}, "data.fraction: a fraction of an endless stream has no meaning"),
        ({"logger": False}, "logger is set by solo_mlvgm runs"),
        ({"backend": "lightly"}, "a solo-learn config file trains solo-learn's methods"),
        ({"data__dataset": "custom"}, "data.dataset='custom' has no known size .* \\+data.epoch_size"),
        ({"method": "simclr", "augmentations": [{**ASYMMETRIC, "num_crops": 3}]}, "needs 2 large crops"),
        ({"augmentations": [{**ASYMMETRIC, "zoom": 1}]}, "augmentations\\[0\\] has unknown keys"),
        ({"resume_from_checkpoint": "/no/such.ckpt"}, "resume_from_checkpoint '/no/such.ckpt' is not a file"),
        ({"views__perturb__pose__std": -1}, "views.perturb.pose"),
    ],
)
def test_what_cannot_be_honoured_is_refused_in_one_line(changes, message):
    with pytest.raises(ConfigError, match=message) as err:
        _parse(_cfg(**changes))
    assert "\n" not in str(err.value)


def test_a_missing_generator_names_the_override_to_add():
    cfg = _cfg()
    del cfg["generator"]
    with pytest.raises(ConfigError, match="needs a generator: add \\+generator=toyworld"):
        _parse(cfg)


def test_wandb_without_the_package_is_refused(monkeypatch):
    monkeypatch.setitem(sys.modules, "wandb", None)
    with pytest.raises(ConfigError, match="wandb.enabled=True needs the wandb package"):
        _parse(_cfg(wandb__enabled=True))


def _run_folder(root: Path, name: str, status: str, given, age_hours: float = 0.0) -> Path:
    run = root / name
    (run / "checkpoints").mkdir(parents=True)
    last = run / "checkpoints" / "last.ckpt"
    last.write_bytes(b"checkpoint")
    (run / "status.json").write_text(json.dumps({"status": status}))
    OmegaConf.save(given, run / GIVEN_FILE)
    stamp = time.time() - age_hours * 3600
    os.utime(last, (stamp, stamp))
    return last


def test_auto_resume_continues_the_newest_run_of_the_same_config_when_it_did_not_finish(tmp_path):
    cfg = _cfg()
    _run_folder(tmp_path, "20260101-000000", "interrupted", cfg)
    newest = _run_folder(tmp_path, "20260102-000000", "running", cfg)  # killed: still "running"
    _run_folder(tmp_path, "20260104-000000", "failed", _cfg(optimizer__lr=0.1))  # another config
    assert find_resumable(tmp_path, cfg, max_hours=36) == newest
    run = _parse(cfg, tmp_path)
    assert run.auto_resumed == newest and run.spec.resume_from == newest
    assert _parse(_cfg(auto_resume={"enabled": False}), tmp_path).spec.resume_from is None
    assert find_resumable(tmp_path / "none", cfg, 36) is None
    # the resumed run finished: nothing is resumed again, not even the older interrupted ones
    _run_folder(tmp_path, "20260103-000000", "finished", cfg)
    assert find_resumable(tmp_path, cfg, max_hours=36) is None
    # a newer unfinished run older than max_hours: nothing either
    _run_folder(tmp_path, "20260105-000000", "interrupted", cfg, age_hours=48)
    assert find_resumable(tmp_path, cfg, max_hours=36) is None
