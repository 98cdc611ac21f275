"""ImageFolder export and the real-data baseline through the torch DataLoader."""

from __future__ import annotations

import json

import pytest
import torch

from solo_mlvgm.data import ImageFolderData, export_image_folder, render_labelled
from solo_mlvgm.entry.pretrain import build_pretraining, input_size_of_run
from solo_mlvgm.errors import ConfigError

from .conftest import TINY, compose_cfg


def test_export_writes_labelled_class_folders_and_a_manifest(tmp_path, world):
    out = export_image_folder(world, tmp_path / "toy", n=40, seed=1)
    files = sorted(out.glob("class_*/*.png"))
    assert len(files) == 40
    _, labels = render_labelled(world, 40, 1, "export")
    for f in files:
        assert f.parent.name == f"class_{labels[int(f.stem)]:02d}"
    assert json.loads((out / "manifest.json").read_text())["n"] == 40


def test_complete_export_is_reused_and_truncated_one_redone(tmp_path, world):
    out = export_image_folder(world, tmp_path / "toy", n=20)
    first = sorted(out.glob("class_*/*.png"))
    stamp = first[0].stat().st_mtime_ns
    export_image_folder(world, out, n=20)
    assert first[0].stat().st_mtime_ns == stamp  # reused, not rewritten
    (out / "manifest.json").unlink()  # as if interrupted before the end
    first[-1].unlink()
    export_image_folder(world, out, n=20)
    assert len(list(out.glob("class_*/*.png"))) == 20
    export_image_folder(world, out, n=10)  # a different request replaces the export whole
    assert len(list(out.glob("class_*/*.png"))) == 10


def test_export_refuses_a_folder_with_foreign_files(tmp_path, world):
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(ConfigError, match="not an export"):
        export_image_folder(world, tmp_path, n=4)
    assert (tmp_path / "notes.txt").read_text() == "mine"


def test_image_folder_batches_match_the_continuous_format(tmp_path, world):
    out = export_image_folder(world, tmp_path / "toy", n=32)
    dm = ImageFolderData(out, resolution=32, batch_size=8, pixel="simclr", num_workers=0)
    raw = next(iter(dm.train_dataloader()))
    indexes, views, targets = dm.on_after_batch_transfer(raw, 0)
    assert indexes.dtype == torch.long and targets.dtype == torch.long and indexes.shape == (8,)
    assert len(views) == 2 and all(v.shape == (8, 3, 32, 32) and v.dtype == torch.float32 for v in views)
    assert not torch.equal(views[0], views[1])  # two independent augmentations
    assert dm.num_classes == len(list(out.glob("class_*")))


def test_training_on_an_image_folder(tmp_path, world):
    out = export_image_folder(world, tmp_path / "toy", n=48)
    tiny = [o for o in TINY if not o.startswith("data.")]  # epoch_size is a Continuous Sampling key
    cfg = compose_cfg(
        "mlvgm_simclr",
        [
            *tiny,
            "data=image_folder",
            f"data.train_path={out}",
            "data.num_workers=0",
            "views=real",
            "data.crop_size=24",
        ],
    )
    job = build_pretraining(cfg, tmp_path / "run")
    assert job.generator is None and job.num_classes == len(list(out.glob("class_*")))
    _, views, _ = job.data.on_after_batch_transfer(next(iter(job.data.train_dataloader())), 0)
    assert all(v.shape[-2:] == (24, 24) for v in views)  # data.crop_size is honoured, not dropped
    assert input_size_of_run(job) == 24  # recorded in backbone.pt for linear evaluation on folders
    job.trainer.fit(job.method, datamodule=job.data)
    assert job.trainer.global_step == 3


def test_split_streams_are_disjoint_and_fixed(world):
    train, _ = render_labelled(world, 16, seed=0, split="train")
    test, _ = render_labelled(world, 16, seed=0, split="test")
    again, _ = render_labelled(world, 16, seed=0, split="train")
    assert torch.equal(train, again) and not torch.equal(train, test)
