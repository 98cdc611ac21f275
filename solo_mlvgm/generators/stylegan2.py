"""StyleGAN2 (Karras et al., 2020) as a multi-latent generator; config-f by default.

Written from the paper and the checkpoint formats (never from NVIDIA's code). Module and tensor names follow
the stylegan2-ada-pytorch layout of ``G_ema`` (``mapping.fc{i}``, ``synthesis.b{res}.conv0/conv1/torgb``),
so its weights load by name; ``stylegan2_checkpoints`` also reads the TensorFlow pickles and our own file.

- Mapping: z is normalised by its second moment, then ``mapping_layers`` equalised-lr dense layers with
  leaky ReLU (lr multiplier 0.01). ``w_avg`` is the tracked mean of w; truncation ``w_avg + psi (w - w_avg)``
  on the first ``truncation_cutoff`` w's.
- Synthesis: a learned 4x4 constant; per resolution an up-sampling modulated 3x3 conv and a modulated 3x3 conv
  (weights demodulated per sample), each followed by per-pixel noise (``noise_mode`` const: the stored noise
  maps, so rendering is deterministic), a bias, leaky ReLU x sqrt(2) and an optional clamp; a modulated 1x1
  ToRGB per resolution summed into the up-sampled RGB image ("skip" architecture). Up-sampling is a
  transposed stride-2 convolution followed by the [1, 3, 3, 1] blur.
- Levels: the ``num_ws = 2 log2(res) - 2`` w's (16 at 512 px), one level each; ``w0`` feeds the 4x4 conv,
  block ``b(2^(k+2))`` reads ``w(2k-1)..w(2k+1)``. Groups (default 4 equal ones, ``ws0_4`` ... ``ws12_16``)
  are what views and the MI method address: perturbing a group perturbs z, maps it again and replaces only
  that group's w's. The base latent is z (anchors N^t(0, 1, 0.9) by default).
- Options of the wrapper (off by default): ``center_crop`` then ``resize`` (antialiased bilinear), e.g. LSUN
  Cars' letter-boxed 512x512 output cropped to the central 384 and resized to 128 px.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any, TypedDict

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from solo_mlvgm.errors import ConfigError
from solo_mlvgm.generators.base import LatentLevel, MultiLatentGenerator
from solo_mlvgm.generators.registry import register_generator

LRELU_SLOPE = 0.2
LRELU_GAIN = math.sqrt(2.0)
NOISE_MODES = ("const", "random", "none")
# Settings that define the weights (and how they are applied); a checkpoint records them.
ARCH_KEYS = (
    "z_dim",
    "w_dim",
    "img_resolution",
    "mapping_layers",
    "channel_base",
    "channel_max",
    "mapping_lr_mul",
    "conv_clamp",
)


class StyleGAN2Arch(TypedDict):
    """The ``ARCH_KEYS`` settings, typed: what a checkpoint records and the networks are built from."""

    z_dim: int
    w_dim: int
    img_resolution: int
    mapping_layers: int
    channel_base: int
    channel_max: int
    mapping_lr_mul: float
    conv_clamp: float | None


CONFIG_F: StyleGAN2Arch = {
    "z_dim": 512,
    "w_dim": 512,
    "img_resolution": 512,
    "mapping_layers": 8,
    "channel_base": 32768,
    "channel_max": 512,
    "mapping_lr_mul": 0.01,
    "conv_clamp": None,
}


def channels_at(resolution: int, channel_base: int, channel_max: int) -> int:
    """Feature maps of the block at ``resolution``: ``min(channel_base // resolution, channel_max)``."""
    return min(channel_base // resolution, channel_max)


def blur_filter(device: torch.device | None = None) -> Tensor:
    """The 4x4 [1, 3, 3, 1] outer-product low-pass filter, normalised to sum 1."""
    taps = torch.tensor([1.0, 3.0, 3.0, 1.0], device=device)
    kernel = taps[:, None] * taps[None, :]
    return kernel / kernel.sum()


def _per_channel(kernel: Tensor, x: Tensor) -> Tensor:
    """The blur as a depthwise weight for ``x``, with gain 4 (up-sampling by 2 leaves 3 of 4 pixels zero)."""
    return (kernel * 4).to(x.dtype).expand(x.shape[1], 1, *kernel.shape)


def upsample2x(x: Tensor, kernel: Tensor) -> Tensor:
    """Zero-insertion up-sampling by 2 followed by the blur, as one depthwise transposed conv."""
    return F.conv_transpose2d(x, _per_channel(kernel, x), stride=2, padding=1, groups=x.shape[1])


def modulated_conv2d(
    x: Tensor,
    weight: Tensor,
    styles: Tensor,
    demodulate: bool = True,
    up: bool = False,
    kernel: Tensor | None = None,
) -> Tensor:
    """Per-sample modulated (and demodulated) convolution, computed without per-sample weights.

    Equal to convolving sample n with ``weight * styles[n]`` (per input channel), rescaled per output
    channel to unit norm when ``demodulate``: scaling the input, one shared convolution and scaling the
    output is the same linear map and lets cuDNN and channels_last do the work. With ``up`` the convolution
    is transposed with stride 2 and followed by the blur (``kernel``).

    With demodulation the convolution runs on unit-range styles and a 1/sqrt(fan-in) weight and the output
    scale puts both back, so activations stay small enough for fp16 (demodulation makes the result the same).
    """
    out_scale = None
    if demodulate:
        exact = torch.promote_types(weight.dtype, torch.float32)
        with torch.autocast(x.device.type, enabled=False):  # the norms in fp32 (at least) under autocast
            styles, weight = styles.to(exact), weight.to(exact)
            norms = styles.square() @ weight.square().sum(dim=(2, 3)).t()  # [n, out]
            peak = styles.abs().amax(dim=1, keepdim=True).clamp_min(1e-8)  # [n, 1]
            gain = weight[0].numel() ** -0.5
            out_scale = (norms + 1e-8).rsqrt() * peak / gain
            styles, weight = styles / peak, weight * gain
    x = x * styles[:, :, None, None].to(x.dtype)
    if up:
        if kernel is None:
            raise ValueError("up-sampling needs the blur kernel")
        x = F.conv_transpose2d(x, weight.transpose(0, 1).to(x.dtype), stride=2)
        x = F.conv2d(x, _per_channel(kernel, x), padding=1, groups=x.shape[1])
    else:
        x = F.conv2d(x, weight.to(x.dtype), padding=weight.shape[-1] // 2)
    if out_scale is not None:
        x = x * out_scale[:, :, None, None].to(x.dtype)
    return x


class EqualizedLinear(nn.Module):
    """Dense layer with equalised learning rate: weights stored as N(0, 1) / lr_mul, scaled at run time."""

    def __init__(
        self,
        in_features: int,
        out_features: int,
        lr_mul: float = 1.0,
        bias_init: float = 0.0,
        activation: bool = False,
    ) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.randn(out_features, in_features) / lr_mul)
        self.bias = nn.Parameter(torch.full((out_features,), float(bias_init)))
        self.weight_gain = lr_mul / math.sqrt(in_features)
        self.bias_gain = lr_mul
        self.activation = activation

    def forward(self, x: Tensor) -> Tensor:
        x = F.linear(x, self.weight * self.weight_gain, self.bias * self.bias_gain)
        return F.leaky_relu(x, LRELU_SLOPE) * LRELU_GAIN if self.activation else x


class MappingNetwork(nn.Module):
    """z -> w: second-moment normalisation, then ``num_layers`` leaky-ReLU dense layers."""

    w_avg: Tensor  # a buffer (declared so it types as a tensor, not ``Tensor | Module``)

    def __init__(self, z_dim: int, w_dim: int, num_layers: int, lr_mul: float) -> None:
        super().__init__()
        self.num_layers = num_layers
        for i in range(num_layers):
            layer = EqualizedLinear(z_dim if i == 0 else w_dim, w_dim, lr_mul=lr_mul, activation=True)
            setattr(self, f"fc{i}", layer)
        self.register_buffer("w_avg", torch.zeros(w_dim))

    def forward(self, z: Tensor) -> Tensor:
        x = z * (z.square().mean(dim=1, keepdim=True) + 1e-8).rsqrt()
        for i in range(self.num_layers):
            x = getattr(self, f"fc{i}")(x)
        return x


class StyledConv(nn.Module):
    """Modulated 3x3 conv (optionally up-sampling), noise, bias, leaky ReLU x sqrt(2), optional clamp."""

    noise_const: Tensor  # buffers
    kernel: Tensor | None

    def __init__(
        self, c_in: int, c_out: int, w_dim: int, resolution: int, up: bool, conv_clamp: float | None
    ) -> None:
        super().__init__()
        self.affine = EqualizedLinear(w_dim, c_in, bias_init=1.0)
        self.weight = nn.Parameter(torch.randn(c_out, c_in, 3, 3))
        self.bias = nn.Parameter(torch.zeros(c_out))
        self.noise_strength = nn.Parameter(torch.zeros(()))
        self.register_buffer("noise_const", torch.randn(resolution, resolution))
        self.register_buffer("kernel", blur_filter() if up else None, persistent=False)
        self.up, self.conv_clamp = up, conv_clamp

    def forward(self, x: Tensor, w: Tensor, noise_mode: str) -> Tensor:
        x = modulated_conv2d(x, self.weight, self.affine(w), up=self.up, kernel=self.kernel)
        if noise_mode == "const":
            x = x + (self.noise_const * self.noise_strength).to(x.dtype)
        elif noise_mode == "random":
            noise = torch.randn(x.shape[0], 1, *x.shape[2:], device=x.device, dtype=x.dtype)
            x = x + noise * self.noise_strength.to(x.dtype)
        x = F.leaky_relu(x + self.bias.to(x.dtype)[None, :, None, None], LRELU_SLOPE) * LRELU_GAIN
        return x if self.conv_clamp is None else x.clamp(-self.conv_clamp, self.conv_clamp)


class ToRGB(nn.Module):
    """Modulated 1x1 conv to RGB without demodulation (styles scaled by 1/sqrt(fan-in)), plus a bias."""

    def __init__(self, c_in: int, w_dim: int, conv_clamp: float | None) -> None:
        super().__init__()
        self.affine = EqualizedLinear(w_dim, c_in, bias_init=1.0)
        self.weight = nn.Parameter(torch.randn(3, c_in, 1, 1))
        self.bias = nn.Parameter(torch.zeros(3))
        self.weight_gain = 1.0 / math.sqrt(c_in)
        self.conv_clamp = conv_clamp

    def forward(self, x: Tensor, w: Tensor) -> Tensor:
        styles = self.affine(w) * self.weight_gain
        x = (
            modulated_conv2d(x, self.weight, styles, demodulate=False)
            + self.bias.to(x.dtype)[None, :, None, None]
        )
        return x if self.conv_clamp is None else x.clamp(-self.conv_clamp, self.conv_clamp)


class SynthesisBlock(nn.Module):
    """One resolution: (the constant | an up-sampling conv), a conv, and a ToRGB added to the skip image."""

    kernel: Tensor  # a buffer

    def __init__(self, c_in: int, c_out: int, w_dim: int, resolution: int, conv_clamp: float | None) -> None:
        super().__init__()
        self.first = c_in == 0
        if self.first:
            self.const = nn.Parameter(torch.randn(c_out, resolution, resolution))
        else:
            self.conv0 = StyledConv(c_in, c_out, w_dim, resolution, up=True, conv_clamp=conv_clamp)
        self.conv1 = StyledConv(c_out, c_out, w_dim, resolution, up=False, conv_clamp=conv_clamp)
        self.torgb = ToRGB(c_out, w_dim, conv_clamp)
        self.register_buffer("kernel", blur_filter(), persistent=False)

    def forward(
        self, x: Tensor | None, img: Tensor | None, ws: Tensor, noise_mode: str
    ) -> tuple[Tensor, Tensor]:
        if self.first:
            x = self.const.expand(ws.shape[0], -1, -1, -1)
            x = self.conv1(x, ws[:, 0], noise_mode)
        else:
            x = self.conv0(x, ws[:, 0], noise_mode)
            x = self.conv1(x, ws[:, 1], noise_mode)
        rgb = self.torgb(x, ws[:, -1]).float()
        with torch.autocast(rgb.device.type, enabled=False):  # the 3-channel image sums in fp32
            img = rgb if img is None else upsample2x(img, self.kernel) + rgb
        return x, img


class SynthesisNetwork(nn.Module):
    """w's -> image in about [-1, 1]; blocks ``b4`` ... ``b{img_resolution}``."""

    def __init__(
        self,
        w_dim: int,
        img_resolution: int,
        channel_base: int,
        channel_max: int,
        conv_clamp: float | None,
    ) -> None:
        super().__init__()
        self.resolutions = [2**i for i in range(2, int(math.log2(img_resolution)) + 1)]
        previous = 0
        for res in self.resolutions:
            c_out = channels_at(res, channel_base, channel_max)
            setattr(self, f"b{res}", SynthesisBlock(previous, c_out, w_dim, res, conv_clamp))
            previous = c_out
        self.num_ws = 2 * len(self.resolutions)

    def block_inputs(self, index: int) -> range:
        """The w's block ``index`` reads: ``w0, w1`` for b4; ``w(2k-1) .. w(2k+1)`` for block k >= 1."""
        return range(0, 2) if index == 0 else range(2 * index - 1, 2 * index + 2)

    def forward(self, ws: Tensor, noise_mode: str = "const") -> Tensor:
        x = img = None
        for k, res in enumerate(self.resolutions):
            read = self.block_inputs(k)
            x, img = getattr(self, f"b{res}")(x, img, ws[:, read.start : read.stop], noise_mode)
        assert img is not None
        return img


@register_generator("stylegan2")
class StyleGAN2(MultiLatentGenerator):
    """StyleGAN2 generator; levels ``w0`` .. ``w{num_ws-1}``, addressed in groups ``ws{a}_{b}``."""

    checkpoint_hint = (
        "a StyleGAN2 pickle: NVIDIA's TensorFlow release (e.g. stylegan2-car-config-f.pkl) or a "
        "stylegan2-ada-pytorch network pickle, or a file written by StyleGAN2.save_checkpoint; "
        "NVIDIA's weights are under a research-only licence: download them yourself"
    )

    def __init__(
        self,
        z_dim: int | None = None,
        w_dim: int | None = None,
        img_resolution: int | None = None,
        mapping_layers: int | None = None,
        channel_base: int | None = None,
        channel_max: int | None = None,
        mapping_lr_mul: float | None = None,
        conv_clamp: float | None = None,
        truncation_psi: float = 1.0,
        truncation_cutoff: int | None = None,
        noise_mode: str = "const",
        groups: int | Sequence[int] = 4,
        center_crop: int | None = None,
        resize: int | None = None,
        truncation: float = 0.9,
    ) -> None:
        """Architecture arguments left at None take config-f's values (a checkpoint sets them)."""
        super().__init__(truncation=truncation)
        arch: StyleGAN2Arch = {
            "z_dim": CONFIG_F["z_dim"] if z_dim is None else z_dim,
            "w_dim": CONFIG_F["w_dim"] if w_dim is None else w_dim,
            "img_resolution": CONFIG_F["img_resolution"] if img_resolution is None else img_resolution,
            "mapping_layers": CONFIG_F["mapping_layers"] if mapping_layers is None else mapping_layers,
            "channel_base": CONFIG_F["channel_base"] if channel_base is None else channel_base,
            "channel_max": CONFIG_F["channel_max"] if channel_max is None else channel_max,
            "mapping_lr_mul": CONFIG_F["mapping_lr_mul"] if mapping_lr_mul is None else mapping_lr_mul,
            "conv_clamp": CONFIG_F["conv_clamp"] if conv_clamp is None else conv_clamp,
        }
        _check_arch(arch)
        options = {
            "noise_mode": noise_mode,
            "truncation_psi": truncation_psi,
            "truncation_cutoff": truncation_cutoff,
            "center_crop": center_crop,
            "resize": resize,
        }
        _check_options(options)
        self.noise_mode = noise_mode
        self.truncation_psi = float(truncation_psi)
        self.mapping = MappingNetwork(
            arch["z_dim"], arch["w_dim"], arch["mapping_layers"], arch["mapping_lr_mul"]
        )
        self.synthesis = SynthesisNetwork(
            arch["w_dim"],
            arch["img_resolution"],
            arch["channel_base"],
            arch["channel_max"],
            arch["conv_clamp"],
        )
        self.num_ws = self.synthesis.num_ws
        if truncation_cutoff is not None and truncation_cutoff > self.num_ws:
            raise ConfigError(
                f"stylegan2 truncation_cutoff must be at most num_ws={self.num_ws}, got {truncation_cutoff}"
            )
        if center_crop is not None and center_crop > arch["img_resolution"]:
            raise ConfigError(
                f"stylegan2 center_crop must be at most {arch['img_resolution']}, got {center_crop}"
            )
        self.truncation_cutoff, self.center_crop, self.resize = truncation_cutoff, center_crop, resize
        self.levels = tuple(LatentLevel(f"w{i}", (arch["w_dim"],)) for i in range(self.num_ws))
        self.groups = {**_level_groups(groups, self.num_ws), "all": tuple(range(self.num_ws))}
        self.base_dim = arch["z_dim"]
        self.resolution = resize or center_crop or arch["img_resolution"]
        self.arch = {
            "name": "stylegan2",
            **arch,
            "groups": list(groups) if not isinstance(groups, int) else groups,
            **options,
            "truncation_psi": self.truncation_psi,
        }

    @property
    def weight_arch(self) -> dict[str, Any]:
        """The settings a checkpoint records (shapes and how weights are applied)."""
        return {k: self.arch[k] for k in ARCH_KEYS}

    # ------------------------------------------------------------ latents
    def level_coords(self, index: int) -> range:
        return range(self.base_dim)  # every w is mapped from the whole z

    def units(self) -> list[tuple[str, tuple[int, ...]]]:
        return [(name, idx) for name, idx in self.groups.items() if name != "all"]

    def to_levels(self, base: Tensor) -> list[Tensor]:
        """The mapped w's, one per level, truncated towards ``w_avg`` by psi on the first cutoff levels."""
        with torch.autocast(base.device.type, enabled=False):  # 8 small layers: keep the w's in fp32
            w = self.mapping(base.float())
        levels = [w] * self.num_ws
        if self.truncation_psi != 1.0:
            cutoff = self.num_ws if self.truncation_cutoff is None else self.truncation_cutoff
            truncated = self.mapping.w_avg.to(w.dtype).lerp(w, self.truncation_psi)
            levels[:cutoff] = [truncated] * cutoff
        return levels

    # ------------------------------------------------------------- render
    def forward(self, levels: Sequence[Tensor]) -> Tensor:
        self.check_levels(levels)
        img = self.synthesis(torch.stack(list(levels), dim=1), self.noise_mode)
        img = ((img + 1) / 2).clamp(0, 1)
        if self.center_crop is not None:
            top = (img.shape[-2] - self.center_crop) // 2
            left = (img.shape[-1] - self.center_crop) // 2
            img = img[..., top : top + self.center_crop, left : left + self.center_crop]
        if self.resize is not None:
            img = F.interpolate(
                img, size=(self.resize, self.resize), mode="bilinear", align_corners=False, antialias=True
            )
        return img

    # -------------------------------------------------------- checkpoints
    def save_checkpoint(self, path: str) -> None:
        """Our own format: ``{"format", "arch", "state_dict"}``, readable with ``weights_only=True``."""
        from solo_mlvgm.generators.stylegan2_checkpoints import save_native

        save_native(path, self)

    @classmethod
    def from_checkpoint(cls, path: str, **options: Any) -> StyleGAN2:
        """Any of the three formats; architecture settings come from the file (explicit ones must agree)."""
        from solo_mlvgm.generators.stylegan2_checkpoints import read_checkpoint

        _check_options(options)  # now, before reading a file that may be hundreds of MB (again when built)
        arch, state = read_checkpoint(path)
        return cls.from_state(path, state, arch, options)


def _check_options(options: Mapping[str, Any]) -> None:
    """The wrapper's options, as far as they do not depend on the architecture."""
    if options.get("noise_mode", "const") not in NOISE_MODES:
        raise ConfigError(
            f"stylegan2 noise_mode must be one of {list(NOISE_MODES)}, got '{options['noise_mode']}'"
        )
    psi = options.get("truncation_psi", 1.0)
    if not isinstance(psi, int | float) or not math.isfinite(psi):
        raise ConfigError(f"stylegan2 truncation_psi must be a finite number, got {psi!r}")
    for key in ("center_crop", "resize", "truncation_cutoff"):
        value = options.get(key)
        if value is not None and (not isinstance(value, int) or value < 1):
            raise ConfigError(f"stylegan2 {key} must be a positive integer or null, got {value!r}")


def _check_arch(arch: Mapping[str, Any]) -> None:
    res = arch["img_resolution"]
    if not (isinstance(res, int) and res >= 8 and res & (res - 1) == 0):
        raise ConfigError(f"stylegan2 img_resolution must be a power of 2 >= 8, got {res}")
    for key in ("z_dim", "w_dim", "mapping_layers", "channel_base", "channel_max"):
        if not (isinstance(arch[key], int) and arch[key] >= 1):
            raise ConfigError(f"stylegan2 {key} must be a positive integer, got {arch[key]!r}")
    if channels_at(res, arch["channel_base"], arch["channel_max"]) < 1:
        raise ConfigError(f"stylegan2 channel_base {arch['channel_base']} leaves no channels at {res} px")
    if not isinstance(arch["mapping_lr_mul"], int | float) or not arch["mapping_lr_mul"] > 0:
        raise ConfigError(f"stylegan2 mapping_lr_mul must be > 0, got {arch['mapping_lr_mul']}")
    clamp = arch["conv_clamp"]
    if clamp is not None and (not isinstance(clamp, int | float) or not clamp > 0):
        raise ConfigError(f"stylegan2 conv_clamp must be > 0 or null, got {arch['conv_clamp']}")


def _level_groups(groups: int | Sequence[int], num_ws: int) -> dict[str, tuple[int, ...]]:
    """``groups`` equal groups, or consecutive groups of the given sizes; named ``ws{start}_{stop}``."""
    if isinstance(groups, int):
        if groups < 1 or num_ws % groups:
            raise ConfigError(f"stylegan2 groups={groups} must divide the {num_ws} w's into equal groups")
        sizes = [num_ws // groups] * groups
    else:
        sizes = [int(s) for s in groups]
        if any(s < 1 for s in sizes) or sum(sizes) != num_ws:
            raise ConfigError(f"stylegan2 group sizes {sizes} must be positive and sum to num_ws={num_ws}")
    named, start = {}, 0
    for size in sizes:
        named[f"ws{start}_{start + size}"] = tuple(range(start, start + size))
        start += size
    return named
