"""mi_quant: how much one latent level matters, measured as the perturbation that costs gamma nats of MI.

For a level (or group) i of a frozen generator g, a walker p_i (T_i(z) = z + p_i(z), the identity at
start) and an encoder f (backbone + projection head) play

    max over p_i, min over f of InfoNCE( f(g(z)), f(g(z with level i replaced by T_i(z_i))) )

with gradients flowing through the frozen generator into the walker (paper, Eq. 5). One backward pass
serves both players: the walker's gradients are negated before its step (gradient ascent). Negatives are
gathered across ranks (lightly's NTXentLoss), so the loss scale does not depend on the number of GPUs; the
temperature and a loss scale (the official code reports InfoNCE x temperature / 0.07) are config values.

Encoder modes (``method_kwargs.encoder_mode``):

- ``adversarial`` (the paper): the encoder keeps training against the walker.
- ``frozen``: the encoder is trained on identical views during the warm-up, then frozen, so it becomes a
  fixed ruler of image change and only the walker moves.

In both modes the walker stays still for ``encoder_warmup_steps`` while the encoder learns to match views.
The generator is held outside the module's children: it is never saved, never converted, never trained.
"""

from __future__ import annotations

from typing import Any, ClassVar

import lightning.pytorch as pl
import torch
import torch.nn.functional as F
from lightly.loss import NTXentLoss
from lightly.models.modules import SimCLRProjectionHead
from omegaconf import DictConfig
from torch import Tensor

from solo_mlvgm.data.seeding import stream_seed
from solo_mlvgm.errors import ConfigError
from solo_mlvgm.generators.base import MultiLatentGenerator
from solo_mlvgm.methods.backbones import BACKBONES, build_backbone
from solo_mlvgm.methods.base import fill_method_kwargs
from solo_mlvgm.quantify.stop import GammaStop
from solo_mlvgm.views.pairs import latent_pair, render_pair
from solo_mlvgm.views.pixel import normalize
from solo_mlvgm.views.walker import Walker

ENCODER_MODES = ("adversarial", "frozen")


