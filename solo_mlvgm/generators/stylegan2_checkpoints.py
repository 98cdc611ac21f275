"""StyleGAN2 checkpoints in three formats, read into (architecture, state dict) without NVIDIA's code.

- **TensorFlow** (NVIDIA's StyleGAN2 release, e.g. ``stylegan2-car-config-f.pkl``): a pickled tuple
  ``(G, D, Gs)`` of ``dnnlib.tflib.network.Network``; each holds its variables as numpy arrays and its
  sub-networks as components. ``Gs`` (the moving average of G) is used. Conversion rules: dense weights
  transposed; conv kernels ``[kh, kw, in, out] -> [out, in, kh, kw]``, the up-sampling conv's also flipped
  spatially (TF applied it as a true convolution); modulation weights transposed and biases + 1 (TF added
  the 1 at run time); the constant and noise maps lose their leading singleton axes; ``dlatent_avg`` is
  ``w_avg``.
- **stylegan2-ada-pytorch** network pickles: a dict whose ``G_ema`` was pickled through
  ``torch_utils.persistence``: each module is a call of ``_reconstruct_persistent_obj`` with its source code
  and its ``__dict__`` (``_parameters``, ``_buffers``, ``_modules``, ``_init_kwargs``). The stand-in records
  that state; the source is never run. Tensor names are ours already, minus the constant blur filters.
- **Ours**: ``{"format": FORMAT, "arch": {...}, "state_dict": {...}}`` from ``StyleGAN2.save_checkpoint``,
  read with ``torch.load(weights_only=True)``.

Every pickle goes through ``checkpoints.load_restricted``.
"""

from __future__ import annotations

import math
import re
import zipfile
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import Tensor

from solo_mlvgm.errors import ConfigError
from solo_mlvgm.generators.base import one_line
from solo_mlvgm.generators.checkpoints import load_restricted
from solo_mlvgm.generators.stylegan2 import ARCH_KEYS, CONFIG_F, StyleGAN2Arch, blur_filter, channels_at
from solo_mlvgm.runs import save_torch

if TYPE_CHECKING:
    from solo_mlvgm.generators.stylegan2 import StyleGAN2

FORMAT = "solo-mlvgm/stylegan2"
OFFICIAL_FILE = "stylegan2-car-config-f.pkl"
OFFICIAL_SOURCE = "NVIDIA's StyleGAN2 release (github.com/NVlabs/stylegan2, research-only licence)"


# ------------------------------------------------------------------ stand-ins for NVIDIA's classes
class TFNetwork:
    """Stand-in for ``dnnlib.tflib.network.Network``: keeps the pickled state, builds nothing."""

    def __setstate__(self, state: dict) -> None:
        if not isinstance(state, dict):
            raise ConfigError("a TensorFlow network in the pickle has no state dict")
        self.state = state

    def variables(self, prefix: str = "") -> dict[str, np.ndarray]:
        """Own and component variables by TF name, e.g. ``synthesis/4x4/Conv/weight``."""
        found = {prefix + name: value for name, value in self.state.get("variables", [])}
        for name, component in dict(self.state.get("components", {})).items():
            if isinstance(component, TFNetwork):
                found.update(component.variables(f"{prefix}{name}/"))
        return found

    def static_kwargs(self) -> dict[str, Any]:
        kwargs = dict(self.state.get("static_kwargs", {}))
        for component in dict(self.state.get("components", {})).values():
            if isinstance(component, TFNetwork):
                kwargs = {**component.static_kwargs(), **kwargs}
        return kwargs


class EasyDict(dict):
    """Stand-in for ``dnnlib.EasyDict`` (a dict with attribute access): a plain dict here."""


class PersistentObject:
    """What ``torch_utils.persistence._reconstruct_persistent_obj`` gets: a class name and its state."""

    def __init__(self, class_name: str, state: dict) -> None:
        self.class_name, self.state = class_name, state


def reconstruct_persistent(meta: Any) -> PersistentObject:
    """Record a persistent object's state; its ``module_src`` is never looked at, let alone run."""
    if not isinstance(meta, dict) or meta.get("type") != "class" or not isinstance(meta.get("state"), dict):
        raise ConfigError(
            "a persistent object in the pickle is not a pickled module (type 'class' with a state)"
        )
    return PersistentObject(str(meta.get("class_name")), meta["state"])


STAND_INS: dict[tuple[str, str], Any] = {
    ("dnnlib.tflib.network", "Network"): TFNetwork,
    ("dnnlib.util", "EasyDict"): EasyDict,
    ("dnnlib", "EasyDict"): EasyDict,
    ("torch_utils.persistence", "_reconstruct_persistent_obj"): reconstruct_persistent,
}


