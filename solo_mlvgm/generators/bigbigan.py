"""BigBiGAN's generator (Donahue & Simonyan, 2019) in the BigGAN-PyTorch layout of ``BigBiGAN_x1.pth``.

Written from the checkpoint format: module names and tensor shapes match the official file's 166 keys,
which load strictly. The 120-d z is six levels of 20: level 0 feeds the first linear layer (4x4x16ch),
level i (1..5) conditions both batch norms of up-block i-1, concatenated after the shared class embedding
(of class 0: the converted file repeats BigBiGAN's single embedding for every class). Eval semantics
always: batch norms use the stored statistics, spectral norms one power-iteration step from the stored
``u0`` (folded into the weights once). Output is mapped from tanh's [-1, 1] to [0, 1].

The official file: ``BigBiGAN_x1.pth`` (BigBiGAN ResNet-50 from TF-Hub converted to BigGAN-PyTorch by the
authors of "BigGANs are watching", as used by pytorch-pretrained-gans); download it yourself.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any, cast

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from solo_mlvgm.errors import ConfigError
from solo_mlvgm.generators.base import LatentLevel, MultiLatentGenerator, one_line
from solo_mlvgm.generators.registry import register_generator
from solo_mlvgm.generators.spectral import SNConv2d, SNLinear, SpectralNormed

CHECKPOINT_NAME = "BigBiGAN_x1.pth"
CHECKPOINT_SOURCE = (
    "the BigBiGAN_x1.pth release of pytorch-pretrained-gans (github.com/lukemelas/pytorch-pretrained-gans), "
    "converted from TF-Hub's bigbigan-resnet50"
)
BN_EPS, OUTPUT_BN_EPS = 1e-4, 1e-5
BOTTOM = 4
N_CLASSES = 1000


def channel_plan(ch: int, resolution: int) -> tuple[list[int], list[int]]:
    """(in, out) channels of the up-blocks for a resolution, as in BigGAN's 128/256/512 architectures."""
    plans = {
        32: ([4, 4, 4], [4, 4, 4]),
        64: ([16, 16, 8, 4], [16, 8, 4, 2]),
        128: ([16, 16, 8, 4, 2], [16, 8, 4, 2, 1]),
        256: ([16, 16, 8, 8, 4, 2], [16, 8, 8, 4, 2, 1]),
        512: ([16, 16, 8, 8, 4, 2, 1], [16, 8, 8, 4, 2, 1, 1]),
    }
    if resolution not in plans:
        raise ConfigError(f"bigbigan resolution must be one of {sorted(plans)}, got {resolution}")
    ins, outs = plans[resolution]
    return [ch * m for m in ins], [ch * m for m in outs]


class StoredBatchNorm(nn.Module):
    """Batch norm with the stored statistics (``stored_mean``/``stored_var``) and a learned gain and bias."""

    stored_mean: Tensor
    stored_var: Tensor

    def __init__(self, channels: int, eps: float = OUTPUT_BN_EPS) -> None:
        super().__init__()
        self.gain = nn.Parameter(torch.ones(channels))
        self.bias = nn.Parameter(torch.zeros(channels))
        self.register_buffer("stored_mean", torch.zeros(channels))
        self.register_buffer("stored_var", torch.ones(channels))
        self.eps = eps

    def forward(self, x: Tensor) -> Tensor:
        return F.batch_norm(x, self.stored_mean, self.stored_var, self.gain, self.bias, False, 0.0, self.eps)


class ConditionalBatchNorm(nn.Module):
    """``norm(x) * (1 + gain(y)) + bias(y)``; ``gain``/``bias`` are bias-free SN linears of the condition."""

    stored_mean: Tensor
    stored_var: Tensor

    def __init__(self, channels: int, cond_dim: int) -> None:
        super().__init__()
        self.register_buffer("stored_mean", torch.zeros(channels))
        self.register_buffer("stored_var", torch.ones(channels))
        self.gain = SNLinear(cond_dim, channels, bias=False)
        self.bias = SNLinear(cond_dim, channels, bias=False)

    def forward(self, x: Tensor, y: Tensor) -> Tensor:
        out = F.batch_norm(x, self.stored_mean, self.stored_var, None, None, False, 0.0, BN_EPS)
        return out * (1 + self.gain(y))[:, :, None, None] + self.bias(y)[:, :, None, None]


class UpBlock(nn.Module):
    """BigGAN's residual up-block: BN-ReLU-up-conv3-BN-ReLU-conv3, plus up-conv1 on the shortcut."""

    def __init__(self, c_in: int, c_out: int, cond_dim: int) -> None:
        super().__init__()
        self.conv1 = SNConv2d(c_in, c_out, 3)
        self.conv2 = SNConv2d(c_out, c_out, 3)
        self.conv_sc = SNConv2d(c_in, c_out, 1)
        self.bn1 = ConditionalBatchNorm(c_in, cond_dim)
        self.bn2 = ConditionalBatchNorm(c_out, cond_dim)

    def forward(self, x: Tensor, y: Tensor) -> Tensor:
        h = F.interpolate(F.relu(self.bn1(x, y)), scale_factor=2, mode="nearest")
        h = self.conv2(F.relu(self.bn2(self.conv1(h), y)))
        return h + self.conv_sc(F.interpolate(x, scale_factor=2, mode="nearest"))


