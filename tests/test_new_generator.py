"""A new generator is one class: registered in this file alone, it runs through Continuous Sampling, the
view grid and the MI method without any other file knowing it."""

from __future__ import annotations

from collections.abc import Sequence

import lightning.pytorch as pl
import torch
import torch.nn.functional as F
from PIL import Image
from torch import Tensor, nn

from solo_mlvgm.data import ContinuousSampling
from solo_mlvgm.generators import GENERATORS, MultiLatentGenerator, build_generator, register_generator
from solo_mlvgm.generators.base import LatentLevel
from solo_mlvgm.quantify.method import MIQuant
from solo_mlvgm.views import ViewSpec
from solo_mlvgm.views.grid import save_level_grid

from .conftest import compose_cfg

LEVEL_DIM = 4


@register_generator("tiny_test")
class TinyGenerator(MultiLatentGenerator):
    """Three levels of 4 coordinates (chunks of z): ``layout`` makes a 4x4 map, ``style`` and ``detail``
    scale and shift the features of the 8x8 and 16x16 convolutions (FiLM)."""

    def __init__(self, width: int = 8, truncation: float = 2.0) -> None:
        super().__init__(truncation=truncation)
        self.arch = {"name": "tiny_test", "width": width, "truncation": truncation}
        self.levels = tuple(LatentLevel(name, (LEVEL_DIM,)) for name in ("layout", "style", "detail"))
        self.groups = {"all": (0, 1, 2), "look": (1, 2)}
        self.resolution, self.base_dim, self.width = 16, 3 * LEVEL_DIM, width
        self.stem = nn.Linear(LEVEL_DIM, width * 4 * 4)
        self.convs = nn.ModuleList([nn.Conv2d(width, width, 3, padding=1) for _ in range(2)])
        self.films = nn.ModuleList([nn.Linear(LEVEL_DIM, 2 * width) for _ in range(2)])
        self.to_rgb = nn.Conv2d(width, 3, 1)

    def level_coords(self, index: int) -> range:
        return range(index * LEVEL_DIM, (index + 1) * LEVEL_DIM)

    def to_levels(self, base: Tensor) -> list[Tensor]:
        return list(base.split(LEVEL_DIM, dim=1))

    def forward(self, levels: Sequence[Tensor]) -> Tensor:
        self.check_levels(levels)
        h = self.stem(levels[0]).view(-1, self.width, 4, 4)
        for conv, film, z in zip(self.convs, self.films, levels[1:], strict=True):
            scale, shift = film(z)[:, :, None, None].chunk(2, dim=1)
            h = F.relu(conv(F.interpolate(h, scale_factor=2)) * (1 + scale) + shift)
        return torch.sigmoid(self.to_rgb(h))


def tiny() -> TinyGenerator:
    torch.manual_seed(0)
    generator = build_generator("tiny_test")
    assert isinstance(generator, TinyGenerator)
    return generator


def test_the_decorator_alone_registers_the_generator():
    assert GENERATORS["tiny_test"] is TinyGenerator
    generator = tiny()
    assert not generator.training and not any(p.requires_grad for p in generator.parameters())
    assert generator.checkpoint_hint  # the base class's default


def test_continuous_sampling_draws_multi_level_batches():
    generator = tiny()
    spec = ViewSpec.from_config(
        {
            "name": "multilevel",
            "pixel": "no_color",
            "perturb": {"style": {"std": 1.0}, "detail": {"std": 0.5}},
        }
    )
    assert [indices for indices, _ in spec.resolve(generator)] == [(1,), (2,)]  # level names resolved
    data = ContinuousSampling(generator, spec, batch_size=4, epoch_size=16, seed=3)
    indexes, views, targets = data.render(0)
    assert indexes.tolist() == [0, 1, 2, 3]
    assert [tuple(v.shape) for v in views] == [(4, 3, 16, 16)] * 2
    assert all(v.dtype == torch.float32 and torch.isfinite(v).all() for v in views)
    assert torch.equal(targets, torch.full((4,), -1))  # no classes: solo-learn's "no label"
    pair = data.draw(0)
    assert not torch.equal(pair.anchor, pair.positive)
    again = ContinuousSampling(tiny(), spec, batch_size=4, epoch_size=16, seed=3).render(0)
    assert all(torch.equal(a, b) for a, b in zip(views, again[1], strict=True))  # seeded: bit-identical


def test_view_grid_has_one_row_per_level(tmp_path):
    generator = tiny()
    names = save_level_grid(tmp_path / "grid.png", generator, n_anchors=3)
    assert names == ["anchor", "layout (std 1)", "style (std 1)", "detail (std 1)"]
    with Image.open(tmp_path / "grid.png") as image:
        width, height = image.size
    assert height == 4 * (16 + 2) + 2 and width > 3 * (16 + 2) + 2  # 4 rows, 2 px padding, a label margin


def test_one_mi_step_trains_the_walker_through_the_generator():
    generator = tiny()
    frozen = {k: v.clone() for k, v in generator.state_dict().items()}
    cfg = MIQuant.validate_cfg(
        compose_cfg(
            "mi_quant",
            [
                "optimizer.batch_size=8",
                "method_kwargs.encoder_warmup_steps=0",  # the walker moves at the first step
                "method_kwargs.proj_hidden_dim=16",
                "method_kwargs.proj_output_dim=8",
                "max_steps=1",
                "log_every_n_steps=0",
            ],
        )
    )
    module = MIQuant(cfg, generator, generator.resolve("style"))
    assert module.level_name == "style" and module.walker.dim == LEVEL_DIM
    before = [p.detach().clone() for p in module.walker.parameters()]
    trainer = pl.Trainer(
        accelerator="cpu",
        max_steps=1,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    trainer.fit(module, train_dataloaders=torch.utils.data.DataLoader(range(1), batch_size=None))
    assert len(module.history) == 1 and module.history[0]["walker_moves"] == 1
    assert torch.isfinite(torch.tensor(module.history[0]["loss"]))
    grads = [p.grad for p in module.walker.parameters()]
    assert all(g is not None and g.abs().sum() > 0 for g in grads)  # through the frozen generator
    assert any(not torch.equal(b, p) for b, p in zip(before, module.walker.parameters(), strict=True))
    assert all(torch.equal(frozen[k], v) for k, v in generator.state_dict().items())
