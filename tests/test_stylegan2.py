"""StyleGAN2: the ADA key layout, the modulated convolution, level routing, groups, and checkpoints in all
three formats (NVIDIA's two pickle formats written here with stand-in classes, never NVIDIA's code)."""

from __future__ import annotations

import contextlib
import math
import os
import pickle
import sys
import types
from collections import OrderedDict
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from solo_mlvgm.errors import ConfigError
from solo_mlvgm.generators import StyleGAN2, build_generator
from solo_mlvgm.generators.stylegan2 import (
    StyledConv,
    SynthesisBlock,
    blur_filter,
    modulated_conv2d,
    upsample2x,
)
from solo_mlvgm.settings import GeneratorSpec
from solo_mlvgm.views import ViewSpec

from .conftest import TINY, compose_cfg

TINY_ARCH = {
    "z_dim": 16,
    "w_dim": 16,
    "img_resolution": 32,
    "mapping_layers": 2,
    "channel_base": 256,
    "channel_max": 16,
}
NVIDIA_MODULES = (
    "dnnlib",
    "dnnlib.util",
    "dnnlib.tflib",
    "dnnlib.tflib.network",
    "torch_utils",
    "torch_utils.persistence",
)


def _dyadic_(tensor: torch.Tensor, scale: float = 1.0) -> None:
    """Random values on a 1/1024 grid: TF's mod_bias - 1 and our + 1 are then exact, outputs bit-identical."""
    tensor.copy_((torch.randn_like(tensor) * scale * 1024).round() / 1024)


def make_tiny(seed: int = 0, **options: object) -> StyleGAN2:
    torch.manual_seed(seed)
    model = build_generator("stylegan2", **{**TINY_ARCH, **options})
    with torch.no_grad():  # non-trivial everything a trained file has: biases, noise strengths, w_avg
        for name, tensor in model.state_dict().items():
            scale = 0.5 if name.endswith(("bias", "noise_strength", "w_avg")) else 1.0
            if name.startswith("mapping.fc") and name.endswith("weight"):
                scale = 1 / model.arch["mapping_lr_mul"]  # stored as N(0, 1) / lr_mul
            elif "torgb" in name:
                scale = 0.25  # images mostly inside [0, 1], not clipped
            _dyadic_(tensor, scale)
            if name.endswith("affine.bias"):
                tensor.add_(1.0)
    return model


def render(model: StyleGAN2, seed: int = 0, n: int = 3) -> torch.Tensor:
    with torch.no_grad():
        return model(model.to_levels(model.sample_base(n, generator=torch.Generator().manual_seed(seed))))


# --------------------------------------------------------------------------------- architecture
def ada_keys(resolution: int, layers: int) -> set[str]:
    """G_ema.state_dict() keys of stylegan2-ada-pytorch for an unconditional generator (its format)."""
    keys = {"mapping.w_avg"} | {f"mapping.fc{i}.{p}" for i in range(layers) for p in ("weight", "bias")}
    conv = (
        "weight",
        "bias",
        "noise_strength",
        "noise_const",
        "resample_filter",
        "affine.weight",
        "affine.bias",
    )
    for res in [2**i for i in range(2, int(math.log2(resolution)) + 1)]:
        block = f"synthesis.b{res}"
        keys |= {f"{block}.resample_filter"} | {
            f"{block}.torgb.{p}" for p in ("weight", "bias", "affine.weight", "affine.bias")
        }
        keys |= {f"{block}.const"} if res == 4 else {f"{block}.conv0.{p}" for p in conv}
        keys |= {f"{block}.conv1.{p}" for p in conv}
    return keys