class SelfAttention(nn.Module):
    """SAGAN self-attention: 1x1 theta/phi (C/8) and g (C/2), 2x2 max-pooled keys, output scaled by gamma."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.gamma = nn.Parameter(torch.tensor(0.0))
        self.theta = SNConv2d(channels, channels // 8, 1, bias=False)
        self.phi = SNConv2d(channels, channels // 8, 1, bias=False)
        self.g = SNConv2d(channels, channels // 2, 1, bias=False)
        self.o = SNConv2d(channels // 2, channels, 1, bias=False)

    def forward(self, x: Tensor) -> Tensor:
        b, c, h, w = x.shape
        theta = self.theta(x).flatten(2)  # [b, c/8, hw]
        phi = F.max_pool2d(self.phi(x), 2).flatten(2)  # [b, c/8, hw/4]
        g = F.max_pool2d(self.g(x), 2).flatten(2)  # [b, c/2, hw/4]
        attention = torch.softmax(theta.transpose(1, 2) @ phi, dim=-1)  # [b, hw, hw/4]
        out = (g @ attention.transpose(1, 2)).view(b, c // 2, h, w)
        return self.gamma * self.o(out) + x


@register_generator("bigbigan")
class BigBiGAN(MultiLatentGenerator):
    """BigBiGAN generator; levels ``z0`` (the 4x4 start) to ``z5`` (the last up-block)."""

    checkpoint_hint = f"{CHECKPOINT_NAME}, from {CHECKPOINT_SOURCE}"

    def __init__(
        self,
        ch: int | None = None,
        dim_z: int | None = None,
        shared_dim: int | None = None,
        resolution: int = 128,
        attention_resolution: int | None = 64,
        truncation: float = 2.0,
    ) -> None:
        """``ch``, ``dim_z``, ``shared_dim``: None means the official 96, 120, 128 (a checkpoint sets them)."""
        super().__init__(truncation=truncation)
        ch = 96 if ch is None else ch
        dim_z = 120 if dim_z is None else dim_z
        shared_dim = 128 if shared_dim is None else shared_dim
        ins, outs = channel_plan(ch, resolution)
        n_levels = len(ins) + 1
        if ch < 1 or dim_z <= 0 or dim_z % n_levels or shared_dim <= 0:
            raise ConfigError(
                f"bigbigan needs ch >= 1, shared_dim > 0 and dim_z a positive multiple of {n_levels} levels; "
                f"got ch={ch}, dim_z={dim_z}, shared_dim={shared_dim}"
            )
        block_res = [BOTTOM * 2 ** (i + 1) for i in range(len(ins))]
        if attention_resolution is not None and attention_resolution not in block_res:
            raise ConfigError(
                f"attention_resolution must be one of {block_res} (or null), got {attention_resolution}"
            )
        if attention_resolution is not None and outs[block_res.index(attention_resolution)] < 8:
            raise ConfigError(f"attention at {attention_resolution} px needs >= 8 channels there; raise ch")
        self.level_dim = dim_z // n_levels
        self.arch = {
            "name": "bigbigan",
            "ch": ch,
            "dim_z": dim_z,
            "shared_dim": shared_dim,
            "resolution": resolution,
            "attention_resolution": attention_resolution,
        }
        self.resolution, self.base_dim = resolution, dim_z
        self.levels = tuple(LatentLevel(f"z{i}", (self.level_dim,)) for i in range(n_levels))
        self.groups = {"all": tuple(range(n_levels))}
        self.shared = nn.Embedding(N_CLASSES, shared_dim)
        self.linear = SNLinear(self.level_dim, ins[0] * BOTTOM * BOTTOM)
        cond_dim = shared_dim + self.level_dim
        self.blocks = nn.ModuleList()
        for c_in, c_out, res in zip(ins, outs, block_res, strict=True):
            stage: list[nn.Module] = [UpBlock(c_in, c_out, cond_dim)]
            if res == attention_resolution:
                stage.append(SelfAttention(c_out))
            self.blocks.append(nn.ModuleList(stage))
        self.output_layer = nn.Sequential(StoredBatchNorm(outs[-1]), nn.ReLU(), SNConv2d(outs[-1], 3, 3))
        self.fold_spectral_norms()

    # ------------------------------------------------------------ latents
    def level_coords(self, index: int) -> range:
        return range(index * self.level_dim, (index + 1) * self.level_dim)

    def to_levels(self, base: Tensor) -> list[Tensor]:
        return list(base.split(self.level_dim, dim=1))

    # ------------------------------------------------------------- render
    def _embedding(self, n: int) -> Tensor:
        """The shared embedding of class 0 (every class holds BigBiGAN's one embedding in the file)."""
        return self.shared.weight[:1].expand(n, -1)

    def stem(self, z0: Tensor) -> Tensor:
        """The 4x4 feature map of level 0 (before any up-block)."""
        return self.linear(z0).view(z0.shape[0], -1, BOTTOM, BOTTOM)

    def run_blocks(
        self, h: Tensor, levels: Sequence[Tensor], start: int = 0, stop: int | None = None
    ) -> Tensor:
        """Up-blocks ``start..stop-1`` on ``h``; block i is conditioned on [class embedding, level i+1]."""
        embedding = self._embedding(h.shape[0])
        for i in range(start, len(self.blocks) if stop is None else stop):
            y = torch.cat([embedding, levels[i + 1]], dim=1)
            stage = cast(nn.ModuleList, self.blocks[i])  # ModuleList indexing is typed as a plain Module
            h = stage[0](h, y)
            for extra in stage[1:]:
                h = extra(h)
        return h

    def to_image(self, h: Tensor) -> Tensor:
        """The output layer, mapped from tanh's [-1, 1] to [0, 1]."""
        return (torch.tanh(self.output_layer(h)) + 1) / 2

    def forward(self, levels: Sequence[Tensor]) -> Tensor:
        self.check_levels(levels)
        return self.to_image(self.run_blocks(self.stem(levels[0]), levels))

    def forward_pair(
        self, anchor: Sequence[Tensor], positive: Sequence[Tensor], first_changed: int
    ) -> tuple[Tensor, Tensor]:
        """Levels before ``first_changed`` are shared: the stem and the blocks they alone feed run once."""
        self.check_levels(anchor)
        if first_changed <= 0:
            return super().forward_pair(anchor, positive, first_changed)
        shared_blocks = min(first_changed - 1, len(self.blocks))  # block i reads level i + 1
        h = self.run_blocks(self.stem(anchor[0]), anchor, stop=shared_blocks)
        both = [torch.cat([a, p]) for a, p in zip(anchor, positive, strict=True)]
        h = self.run_blocks(torch.cat([h, h]), both, start=shared_blocks)
        first, second = self.to_image(h).chunk(2)
        return first, second

    # -------------------------------------------------------- checkpoints
    def fold_spectral_norms(self) -> None:
        for module in self.modules():
            if isinstance(module, SpectralNormed):
                module.fold()

    def load_state_dict(self, state_dict, strict: bool = True, assign: bool = False):  # type: ignore[override]
        result = super().load_state_dict(state_dict, strict=strict, assign=assign)
        self.fold_spectral_norms()  # the folded weights follow the loaded tensors
        return result

    @classmethod
    def from_checkpoint(cls, path: str, **arch: Any) -> BigBiGAN:
        """Load a BigGAN-PyTorch state dict strictly; ``ch``/``dim_z``/``shared_dim`` come from its shapes."""
        file = Path(path)
        if not file.is_file():
            raise ConfigError(
                f"BigBiGAN checkpoint '{path}' not found: download {CHECKPOINT_NAME} from {CHECKPOINT_SOURCE}"
            )
        try:
            state = torch.load(file, map_location="cpu", weights_only=True)
        except Exception as err:  # noqa: BLE001 - any unreadable file is a user error
            raise ConfigError(
                f"'{path}' is not a readable state dict ({CHECKPOINT_NAME} format): {one_line(err)}"
            ) from None
        if not isinstance(state, dict) or "linear.weight" not in state or "shared.weight" not in state:
            raise ConfigError(f"'{path}' is not a BigGAN-PyTorch generator state dict like {CHECKPOINT_NAME}")
        return cls.from_state(path, state, infer_arch(state), arch)


def infer_arch(state: dict[str, Tensor]) -> dict[str, int | None]:
    """``ch``, ``dim_z``, ``shared_dim``, ``resolution`` and ``attention_resolution`` from tensor shapes."""
    n_blocks = len(
        {k.split(".")[1] for k in state if k.startswith("blocks.") and k.endswith(".0.conv1.weight")}
    )
    resolution = BOTTOM * 2**n_blocks
    attention = [i for i in range(n_blocks) if f"blocks.{i}.1.gamma" in state]
    return {
        "ch": int(state["output_layer.2.weight"].shape[1]),
        "dim_z": int(state["linear.weight"].shape[1]) * (n_blocks + 1),
        "shared_dim": int(state["shared.weight"].shape[1]),
        "resolution": resolution,
        "attention_resolution": BOTTOM * 2 ** (attention[0] + 1) if attention else None,
    }
