"""Continuous Sampling: batch format, reproducibility, rank separation, trainer integration."""

from __future__ import annotations

import lightning.pytorch as pl
import pytest
import torch

from solo_mlvgm.data import ContinuousSampling
from solo_mlvgm.generators import build_generator


def _dm(world, spec, **kw):
    return ContinuousSampling(
        world, spec, batch_size=kw.pop("batch_size", 8), epoch_size=kw.pop("epoch_size", 64), **kw
    )


def test_batch_matches_solo_learn_format(world, multilevel_spec):
    indexes, views, targets = _dm(world, multilevel_spec).render(0)
    assert indexes.dtype == torch.long and indexes.shape == (8,)
    assert isinstance(views, list) and len(views) == 2
    for v in views:
        assert v.dtype == torch.float32 and v.shape == (8, 3, world.resolution, world.resolution)
    assert targets.dtype == torch.long and targets.shape == (8,)
    assert targets.min() >= 0 and targets.max() < world.num_classes


def test_targets_are_minus_one_without_labels(multilevel_spec):
    world = build_generator("toyworld", factors=["pose", "texture"])
    _, _, targets = _dm(world, multilevel_spec).render(0)
    assert torch.equal(targets, torch.full((8,), -1))


def test_same_seed_gives_bit_identical_batches_and_steps_differ(world, multilevel_spec):
    a = _dm(world, multilevel_spec, seed=5)
    b = _dm(build_generator("toyworld"), multilevel_spec, seed=5)
    for step in (0, 7):
        ba, bb = a.render(step), b.render(step)
        assert torch.equal(ba[0], bb[0]) and torch.equal(ba[2], bb[2])
        assert all(torch.equal(x, y) for x, y in zip(ba[1], bb[1], strict=True))
    assert not torch.equal(a.render(0)[1][0], a.render(1)[1][0])
    assert not torch.equal(a.render(0)[1][0], _dm(world, multilevel_spec, seed=6).render(0)[1][0])


def test_simulated_ranks_never_draw_the_same_latents(world, multilevel_spec):
    ranks = [_dm(world, multilevel_spec, rank=r, world_size=2) for r in (0, 1)]
    bases = torch.cat([dm.draw(step).base for dm in ranks for step in range(4)])
    assert torch.unique(bases, dim=0).shape[0] == bases.shape[0]
    idx = torch.cat([dm.render(step)[0] for dm in ranks for step in range(4)])
    assert idx.unique().numel() == idx.numel()  # indexes unique across ranks and steps
    assert not torch.equal(ranks[0].render(0)[1][0], ranks[1].render(0)[1][0])


def test_draw_is_what_render_augments(world, multilevel_spec):
    dm = _dm(world, multilevel_spec)
    pair = dm.draw(3)
    assert torch.equal(pair.labels, dm.render(3)[2])
    assert torch.equal(pair.labels, world.labels(world.to_levels(pair.base)))


class _Recorder(pl.LightningModule):
    """Records the batch indexes it is trained on."""

    def __init__(self):
        super().__init__()
        self.w = torch.nn.Parameter(torch.zeros(1))
        self.seen: list[torch.Tensor] = []

    def training_step(self, batch, batch_idx):
        self.seen.append(batch[0].clone())
        assert batch[1][0].device == self.device  # rendered after the transfer
        return (self.w * batch[1][0].mean()).sum()

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1)


def _fit(dm, epochs, root=None, ckpt_path=None, max_steps=-1):
    module = _Recorder()
    trainer = pl.Trainer(
        max_epochs=epochs,
        max_steps=max_steps,
        accelerator="cpu",
        logger=False,
        enable_checkpointing=root is not None,
        default_root_dir=root,
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    trainer.fit(module, datamodule=dm, ckpt_path=ckpt_path)
    return module.seen, trainer


def test_epoch_length_and_fresh_batches_under_a_trainer(world, multilevel_spec):
    dm = _dm(world, multilevel_spec, epoch_size=32)
    seen, _ = _fit(dm, epochs=2)
    assert len(seen) == 2 * 4  # 32 images / batch 8 per epoch
    idx = torch.cat(seen)
    assert idx.unique().numel() == idx.numel()  # epoch 2 does not repeat epoch 1
    assert torch.equal(seen[5], dm.render(5)[0])  # batch k of the run is render(k)
    assert dm.generator.training is False and not any(p.requires_grad for p in dm.generator.parameters())


@pytest.mark.parametrize("stop_after", [4, 6])  # at an epoch boundary (4 steps per epoch) and mid-epoch
def test_resumed_run_sees_the_batches_of_the_uninterrupted_run(tmp_path, world, multilevel_spec, stop_after):
    full, _ = _fit(_dm(world, multilevel_spec, epoch_size=32), epochs=10, max_steps=12)
    _, first = _fit(
        _dm(world, multilevel_spec, epoch_size=32), epochs=10, root=tmp_path, max_steps=stop_after
    )
    ckpt = first.checkpoint_callback.best_model_path
    assert ckpt and first.global_step == stop_after
    resumed, later = _fit(
        _dm(world, multilevel_spec, epoch_size=32), epochs=10, root=tmp_path, ckpt_path=ckpt, max_steps=12
    )
    assert len(resumed) == 12 - stop_after
    assert all(torch.equal(a, b) for a, b in zip(full[stop_after:], resumed, strict=True))
    assert later.current_epoch == 3  # the interrupted epoch was finished, not restarted


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_rendering_under_autocast_keeps_fp32_labels(world, multilevel_spec):
    dm = _dm(world, multilevel_spec, batch_size=64)
    indexes, views, targets = dm.render(0, "cuda")
    assert views[0].is_cuda and views[0].dtype == torch.float32 and indexes.is_cuda
    pair = dm.draw(0, "cuda")
    cpu_world = build_generator("toyworld")
    assert torch.equal(targets.cpu(), cpu_world.labels(cpu_world.to_levels(pair.base.float().cpu())))