# ------------------------------------------------------------------------------------- reading
def read_checkpoint(path: str) -> tuple[Mapping[str, Any], dict[str, Tensor]]:
    """(architecture settings ``ARCH_KEYS``, state dict in our names) from any supported file."""
    file = Path(path)
    if not file.is_file():
        raise ConfigError(
            f"StyleGAN2 checkpoint '{path}' not found: download {OFFICIAL_FILE} from {OFFICIAL_SOURCE}, "
            "or give a stylegan2-ada-pytorch network pickle"
        )
    if zipfile.is_zipfile(file):
        return _read_native(file)
    loaded = load_restricted(file, STAND_INS)
    try:
        if isinstance(loaded, dict) and "G_ema" in loaded:
            return _from_ada(loaded["G_ema"], path)
        if isinstance(loaded, PersistentObject):
            return _from_ada(loaded, path)
        if isinstance(loaded, tuple) and len(loaded) == 3 and all(isinstance(n, TFNetwork) for n in loaded):
            return _from_tf(loaded[2], path)  # (G, D, Gs): Gs is the moving average
        if isinstance(loaded, TFNetwork):
            return _from_tf(loaded, path)
    except ConfigError:
        raise
    except (RecursionError, IndexError, ValueError, TypeError, AttributeError, KeyError) as err:
        raise ConfigError(
            f"'{path}' holds a malformed StyleGAN2 network: {type(err).__name__}: {one_line(err)}"
        ) from None
    raise ConfigError(
        f"'{path}' is a pickle but not a StyleGAN2 generator (a TF (G, D, Gs) tuple or a dict with G_ema)"
    )


def save_native(path: str, model: StyleGAN2) -> None:
    state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    save_torch(path, {"format": FORMAT, "arch": model.weight_arch, "state_dict": state})


def _read_native(file: Path) -> tuple[Mapping[str, Any], dict[str, Tensor]]:
    try:
        payload = torch.load(file, map_location="cpu", weights_only=True)
    except Exception as err:  # noqa: BLE001 - any unreadable file is a user error
        raise ConfigError(f"'{file}' is not a readable checkpoint: {one_line(err)}") from None
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise ConfigError(f"'{file}' is a torch file but not a StyleGAN2 checkpoint of format '{FORMAT}'")
    arch, state = payload.get("arch"), payload.get("state_dict")
    if not isinstance(arch, dict) or set(arch) != set(ARCH_KEYS) or not isinstance(state, dict):
        raise ConfigError(f"'{file}' lacks its architecture ({', '.join(ARCH_KEYS)}) or its state_dict")
    return arch, state


def _from_ada(generator: Any, path: str) -> tuple[Mapping[str, Any], dict[str, Tensor]]:
    if not isinstance(generator, PersistentObject):
        raise ConfigError(f"'{path}': G_ema is not a pickled stylegan2-ada-pytorch module")
    init = dict(generator.state.get("_init_kwargs") or {})
    if int(init.get("c_dim", 0)):
        raise ConfigError(f"'{path}' is a class-conditional StyleGAN2 (c_dim={init['c_dim']}); not supported")
    if int(init.get("img_channels", 3)) != 3:
        raise ConfigError(f"'{path}' makes {init['img_channels']}-channel images; only RGB is supported")
    synthesis_kwargs = dict(init.get("synthesis_kwargs") or {})
    if synthesis_kwargs.get("architecture", "skip") != "skip":
        raise ConfigError(f"'{path}' uses the '{synthesis_kwargs['architecture']}' architecture; only 'skip'")
    tensors, attributes = _flatten_module(generator, "")
    for key in [k for k in tensors if k.endswith("resample_filter")]:
        kernel = tensors.pop(key)
        if kernel.shape != (4, 4) or not torch.allclose(kernel.float(), blur_filter(), atol=1e-6):
            raise ConfigError(f"'{path}': {key} is not the [1, 3, 3, 1] filter this implementation uses")
    mapping_kwargs = dict(init.get("mapping_kwargs") or {})
    lr_mul: Any = attributes.get(  # as pickled: float() below rejects a malformed value
        "mapping.fc0.bias_gain", mapping_kwargs.get("lr_multiplier", CONFIG_F["mapping_lr_mul"])
    )
    clamp = attributes.get("synthesis.b4.conv1.conv_clamp", synthesis_kwargs.get("conv_clamp"))
    return _infer_arch(tensors, float(lr_mul), None if clamp is None else float(clamp), path), tensors


def _flatten_module(node: PersistentObject, prefix: str) -> tuple[dict[str, Tensor], dict[str, Any]]:
    """Dotted-name tensors (parameters and buffers) and plain attributes of a pickled module tree."""
    tensors: dict[str, Tensor] = {}
    attributes: dict[str, Any] = {}
    state = node.state
    for group in ("_parameters", "_buffers"):
        for name, value in dict(state.get(group) or {}).items():
            if value is not None:
                tensors[prefix + name] = torch.as_tensor(value).detach().clone()
    for name, value in state.items():
        if isinstance(value, int | float | str | type(None)) and not name.startswith("_"):
            attributes[prefix + name] = value
    for name, child in dict(state.get("_modules") or {}).items():
        if isinstance(child, PersistentObject):
            more_tensors, more_attributes = _flatten_module(child, f"{prefix}{name}.")
            tensors.update(more_tensors)
            attributes.update(more_attributes)
        elif child is not None:
            raise ConfigError(f"module '{prefix}{name}' in the pickle is not a pickled module")
    return tensors, attributes


