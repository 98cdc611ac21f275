"""BigBiGAN: the official key layout, strict checkpoint round trip, spectral-norm folding, level routing."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from solo_mlvgm.errors import ConfigError
from solo_mlvgm.generators import BigBiGAN, build_generator
from solo_mlvgm.generators.spectral import SNConv2d

TINY = {"ch": 4, "dim_z": 24, "shared_dim": 8}  # 128 px, six levels of 4, attention at 64 px kept


@pytest.fixture
def tiny() -> BigBiGAN:
    torch.manual_seed(0)
    model = build_generator("bigbigan", **TINY)
    with torch.no_grad():  # non-trivial stored statistics and attention, as in a trained file
        for name, buf in model.named_buffers():
            if name.endswith("stored_mean"):
                buf.normal_(0, 0.1)
            elif name.endswith("stored_var"):
                buf.uniform_(0.5, 1.5)
        for module in model.modules():
            if hasattr(module, "gamma"):
                module.gamma.fill_(0.7)
    model.fold_spectral_norms()
    return model


def _render(model: BigBiGAN, seed: int = 0, n: int = 3) -> torch.Tensor:
    levels = model.to_levels(model.sample_base(n, generator=torch.Generator().manual_seed(seed)))
    return model(levels)


def test_full_size_has_the_official_key_set_and_parameter_count():
    with torch.device("meta"):
        model = BigBiGAN()
    state = model.state_dict()
    assert len(state) == 166
    assert state["linear.weight"].shape == (24576, 20)
    assert state["blocks.0.0.bn1.gain.weight"].shape == (1536, 148)
    assert state["blocks.3.1.gamma"].shape == ()
    assert state["blocks.4.0.conv_sc.weight"].shape == (96, 192, 1, 1)
    assert state["output_layer.2.u0"].shape == (1, 3)
    assert "blocks.0.0.bn1.gain.bias" not in state and "blocks.3.1.theta.bias" not in state
    weights = sum(
        v.numel() for k, v in state.items() if not k.endswith(("u0", "sv0", "stored_mean", "stored_var"))
    )
    assert weights == 70_433_988
    assert [lv.shape for lv in model.levels] == [(20,)] * 6


def test_strict_state_dict_round_trip_through_a_checkpoint_file(tmp_path, tiny):
    path = tmp_path / "BigBiGAN_x1.pth"
    torch.save(tiny.state_dict(), path)
    loaded = build_generator("bigbigan", checkpoint=str(path))
    assert loaded.arch == tiny.arch  # ch, dim_z, shared_dim, resolution, attention inferred from shapes
    for key, value in tiny.state_dict().items():
        assert torch.equal(loaded.state_dict()[key], value), key
    assert torch.equal(_render(loaded), _render(tiny))
    out = _render(loaded)
    assert out.shape == (3, 3, 128, 128) and out.min() >= 0 and out.max() <= 1


def test_folded_spectral_norm_equals_an_independent_power_iteration():
    torch.manual_seed(1)
    layer = SNConv2d(6, 5, 3)
    w = layer.weight.detach().reshape(5, -1).double()
    u = layer.u0.detach().double().reshape(-1)
    v = w.t() @ u
    v = v / v.norm()
    u1 = w @ v
    u1 = u1 / u1.norm()
    sigma = u1 @ w @ v
    layer.fold()
    expected = (layer.weight.double() / sigma).float()
    assert torch.allclose(layer.folded, expected, rtol=1e-5, atol=1e-7)
    x = torch.randn(2, 6, 8, 8)
    assert torch.allclose(layer(x), F.conv2d(x, expected, layer.bias, padding=1), atol=1e-5)
    u0 = layer.u0.clone()
    layer(x)
    assert torch.equal(layer.u0, u0)  # never updated


def test_changing_level_k_leaves_everything_before_its_block_bit_identical(tiny):
    seen: dict[str, torch.Tensor] = {}

    def keep(name):
        return lambda module, args, out: seen.__setitem__(name, out.detach().clone())

    hooks = [tiny.linear.register_forward_hook(keep("stem"))]
    hooks += [
        stage.register_forward_hook(keep(f"block{i}")) for i, stage in enumerate(b[0] for b in tiny.blocks)
    ]
    base = tiny.sample_base(2, generator=torch.Generator().manual_seed(3))
    tiny(tiny.to_levels(base))
    reference = dict(seen)
    names = ["stem"] + [f"block{i}" for i in range(len(tiny.blocks))]
    for k in range(len(tiny.levels)):
        moved = base.clone()
        moved[:, tiny.coords_of((k,))] += 0.5
        tiny(tiny.to_levels(moved))
        first_affected = 0 if k == 0 else k  # level k > 0 enters at block k-1, i.e. names[k]
        for name in names[:first_affected]:
            assert torch.equal(seen[name], reference[name]), (k, name)
        assert not torch.equal(seen[names[first_affected]], reference[names[first_affected]]), k
    for h in hooks:
        h.remove()


def test_forward_pair_shares_the_prefix_and_equals_separate_renders(tiny):
    base = tiny.sample_base(2, generator=torch.Generator().manual_seed(4))
    anchor = tiny.to_levels(base)
    for k in range(len(tiny.levels)):
        delta = torch.full((2, tiny.level_dim), 0.3)
        positive = tiny.perturb(base, [((k,), delta)], levels=anchor)
        a, p = tiny.forward_pair(anchor, positive, first_changed=k)
        assert torch.allclose(a, tiny(anchor), atol=1e-5) and torch.allclose(p, tiny(positive), atol=1e-5)


def test_missing_or_mismatched_checkpoints_fail_with_one_line(tmp_path, tiny):
    with pytest.raises(ConfigError, match="BigBiGAN_x1.pth") as err:
        build_generator("bigbigan", checkpoint=str(tmp_path / "nope.pth"))
    assert "\n" not in str(err.value)
    path = tmp_path / "g.pth"
    torch.save(tiny.state_dict(), path)
    with pytest.raises(ConfigError, match="ch=8 does not match the checkpoint's ch=4"):
        build_generator("bigbigan", checkpoint=str(path), ch=8)
    state = tiny.state_dict()
    del state["blocks.2.0.bn2.stored_var"]
    torch.save(state, path)
    with pytest.raises(ConfigError, match="does not fit"):
        build_generator("bigbigan", checkpoint=str(path))
    Path(path).write_bytes(b"not a checkpoint")
    with pytest.raises(ConfigError, match="not a readable state dict"):
        build_generator("bigbigan", checkpoint=str(path))


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"resolution": 100}, "resolution"),
        ({"dim_z": 25}, "multiple"),
        ({"attention_resolution": 48}, "attention"),
    ],
)
def test_bad_architectures_are_rejected(kwargs, message):
    with pytest.raises(ConfigError, match=message):
        build_generator("bigbigan", **{**TINY, **kwargs})


def test_the_bigbigan_config_requires_a_checkpoint_and_says_where_it_comes_from():
    from omegaconf import OmegaConf

    from solo_mlvgm.settings import GeneratorSpec

    from .conftest import CONFIGS

    cfg = OmegaConf.load(CONFIGS / "generator" / "bigbigan.yaml")
    with pytest.raises(ConfigError, match="needs generator.checkpoint=<path> \\(BigBiGAN_x1.pth"):
        GeneratorSpec.from_config(cfg).build()
    cfg.checkpoint = None
    cfg.ch, cfg.dim_z, cfg.shared_dim = 4, 24, 8
    assert isinstance(
        GeneratorSpec.from_config(cfg).build(), BigBiGAN
    )  # random weights when asked explicitly