class MIQuant(pl.LightningModule):
    """Walker-vs-encoder InfoNCE game for one level; stops itself when the loss reaches gamma."""

    defaults: ClassVar[dict[str, Any]] = {
        "encoder_mode": "adversarial",
        "encoder_warmup_steps": 100,  # as mi_quant.yaml: the walker waits while the encoder learns
        "proj_hidden_dim": 128,
        "proj_output_dim": 64,
        "temperature": 0.1,  # official: 0.1
        "loss_scale": 1.0,  # official reports x 0.1 / 0.07 = 1.43 (SupCon's base temperature)
        "walker_hidden_dim": None,  # None: the level's dimension, as the official walker
        "gamma": 1.0,
        "tolerance": 0.05,
        "smoothing": 3,
        "input_size": None,  # resize generated images for the encoder (e.g. 112 for 128 px generators)
    }

    def __init__(
        self, cfg: DictConfig, generator: MultiLatentGenerator, indices: tuple[int, ...], name: str = ""
    ) -> None:
        super().__init__()
        kw = cfg.method_kwargs
        self.cfg, self.indices = cfg, tuple(int(i) for i in indices)
        self.level_name = name or "+".join(generator.levels[i].name for i in self.indices)
        self._generator = (generator.freeze(),)  # a tuple, so not a child module: never saved or moved by DDP
        self.walker = Walker(len(generator.coords_of(self.indices)), kw.walker_hidden_dim)
        # Settings read every step, as plain values.
        self.warmup_steps = int(kw.encoder_warmup_steps)
        self.adversarial = kw.encoder_mode == "adversarial"
        self.batch_size, self.seed = int(cfg.optimizer.batch_size), int(cfg.seed)
        self.input_size = int(kw.input_size) if kw.input_size else None
        self.loss_scale = float(kw.loss_scale)
        self.print_every = int(cfg.get("log_every_n_steps", 0))
        self.encoder, feature_dim = build_backbone(cfg.backbone.name, bool(cfg.backbone.small_image_stem))
        self.encoder.to(memory_format=torch.channels_last)
        self.projector = SimCLRProjectionHead(feature_dim, kw.proj_hidden_dim, kw.proj_output_dim)
        self.criterion = NTXentLoss(temperature=float(kw.temperature), gather_distributed=True)
        self.stop = GammaStop(float(kw.gamma), float(kw.tolerance), int(kw.smoothing))
        self.history: list[dict[str, float]] = []
        self.automatic_optimization = False

    # -------------------------------------------------------------- config
    @classmethod
    def validate_cfg(cls, cfg: DictConfig) -> DictConfig:
        """Fill ``method_kwargs`` defaults and check every value before any work starts."""
        fill_method_kwargs(cfg, cls.defaults)
        kw = cfg.method_kwargs
        if kw.encoder_mode not in ENCODER_MODES:
            raise ConfigError(
                f"method_kwargs.encoder_mode must be one of {ENCODER_MODES}, got '{kw.encoder_mode}'"
            )
        for key in ("proj_hidden_dim", "proj_output_dim", "temperature", "loss_scale"):
            if not float(kw[key]) > 0:
                raise ConfigError(f"method_kwargs.{key} must be > 0, got {kw[key]}")
        for key in ("input_size", "walker_hidden_dim"):
            if kw[key] is not None and int(kw[key]) <= 0:
                raise ConfigError(f"method_kwargs.{key} must be > 0 or null, got {kw[key]}")
        if int(kw.encoder_warmup_steps) < 0:
            raise ConfigError(
                f"method_kwargs.encoder_warmup_steps must be >= 0, got {kw.encoder_warmup_steps}"
            )
        GammaStop(float(kw.gamma), float(kw.tolerance), int(kw.smoothing))  # checks the stop settings
        opt = cfg.optimizer
        for key in ("batch_size", "encoder_lr", "walker_lr"):
            if not float(opt[key]) > 0:
                raise ConfigError(f"optimizer.{key} must be > 0, got {opt[key]}")
        betas = list(opt.betas)
        if len(betas) != 2 or not all(0 <= b < 1 for b in betas):
            raise ConfigError(f"optimizer.betas must be two numbers in [0, 1), got {betas}")
        if int(cfg.max_steps) <= int(kw.encoder_warmup_steps):
            raise ConfigError(
                f"max_steps ({cfg.max_steps}) must exceed method_kwargs.encoder_warmup_steps ({kw.encoder_warmup_steps})"
            )
        if cfg.backbone.name not in BACKBONES:
            raise ConfigError(f"unknown backbone '{cfg.backbone.name}'; known: {', '.join(BACKBONES)}")
        return cfg

    # ------------------------------------------------------------ training
    @property
    def generator(self) -> MultiLatentGenerator:
        return self._generator[0]

    def on_fit_start(self) -> None:
        self.generator.to(self.device)

    def walker_moves(self, step: int) -> bool:
        return step >= self.warmup_steps

    def encoder_trains(self, step: int) -> bool:
        return self.adversarial or not self.walker_moves(step)

    def views(self, base: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """(anchor images, positive images, walker output p(z_i)) for base latents; differentiable in p."""
        pair = latent_pair(self.generator, base, [(self.indices, self.walker)])
        anchor, positive = render_pair(self.generator, pair)
        return anchor, positive, pair.deltas[0][1]

    def info_nce(self, anchor: Tensor, positive: Tensor) -> Tensor:
        images = torch.cat([anchor, positive]).float()
        if self.input_size:
            images = F.interpolate(
                images, size=self.input_size, mode="bilinear", antialias=True, align_corners=False
            )
        images = normalize(images).contiguous(memory_format=torch.channels_last)
        e_anchor, e_positive = self.projector(self.encoder(images)).chunk(2)
        return self.loss_scale * self.criterion(e_anchor, e_positive)

    def training_step(self, batch: Tensor, batch_idx: int) -> None:
        step = int(batch)
        optimizers = self.optimizers()
        assert isinstance(optimizers, list)  # configure_optimizers returns two
        encoder_opt, walker_opt = optimizers
        trains_encoder = self.encoder_trains(step)
        if not trains_encoder and self.encoder.training:  # frozen mode: a fixed ruler from now on
            self.encoder.eval().requires_grad_(False)
            self.projector.eval().requires_grad_(False)
        rng = torch.Generator(device=self.device).manual_seed(stream_seed(self.seed, self.global_rank, step))
        base = self.generator.sample_base(self.batch_size, generator=rng)
        moves = self.walker_moves(step)
        # During the warm-up nothing needs gradients through the generator.
        with torch.set_grad_enabled(moves):
            anchor, positive, delta = self.views(base)
        loss = self.info_nce(anchor, positive)

        # Loss and mean |p(z)| averaged over ranks, read with one device sync: every rank takes the same
        # stop decision.
        stats = torch.stack([loss.detach().float(), delta.detach().float().norm(dim=1).mean()])
        gathered = self.all_gather(stats)
        assert isinstance(gathered, Tensor)
        mean_loss, delta_norm = gathered.reshape(-1, 2).mean(dim=0).tolist()
        fired = moves and self.stop.update(step, mean_loss)
        self.history.append(
            {
                "step": step,
                "loss": mean_loss,
                "smoothed": self.stop.smoothed if moves else float("nan"),
                "delta_norm": delta_norm,
                "walker_moves": int(moves),
            }
        )
        if self.print_every and step % self.print_every == 0 and self.global_rank == 0:
            record = self.history[-1]
            print(
                f"    {self.level_name} step {step}: loss {record['loss']:.3f} (smoothed {record['smoothed']:.3f}), "
                f"mean |p(z)| {record['delta_norm']:.3g}",
                flush=True,
            )
        if fired:  # keep the walker that produced this loss: no further step
            self.trainer.should_stop = True
            return

        encoder_opt.zero_grad(set_to_none=True)
        walker_opt.zero_grad(set_to_none=True)
        self.manual_backward(loss)
        if trains_encoder:
            encoder_opt.step()
        if moves:
            for p in self.walker.parameters():
                if p.grad is not None:
                    p.grad.neg_()  # the walker maximises the loss the encoder minimises
            walker_opt.step()

    def configure_optimizers(self) -> list[torch.optim.Optimizer]:
        opt = self.cfg.optimizer
        beta1, beta2 = (float(b) for b in opt.betas)
        betas = (beta1, beta2)
        encoder_params = list(self.encoder.parameters()) + list(self.projector.parameters())
        return [
            torch.optim.Adam(encoder_params, lr=float(opt.encoder_lr), betas=betas),
            torch.optim.Adam(self.walker.parameters(), lr=float(opt.walker_lr), betas=betas),
        ]