def test_layout_is_ada_g_ema_and_config_f_has_30_3m_weights():
    with torch.device("meta"):
        full = StyleGAN2()
    assert full.num_ws == 16 and full.resolution == 512
    assert sum(p.numel() for p in full.parameters()) == 30_276_583  # config-f G: 30.3M
    filters = {k for k in ada_keys(512, 8) if k.endswith("resample_filter")}
    assert set(full.state_dict()) == ada_keys(512, 8) - filters  # the constant filters are not stored
    shapes = {k: tuple(v.shape) for k, v in full.state_dict().items()}
    assert shapes["synthesis.b4.const"] == (512, 4, 4)
    assert shapes["synthesis.b128.conv0.weight"] == (256, 512, 3, 3)
    assert shapes["synthesis.b512.conv1.noise_const"] == (512, 512)
    assert shapes["synthesis.b512.torgb.affine.weight"] == (64, 512)
    assert shapes["mapping.fc7.weight"] == (512, 512)
    assert list(full.groups) == ["ws0_4", "ws4_8", "ws8_12", "ws12_16", "all"]


def _per_sample(x, weight, styles, demodulate, up):
    """The definition: convolve each sample with its own modulated (and demodulated) kernel."""
    outs = []
    for n in range(x.shape[0]):
        w = weight * styles[n][None, :, None, None]
        if demodulate:
            w = w * (w.square().sum(dim=(1, 2, 3)) + 1e-8).rsqrt()[:, None, None, None]
        xn = x[n : n + 1]
        if up:  # transposed stride-2 conv = zero insertion + full convolution with the flipped kernel
            z = torch.zeros(1, xn.shape[1], 2 * xn.shape[2] - 1, 2 * xn.shape[3] - 1, dtype=x.dtype)
            z[:, :, ::2, ::2] = xn
            y = F.conv2d(z, w.flip(2, 3), padding=2)
            k = blur_filter().double() * 4
            y = F.conv2d(F.pad(y, [1, 1, 1, 1]), k.expand(y.shape[1], 1, 4, 4), groups=y.shape[1])
        else:
            y = F.conv2d(xn, w, padding=w.shape[-1] // 2)
        outs.append(y)
    return torch.cat(outs)


@pytest.mark.parametrize("up", [False, True])
@pytest.mark.parametrize("demodulate", [True, False])
def test_modulated_conv_equals_a_per_sample_loop(up, demodulate):
    torch.manual_seed(0)
    x, weight = torch.randn(3, 5, 6, 6, dtype=torch.float64), torch.randn(4, 5, 3, 3, dtype=torch.float64)
    styles = torch.randn(3, 5, dtype=torch.float64)
    ours = modulated_conv2d(x, weight, styles, demodulate=demodulate, up=up, kernel=blur_filter().double())
    assert ours.shape == (3, 4, 12 if up else 6, 12 if up else 6)
    torch.testing.assert_close(ours, _per_sample(x, weight, styles, demodulate, up), rtol=1e-10, atol=1e-10)


def test_skip_upsampling_is_zero_insertion_then_the_blur():
    x = torch.randn(2, 3, 5, 5, dtype=torch.float64)
    z = torch.zeros(2, 3, 10, 10, dtype=torch.float64)
    z[:, :, ::2, ::2] = x
    k = (blur_filter().double() * 4).expand(3, 1, 4, 4)
    expected = F.conv2d(F.pad(z, [2, 1, 2, 1]), k, groups=3)
    torch.testing.assert_close(upsample2x(x, blur_filter().double()), expected, rtol=1e-12, atol=1e-12)


def test_level_routing_leaves_every_block_before_the_first_reader_bit_identical():
    model = make_tiny()
    blocks = [getattr(model.synthesis, f"b{r}") for r in model.synthesis.resolutions]
    outputs: list[tuple[torch.Tensor, torch.Tensor]] = []
    hooks = [b.register_forward_hook(lambda m, i, o: outputs.append(o)) for b in blocks]
    levels = model.to_levels(model.sample_base(2, generator=torch.Generator().manual_seed(0)))
    other = model.to_levels(model.sample_base(2, generator=torch.Generator().manual_seed(1)))
    with torch.no_grad():
        model(levels)
        reference, outputs[:] = list(outputs), []
        for j in range(model.num_ws):
            model([other[j] if i == j else lv for i, lv in enumerate(levels)])
            first_reader = j // 2  # b4 reads w0, w1; block k >= 1 reads w(2k-1) .. w(2k+1)
            for k, ((x, img), (x0, img0)) in enumerate(zip(outputs, reference, strict=True)):
                same = torch.equal(x, x0) and torch.equal(img, img0)
                assert same == (k < first_reader), (j, k)
            outputs[:] = []
    for hook in hooks:
        hook.remove()


def test_group_perturbation_replaces_only_that_groups_ws_and_psi_truncates():
    model = make_tiny()
    assert model.groups["ws2_4"] == (2, 3) and [n for n, _ in model.units()] == [
        "ws0_2",
        "ws2_4",
        "ws4_6",
        "ws6_8",
    ]
    base = model.sample_base(4, generator=torch.Generator().manual_seed(0))
    assert base.abs().max() <= 0.9  # anchors N^t(0, 1, 0.9)
    anchor = model.to_levels(base)
    positive = model.perturb(base, [((2, 3), torch.full((4, 16), 0.5))])
    changed = [not torch.equal(a, p) for a, p in zip(anchor, positive, strict=True)]
    assert changed == [False, False, True, True, False, False, False, False]
    torch.testing.assert_close(positive[2], model.mapping(base + 0.5))

    truncated = make_tiny(truncation_psi=0.0, truncation_cutoff=3)
    levels = truncated.to_levels(base)
    assert all(torch.equal(lv, truncated.mapping.w_avg.expand(4, -1)) for lv in levels[:3])
    assert torch.equal(levels[3], truncated.mapping(base))


def test_crop_and_resize_are_options_of_the_wrapper():
    plain, cropped = make_tiny(), make_tiny(center_crop=16)
    resized = make_tiny(center_crop=16, resize=8)
    assert (plain.resolution, cropped.resolution, resized.resolution) == (32, 16, 8)
    full = render(plain)
    assert full.min() >= 0 and full.max() <= 1
    assert torch.equal(render(cropped), full[..., 8:24, 8:24])
    assert render(resized).shape == (3, 3, 8, 8)


@pytest.mark.parametrize(
    "options, message",
    [
        ({"groups": 3}, "equal groups"),
        ({"groups": [2, 2, 2]}, "sum to num_ws"),
        ({"img_resolution": 48}, "power of 2"),
        ({"noise_mode": "fresh"}, "noise_mode"),
        ({"center_crop": 64}, "center_crop"),
        ({"truncation_cutoff": 9}, "truncation_cutoff"),
    ],
)
def test_bad_settings_fail_with_one_line(options, message):
    with pytest.raises(ConfigError, match=message) as err:
        build_generator("stylegan2", **{**TINY_ARCH, **options})
    assert "\n" not in str(err.value)


# ---------------------------------------------------------------------------- our own format
def test_own_format_round_trip_is_strict_and_identical(tmp_path):
    model = make_tiny(conv_clamp=2.0)
    path = tmp_path / "g.pt"
    model.save_checkpoint(str(path))
    loaded = build_generator("stylegan2", checkpoint=str(path), groups=2)
    assert loaded.weight_arch == model.weight_arch and list(loaded.groups) == ["ws0_4", "ws4_8", "all"]
    assert torch.equal(render(loaded), render(model))

    with pytest.raises(ConfigError, match="z_dim=32 does not match the checkpoint's z_dim=16"):
        StyleGAN2.from_checkpoint(str(path), z_dim=32)
    payload = torch.load(path, weights_only=True)
    del payload["state_dict"]["synthesis.b8.conv0.noise_const"]
    torch.save(payload, tmp_path / "incomplete.pt")
    with pytest.raises(ConfigError, match="does not fit the stylegan2 architecture.*noise_const") as err:
        StyleGAN2.from_checkpoint(str(tmp_path / "incomplete.pt"))
    assert "\n" not in str(err.value)


def test_missing_and_foreign_files_fail_with_one_line(tmp_path):
    with pytest.raises(ConfigError, match="stylegan2-car-config-f.pkl") as err:
        StyleGAN2.from_checkpoint(str(tmp_path / "nope.pkl"))
    assert "\n" not in str(err.value)
    torch.save({"weights": torch.zeros(2)}, tmp_path / "other.pt")
    with pytest.raises(ConfigError, match="not a StyleGAN2 checkpoint"):
        StyleGAN2.from_checkpoint(str(tmp_path / "other.pt"))
    (tmp_path / "cut.pkl").write_bytes(pickle.dumps({"G_ema": 1})[:-3])
    with pytest.raises(ConfigError, match="not a readable pickle"):
        StyleGAN2.from_checkpoint(str(tmp_path / "cut.pkl"))


# ------------------------------------------------------------------ NVIDIA's pickle formats
EMBEDDED_SOURCE = "import os\nos.system('touch {marker}')\n"


@pytest.fixture
def nvidia_stand_ins(monkeypatch, tmp_path):
    """Modules named like NVIDIA's, with classes that pickle the way theirs do; registered only while
    a test writes its pickle (``with stand_ins.registered(): ...``) and removed before it loads."""
    ns = types.SimpleNamespace(marker=tmp_path / "embedded_source_ran")

    def _reconstruct_persistent_obj(meta):  # pragma: no cover - only pickled by reference
        raise AssertionError("loading must not call NVIDIA's reconstruct")

    class EasyDict(dict):
        pass

    class Network:
        def __init__(self, state):
            self._state = state

        def __getstate__(self):
            return self._state

    _reconstruct_persistent_obj.__module__ = "torch_utils.persistence"
    _reconstruct_persistent_obj.__qualname__ = "_reconstruct_persistent_obj"
    EasyDict.__module__, EasyDict.__qualname__ = "dnnlib.util", "EasyDict"
    Network.__module__, Network.__qualname__ = "dnnlib.tflib.network", "Network"
    modules = {name: types.ModuleType(name) for name in NVIDIA_MODULES}
    modules["torch_utils.persistence"]._reconstruct_persistent_obj = _reconstruct_persistent_obj
    modules["dnnlib.util"].EasyDict = EasyDict
    modules["dnnlib.tflib.network"].Network = Network

    class Persistent:
        """Pickles as a stylegan2-ada-pytorch persistent object: reconstruct(meta with source and state)."""

        def __init__(self, class_name, state):
            self.class_name, self.state = class_name, state

        def __reduce__(self):
            src = EMBEDDED_SOURCE.format(marker=ns.marker)
            meta = {
                "type": "class",
                "version": 6,
                "module_src": src,
                "class_name": self.class_name,
                "state": self.state,
            }
            return (_reconstruct_persistent_obj, (meta,))

    @contextlib.contextmanager
    def registered():
        with monkeypatch.context() as patcher:
            for name, module in modules.items():
                patcher.setitem(sys.modules, name, module)
            yield

    ns.EasyDict, ns.Network, ns.Persistent, ns.registered = EasyDict, Network, Persistent, registered
    yield ns
    assert not ns.marker.exists(), "source code embedded in a pickle was executed"


def _ada_tree(module: nn.Module, stand_ins, attributes: dict) -> object:
    """A module as stylegan2-ada-pytorch pickles it: its __dict__ with parameters, buffers (plus the
    constant resample filters it stores) and child modules, each child a persistent object of its own."""
    buffers = OrderedDict(
        (k, v) for k, v in module._buffers.items() if k not in module._non_persistent_buffers_set
    )
    if isinstance(module, StyledConv | SynthesisBlock):
        buffers["resample_filter"] = blur_filter()
    state = {
        "training": False,
        "_parameters": OrderedDict(
            (k, nn.Parameter(v.detach().clone())) for k, v in module._parameters.items()
        ),
        "_buffers": buffers,
        "_non_persistent_buffers_set": set(),
        "_modules": OrderedDict((k, _ada_tree(c, stand_ins, {})) for k, c in module._modules.items()),
        **attributes,
    }
    if hasattr(module, "bias_gain"):
        state["bias_gain"] = module.bias_gain
    if hasattr(module, "conv_clamp"):
        state["conv_clamp"] = module.conv_clamp
    return stand_ins.Persistent(type(module).__name__, state)


def test_ada_pickle_loads_g_ema_to_identical_outputs_without_nvidia_code(tmp_path, nvidia_stand_ins):
    ns = nvidia_stand_ins
    settings = {"conv_clamp": 2.0, "mapping_lr_mul": 0.05}  # neither is the default nor in the kwargs below
    g_ema, g = make_tiny(seed=0, **settings), make_tiny(seed=1, **settings)
    kwargs = ns.EasyDict(
        z_dim=16,
        w_dim=16,
        c_dim=0,
        img_resolution=32,
        img_channels=3,
        mapping_kwargs=ns.EasyDict(num_layers=2),
        synthesis_kwargs=ns.EasyDict(channel_base=256, channel_max=16, num_fp16_res=0),
    )
    snapshot = {
        "G": _ada_tree(g, ns, {"_init_kwargs": kwargs}),
        "D": ns.Persistent("Discriminator", {"_parameters": OrderedDict(w=torch.ones(2))}),
        "G_ema": _ada_tree(g_ema, ns, {"_init_kwargs": kwargs, "_init_args": ()}),
        "augment_pipe": None,
        "training_set_kwargs": ns.EasyDict(path="cars.zip"),
    }
    with ns.registered():
        (tmp_path / "network-snapshot.pkl").write_bytes(pickle.dumps(snapshot, protocol=4))
    assert not any(name in sys.modules for name in NVIDIA_MODULES)

    loaded = StyleGAN2.from_checkpoint(str(tmp_path / "network-snapshot.pkl"))
    assert not any(name in sys.modules for name in NVIDIA_MODULES)
    assert loaded.weight_arch == g_ema.weight_arch  # conv_clamp and lr multiplier read from the module state
    assert torch.equal(render(loaded), render(g_ema)) and not torch.equal(render(loaded), render(g))

    # Refused: a class-conditional generator, and filters other than [1, 3, 3, 1].
    conditional = ns.EasyDict(kwargs, c_dim=10)
    sharp = _ada_tree(g_ema, ns, {"_init_kwargs": kwargs})
    sharp.state["_modules"]["synthesis"].state["_modules"]["b8"].state["_buffers"]["resample_filter"] = (
        torch.eye(4)
    )
    for name, bad, message in (
        (
            "conditional.pkl",
            {"G_ema": _ada_tree(g_ema, ns, {"_init_kwargs": conditional})},
            "class-conditional",
        ),
        ("sharp.pkl", {"G_ema": sharp}, "resample_filter is not the"),
    ):
        with ns.registered():
            (tmp_path / name).write_bytes(pickle.dumps(bad, protocol=4))
        with pytest.raises(ConfigError, match=message):
            StyleGAN2.from_checkpoint(str(tmp_path / name))


def _tf_variables(model: StyleGAN2) -> tuple[list, list, list]:
    """(G's own, mapping's, synthesis's) variables in TensorFlow StyleGAN2's names and layouts."""
    sd = {k: v.numpy() for k, v in model.state_dict().items()}
    own = [("dlatent_avg", sd["mapping.w_avg"]), ("lod", np.float32(0))]
    mapping = []
    for i in range(model.mapping.num_layers):
        mapping += [
            (f"Dense{i}/weight", sd[f"mapping.fc{i}.weight"].T),
            (f"Dense{i}/bias", sd[f"mapping.fc{i}.bias"]),
        ]
    synthesis = []

    def layer(scope, ours, flip=False):
        kernel = sd[f"{ours}.weight"].transpose(2, 3, 1, 0)  # [out, in, kh, kw] -> [kh, kw, in, out]
        synthesis.extend(
            [
                (f"{scope}/weight", kernel[::-1, ::-1] if flip else kernel),
                (f"{scope}/bias", sd[f"{ours}.bias"]),
                (f"{scope}/mod_weight", sd[f"{ours}.affine.weight"].T),
                (f"{scope}/mod_bias", sd[f"{ours}.affine.bias"] - 1),
            ]
        )
        if f"{ours}.noise_strength" in sd:
            synthesis.append((f"{scope}/noise_strength", sd[f"{ours}.noise_strength"]))

    noise = 0
    for res in model.synthesis.resolutions:
        b = f"synthesis.b{res}"
        if res == 4:
            synthesis.append(("4x4/Const/const", sd[f"{b}.const"][None]))
            layer("4x4/Conv", f"{b}.conv1")
            synthesis.append((f"noise{noise}", sd[f"{b}.conv1.noise_const"][None, None]))
            noise += 1
        else:
            for tf_name, ours in (("Conv0_up", "conv0"), ("Conv1", "conv1")):
                layer(f"{res}x{res}/{tf_name}", f"{b}.{ours}", flip=tf_name == "Conv0_up")
                synthesis.append((f"noise{noise}", sd[f"{b}.{ours}.noise_const"][None, None]))
                noise += 1
        layer(f"{res}x{res}/ToRGB", f"{b}.torgb")
    return own, mapping, synthesis


def test_tf_pickle_loads_gs_to_identical_outputs_without_nvidia_code(tmp_path, nvidia_stand_ins):
    ns = nvidia_stand_ins

    def network(model: StyleGAN2, name: str):
        own, mapping, synthesis = _tf_variables(model)
        components = {
            "mapping": ns.Network(
                {
                    "version": 4,
                    "name": "G_mapping",
                    "static_kwargs": {},
                    "components": {},
                    "variables": mapping,
                }
            ),
            "synthesis": ns.Network(
                {
                    "version": 4,
                    "name": "G_synthesis",
                    "static_kwargs": {},
                    "components": {},
                    "variables": synthesis,
                }
            ),
        }
        kwargs = {
            "resolution": 32,
            "mapping_layers": 2,
            "architecture": "skip",
            "mapping_lrmul": 0.01,
            "label_size": 0,
        }
        return ns.Network(
            {
                "version": 4,
                "name": name,
                "static_kwargs": kwargs,
                "components": components,
                "build_module_src": EMBEDDED_SOURCE.format(marker=ns.marker),
                "build_func_name": "G_main",
                "variables": own,
            }
        )

    gs, g = make_tiny(seed=0), make_tiny(seed=1)
    d = ns.Network(
        {
            "version": 4,
            "name": "D",
            "static_kwargs": {},
            "components": {},
            "variables": [("w", np.ones(2, np.float32))],
        }
    )
    with ns.registered():
        (tmp_path / "stylegan2-car-config-f.pkl").write_bytes(
            pickle.dumps((network(g, "G"), d, network(gs, "Gs")), protocol=4)
        )
    loaded = StyleGAN2.from_checkpoint(str(tmp_path / "stylegan2-car-config-f.pkl"))
    assert not any(name in sys.modules for name in NVIDIA_MODULES)
    # The conventions, element by element (the writer above is the reader's inverse, so pin them here):
    # Conv0_up kernels are flipped, [kh, kw, in, out] -> [out, in, kh, kw]; noise{2 log2(res) - 5} is conv0's.
    tf = dict(_tf_variables(gs)[2])
    ours = loaded.state_dict()
    assert ours["synthesis.b8.conv0.weight"][3, 1, 0, 2] == float(tf["8x8/Conv0_up/weight"][2, 0, 1, 3])
    assert ours["synthesis.b8.conv1.weight"][3, 1, 0, 2] == float(tf["8x8/Conv1/weight"][0, 2, 1, 3])
    assert torch.equal(ours["synthesis.b16.conv0.noise_const"], torch.from_numpy(tf["noise3"][0, 0]))
    assert ours["synthesis.b4.conv1.affine.bias"][0] == float(tf["4x4/Conv/mod_bias"][0]) + 1
    assert loaded.weight_arch == gs.weight_arch
    assert torch.equal(render(loaded), render(gs))


class _RunsACommand:
    def __init__(self, command: str) -> None:
        self.command = command

    def __reduce__(self):
        return (os.system, (self.command,))


def test_a_pickle_naming_os_system_or_any_other_global_is_rejected(tmp_path):
    marker = tmp_path / "ran"
    (tmp_path / "evil.pkl").write_bytes(pickle.dumps({"G_ema": _RunsACommand(f"touch {marker}")}))
    with pytest.raises(ConfigError, match=r"refers to (posix|os)\.system") as err:
        StyleGAN2.from_checkpoint(str(tmp_path / "evil.pkl"))
    assert "\n" not in str(err.value) and not marker.exists()

    (tmp_path / "other.pkl").write_bytes(pickle.dumps({"G_ema": Path("x")}))
    with pytest.raises(ConfigError, match=r"refers to pathlib\.\w*Path"):
        StyleGAN2.from_checkpoint(str(tmp_path / "other.pkl"))

    # A tensor's storage pickles as nested torch.save bytes: those are read with weights_only=True too.
    class NestedStorage:
        def __reduce__(self):
            import io

            buffer = io.BytesIO()
            torch.save(_RunsACommand(f"touch {marker}"), buffer, _use_new_zipfile_serialization=False)
            return (torch.storage._load_from_bytes, (buffer.getvalue(),))

    (tmp_path / "nested.pkl").write_bytes(pickle.dumps({"G_ema": NestedStorage()}))
    with pytest.raises(ConfigError):
        StyleGAN2.from_checkpoint(str(tmp_path / "nested.pkl"))
    assert not marker.exists()


# ----------------------------------------------------------------------------------- configs
def test_cars_config_needs_a_checkpoint_and_crops_384_to_128(tmp_path):
    cfg = compose_cfg("mlvgm_byol", ["generator=stylegan2_cars", "views=stylegan2_ml_random"])
    with pytest.raises(ConfigError, match="stylegan2-car-config-f.pkl") as err:
        GeneratorSpec.from_config(cfg.generator).build()
    assert "\n" not in str(err.value)
    torch.manual_seed(0)
    small = build_generator("stylegan2", z_dim=16, w_dim=16, mapping_layers=2, channel_max=2)  # 512 px, 16 ws
    small.save_checkpoint(str(tmp_path / "cars.pt"))
    cfg = compose_cfg(
        "mlvgm_byol", ["generator=stylegan2_cars", f"generator.checkpoint={tmp_path / 'cars.pt'}"]
    )
    generator = GeneratorSpec.from_config(cfg.generator).build()
    assert (generator.center_crop, generator.resize, generator.resolution, generator.truncation) == (
        384,
        128,
        128,
        0.9,
    )
    for views, expected in (
        ("stylegan2_ml_random", [0.2, 0.1, 0.8, 0.8]),
        ("stylegan2_single_random", [0.25]),
    ):
        spec = ViewSpec.from_config(compose_cfg("mlvgm_byol", [f"views={views}"]).views)
        plan = spec.resolve(generator)
        assert [p.std for _, p in plan] == expected
    assert [
        idx
        for idx, _ in ViewSpec.from_config(
            compose_cfg("mlvgm_byol", ["views=stylegan2_ml_random"]).views
        ).resolve(generator)
    ] == [
        tuple(range(0, 4)),
        tuple(range(4, 8)),
        tuple(range(8, 12)),
        tuple(range(12, 16)),
    ]


def test_byol_trains_on_continuous_sampling_from_a_stylegan2_checkpoint(tmp_path):
    from solo_mlvgm.entry.pretrain import build_pretraining

    make_tiny().save_checkpoint(str(tmp_path / "g.pt"))
    cfg = compose_cfg(
        "mlvgm_byol",
        [
            *TINY,
            "backend=lightly",  # checks the lightly method's missing classifier
            "generator=stylegan2",
            f"generator.checkpoint={tmp_path / 'g.pt'}",
            "views=stylegan2_single_random",
            "+views.perturb.ws0_2={std: 0.5}",
            "~views.perturb.all",
            "views.crop_min_scale=0.5",
        ],
    )
    job = build_pretraining(cfg, tmp_path)
    assert job.method.classifier is None  # StyleGAN2 has no labels
    job.trainer.fit(job.method, datamodule=job.data)
    assert job.trainer.global_step == 3
    assert all(math.isfinite(float(v)) for v in job.trainer.callback_metrics.values())
    indexes, views, targets = job.data.render(0, "cpu")
    assert views[0].shape == (16, 3, 32, 32) and (targets == -1).all()


def test_level_grid_has_one_row_per_group():
    from solo_mlvgm.views import level_grid

    images, names = level_grid(make_tiny(), n_anchors=2)
    assert images.shape == (2 * 5, 3, 32, 32)
    assert names == ["anchor", "ws0_2 (std 1)", "ws2_4 (std 1)", "ws4_6 (std 1)", "ws6_8 (std 1)"]


@pytest.mark.parametrize("name", ["stylegan2", "bigbigan"])
def test_bf16_autocast_and_channels_last_render_what_fp32_renders(name):
    if name == "stylegan2":
        model = make_tiny()
    else:
        torch.manual_seed(0)
        model = build_generator(
            "bigbigan", ch=4, dim_z=24, shared_dim=8, resolution=32, attention_resolution=None
        )
    base = model.sample_base(2, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        reference = model(model.to_levels(base))
        with torch.autocast("cpu", dtype=torch.bfloat16):
            low = model(model.to_levels(base))
        model.to(memory_format=torch.channels_last)
        last = model(model.to_levels(base))
    assert low.shape == reference.shape and (low.float() - reference).abs().mean() < 0.03
    torch.testing.assert_close(last, reference, rtol=1e-4, atol=1e-5)


def test_mi_quantification_runs_per_group_by_default_and_recommends_group_views(tmp_path):
    import yaml

    from solo_mlvgm.entry import quantify as driver

    from .test_quantify import TINY_MI

    make_tiny().save_checkpoint(str(tmp_path / "g.pt"))
    cfg = compose_cfg(
        "mi_quant",
        [*TINY_MI, "generator=stylegan2", f"generator.checkpoint={tmp_path / 'g.pt'}", "generator.groups=2"],
    )
    records = driver.run_quantification(cfg, tmp_path / "run")
    assert [r["level"] for r in records] == ["ws0_4", "ws4_8"]  # the groups, not the 8 w's
    assert all(math.isfinite(r["final_loss"]) for r in records)
    views = yaml.safe_load((tmp_path / "run" / "recommended_views.yaml").read_text())
    assert set(views["perturb"]) <= {"ws0_4", "ws4_8"}


def test_tf_pickle_with_variables_this_architecture_does_not_use_is_refused(tmp_path, nvidia_stand_ins):
    ns = nvidia_stand_ins
    own, mapping, synthesis = _tf_variables(make_tiny())
    synthesis.append(("8x8/Skip/weight", np.ones((1, 1, 16, 16), np.float32)))  # the "resnet" architecture
    parts = {
        name: ns.Network({"static_kwargs": {}, "components": {}, "variables": variables})
        for name, variables in (("mapping", mapping), ("synthesis", synthesis))
    }
    gs = ns.Network({"static_kwargs": {}, "components": parts, "variables": own})
    with ns.registered():
        (tmp_path / "g.pkl").write_bytes(pickle.dumps((gs, gs, gs), protocol=4))
    with pytest.raises(ConfigError, match="does not use: \\['synthesis/8x8/Skip/weight'\\]"):
        StyleGAN2.from_checkpoint(str(tmp_path / "g.pkl"))