def _from_tf(network: TFNetwork, path: str) -> tuple[Mapping[str, Any], dict[str, Tensor]]:
    kwargs = network.static_kwargs()
    if int(kwargs.get("label_size", 0) or 0):
        raise ConfigError(f"'{path}' is a class-conditional StyleGAN2 (label_size={kwargs['label_size']})")
    if kwargs.get("architecture", "skip") != "skip":
        raise ConfigError(
            f"'{path}' uses the '{kwargs['architecture']}' architecture; only 'skip' is supported"
        )
    tf = network.variables()
    used: set[str] = {"lod"}  # G's level-of-detail scalar: unused by StyleGAN2

    def take(name: str) -> np.ndarray:
        if name not in tf:
            raise ConfigError(f"'{path}' lacks the TensorFlow variable '{name}'")
        used.add(name)
        return np.asarray(tf[name], dtype=np.float32)

    state: dict[str, np.ndarray] = {"mapping.w_avg": take("dlatent_avg")}
    layers = sorted(int(m.group(1)) for k in tf if (m := re.fullmatch(r"mapping/Dense(\d+)/weight", k)))
    for i in layers:
        state[f"mapping.fc{i}.weight"] = take(f"mapping/Dense{i}/weight").T
        state[f"mapping.fc{i}.bias"] = take(f"mapping/Dense{i}/bias")
    sizes = sorted(int(m.group(1)) for k in tf if (m := re.fullmatch(r"synthesis/(\d+)x\1/ToRGB/weight", k)))

    def modulated(ours: str, theirs: str, flip: bool = False) -> None:
        kernel = take(f"{theirs}/weight")
        if flip:
            kernel = kernel[::-1, ::-1]
        state[f"{ours}.weight"] = kernel.transpose(3, 2, 0, 1)
        state[f"{ours}.bias"] = take(f"{theirs}/bias")
        state[f"{ours}.affine.weight"] = take(f"{theirs}/mod_weight").T
        state[f"{ours}.affine.bias"] = take(f"{theirs}/mod_bias") + 1

    for res in sizes:
        log2 = int(math.log2(res))
        block, scope = f"synthesis.b{res}", f"synthesis/{res}x{res}"
        convs = [("conv1", "Conv", -4)] if res == 4 else [("conv0", "Conv0_up", -5), ("conv1", "Conv1", -4)]
        if res == 4:
            state[f"{block}.const"] = take(f"{scope}/Const/const")[0]
        for ours, theirs, noise_offset in convs:
            modulated(f"{block}.{ours}", f"{scope}/{theirs}", flip=theirs == "Conv0_up")
            state[f"{block}.{ours}.noise_strength"] = take(f"{scope}/{theirs}/noise_strength")
            state[f"{block}.{ours}.noise_const"] = take(f"synthesis/noise{2 * log2 + noise_offset}")[0, 0]
        modulated(f"{block}.torgb", f"{scope}/ToRGB")
    unused = sorted(set(tf) - used)
    if unused:
        raise ConfigError(f"'{path}' has TensorFlow variables this StyleGAN2 does not use: {unused[:4]}")
    tensors = {k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in state.items()}
    lr_mul = float(kwargs.get("mapping_lrmul", CONFIG_F["mapping_lr_mul"]))
    return _infer_arch(tensors, lr_mul, None, path), tensors


def _infer_arch(
    state: dict[str, Tensor], lr_mul: float, conv_clamp: float | None, path: str
) -> StyleGAN2Arch:
    """``ARCH_KEYS`` from tensor shapes (plus the two settings shapes cannot show)."""
    try:
        layers = sum(1 for k in state if re.fullmatch(r"mapping\.fc\d+\.weight", k))
        channels = {
            int(m.group(1)): int(v.shape[0])
            for k, v in state.items()
            if (m := re.fullmatch(r"synthesis\.b(\d+)\.conv1\.weight", k))
        }
        z_dim, w_dim = int(state["mapping.fc0.weight"].shape[1]), int(state["mapping.w_avg"].shape[0])
    except (KeyError, IndexError):
        raise ConfigError(
            f"'{path}' does not hold a StyleGAN2 generator (mapping.fc0 / w_avg missing)"
        ) from None
    resolution = max(channels, default=0)
    if resolution < 8 or sorted(channels) != [2**i for i in range(2, int(math.log2(resolution)) + 1)]:
        raise ConfigError(f"'{path}': synthesis blocks at {sorted(channels)} px are not 4, 8, ..., 2^k")
    channel_max = max(channels.values())
    below_max = [res for res in sorted(channels) if channels[res] < channel_max]
    channel_base = channels[below_max[0]] * below_max[0] if below_max else channel_max * resolution
    if any(channels_at(r, channel_base, channel_max) != c for r, c in channels.items()):
        raise ConfigError(f"'{path}': channels {channels} do not follow min(channel_base / res, channel_max)")
    return {
        "z_dim": z_dim,
        "w_dim": w_dim,
        "img_resolution": resolution,
        "mapping_layers": layers,
        "channel_base": channel_base,
        "channel_max": channel_max,
        "mapping_lr_mul": lr_mul,
        "conv_clamp": conv_clamp,
    }
