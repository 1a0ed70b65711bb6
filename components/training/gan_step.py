"""One D update and one G update of the GAN game, with every knob of `train`: objective, label
smoothing, regularisers (spectral norm is built into D), PacGAN packing, instance noise, EMA."""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from components.config import TrainConfig
from components.models import pack_batch
from components.objectives import OBJECTIVES
from components.objectives.regularizers import clip_weights, gradient_penalty, r1_penalty
from components.training.ema import EMA

Tensor = torch.Tensor
STATS = ("d_loss", "g_loss", "d_real", "d_fake", "d_penalty")


def instance_noise_std(cfg: TrainConfig, step: int, total_steps: int) -> float:
    """Instance noise (Sønderby et al. 2017) decays linearly from train.instance_noise to 0 at the end."""
    return cfg.instance_noise * max(0.0, 1.0 - step / total_steps)


@dataclass
class GanGame:
    g: nn.Module  # possibly DDP-wrapped
    d: nn.Module  # possibly DDP-wrapped
    opt_g: torch.optim.Optimizer
    opt_d: torch.optim.Optimizer
    cfg: TrainConfig
    ema: EMA | None = None

    def __post_init__(self) -> None:
        self.objective = OBJECTIVES.get(self.cfg.objective)
        self.d_local = getattr(self.d, "module", self.d)  # G step: no D gradient all-reduce needed

    def _judge(self, d: nn.Module, x: Tensor, noise_std: float, rng: torch.Generator,
               input_grad: bool = False) -> tuple[Tensor, Tensor]:
        """D's outputs on x after instance noise and packing, and D's actual (packed) input."""
        if noise_std > 0:
            x = x + noise_std * torch.randn(x.shape, generator=rng).to(x.device)
        x = pack_batch(x, self.cfg.pack)
        if input_grad:  # R1 differentiates D's output with respect to its input
            x = x.detach().requires_grad_(True)
        return d(x), x

    def d_step(self, real: Tensor, fake: Tensor, noise_std: float, rng: torch.Generator) -> Tensor:
        """One D update on a real batch and a (detached) fake batch; returns [d_loss, d_real, d_fake, penalty]."""
        cfg = self.cfg
        # Real and fake in separate forwards, so D's BatchNorm never mixes their statistics (mixed
        # batches let D tell them apart by batch statistics and starve G). Safe under DDP because
        # buffers are not synced in forward (forward_sync_buffers=False).
        out_real, seen_real = self._judge(self.d, real, noise_std, rng, input_grad=bool(cfg.r1))
        out_fake, seen_fake = self._judge(self.d, fake.detach(), noise_std, rng)
        loss = self.objective.discriminator_loss(out_real, out_fake, cfg.label_smoothing)
        penalty = torch.zeros((), device=loss.device)
        if cfg.gradient_penalty:
            penalty = penalty + gradient_penalty(self.d, seen_real, seen_fake, cfg.gradient_penalty, rng)
        if cfg.r1:
            penalty = penalty + r1_penalty(out_real, seen_real, cfg.r1)
        self.opt_d.zero_grad(set_to_none=True)
        (loss + penalty).backward()
        self.opt_d.step()
        if cfg.weight_clip is not None:
            clip_weights(self.d_local, cfg.weight_clip)
        belief = self.objective.belief
        return torch.stack([loss.detach(), belief(out_real.detach()).mean(), belief(out_fake.detach()).mean(),
                            penalty.detach()])

    def g_step(self, fake: Tensor, noise_std: float, rng: torch.Generator, step: int) -> Tensor:
        """One G update through the current D (its local copy); returns G's loss."""
        out, _ = self._judge(self.d_local, fake, noise_std, rng)
        loss = self.objective.g_loss(out)
        self.opt_g.zero_grad(set_to_none=True)
        loss.backward()
        self.opt_g.step()
        if self.ema is not None:
            self.ema.update(self.g, step)
        return loss.detach()

    @property
    def sampler(self) -> nn.Module:
        """What samples, exports and evaluation use: the EMA generator when on."""
        return self.ema.model if self.ema is not None else getattr(self.g, "module", self.g)
