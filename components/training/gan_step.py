"""One D update and one G update of the GAN game, with every knob of `train`: objective, label
smoothing, regularisers (spectral norm is built into D), PacGAN packing, instance noise, diffusion-noised
D inputs (components/training/diffusion_d.py), EMA, and the conditioning of class-conditional and
translation discriminators."""
from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Callable, ContextManager

import torch
from torch import nn

from components.config import TrainConfig
from components.models import pack_batch
from components.objectives import OBJECTIVES
from components.objectives.regularizers import clip_weights, gradient_penalty, r1_penalty
from components.training.diffusion_d import DiffusionD, with_level
from components.training.ema import EMA
from components.training.fast import unwrap

Tensor = torch.Tensor
STATS = ("d_loss", "g_loss", "d_real", "d_fake", "d_penalty")


def instance_noise_std(cfg: TrainConfig, step: int, total_steps: int) -> float:
    """Instance noise (Sønderby et al. 2017) decays linearly from train.instance_noise to 0 at the end."""
    return cfg.instance_noise * max(0.0, 1.0 - step / total_steps)


class Adversary:
    """The adversarial terms of train.objective with train's D knobs (smoothing, instance noise, PacGAN,
    gradient penalty, R1, diffusion-noised inputs), for any discriminator: plain, class-conditional, or
    judging translations. `cond` is what D is conditioned on (labels, or the input image), passed as
    d(x, cond). `diffusion`: the task's DiffusionD when train.diffusion_d is on (it checkpoints it)."""

    def __init__(self, cfg: TrainConfig, to_device: Callable[[Tensor], Tensor] | None = None,
                 diffusion: DiffusionD | None = None):
        self.cfg = cfg
        self.r1 = cfg.r1  # per D step: a task with lazy R1 (ddgan) sets γ·interval on its R1 steps, else 0
        self.objective = OBJECTIVES.get(cfg.objective)
        self.to_device = to_device  # CPU-drawn noise to the device (FastPath.to_device: no host sync on CUDA)
        self.diffusion = diffusion

    def judge(self, d: nn.Module, x: Tensor, noise_std: float, rng: torch.Generator, cond=None,
              input_grad: bool = False) -> tuple[Tensor, Tensor]:
        """D's outputs on x after instance noise, packing and the forward diffusion, and D's (packed,
        diffused) input image, without the noise-level channel D is also given."""
        if noise_std > 0:
            noise = torch.randn(x.shape, generator=rng)
            x = x + noise_std * (self.to_device(noise) if self.to_device else noise.to(x.device))
        x = pack_batch(x, self.cfg.pack)
        level = None
        if self.diffusion is not None:
            x, level = self.diffusion.diffuse(x, rng, self.to_device)
        if input_grad:  # R1 differentiates D's output with respect to its input image
            x = x.detach().requires_grad_(True)
        seen = x if level is None else with_level(x, level)
        return (d(seen) if cond is None else d(seen, cond)), x

    def d_loss(self, d: nn.Module, real: Tensor, fake: Tensor, noise_std: float, rng: torch.Generator,
               cond=None, mismatched=None) -> tuple[Tensor, Tensor]:
        """D's loss (with penalties) on a real and a (detached) fake batch, and [loss, d_real, d_fake, penalty].
        `mismatched`: wrong conditions for the real batch, judged as negatives beside the fakes
        (matching-aware D); the fake term then averages fakes and mismatches."""
        cfg = self.cfg
        # Real and fake in separate forwards, so D's BatchNorm never mixes their statistics (mixed
        # batches let D tell them apart by batch statistics and starve G). Safe under DDP because
        # buffers are not synced in forward (forward_sync_buffers=False).
        out_real, seen_real = self.judge(d, real, noise_std, rng, cond, input_grad=bool(self.r1))
        if self.diffusion is not None:
            self.diffusion.observe(out_real, real.shape[0])
        out_fake, seen_fake = self.judge(d, fake.detach(), noise_std, rng, cond)
        negatives = out_fake
        if mismatched is not None:
            negatives = torch.cat([out_fake, self.judge(d, real, noise_std, rng, mismatched)[0]])
        loss = self.objective.discriminator_loss(out_real, negatives, cfg.label_smoothing)
        penalty = torch.zeros((), device=loss.device)
        # penalties in fp32 under autocast (GP's forward too); R1 differentiates the shared (bf16) forward
        with torch.autocast(loss.device.type, enabled=False):
            if cfg.gradient_penalty:
                judge = d if cond is None else (lambda x: d(x, cond))
                penalty = penalty + gradient_penalty(judge, seen_real, seen_fake.float(), cfg.gradient_penalty, rng)
            if self.r1:
                penalty = penalty + r1_penalty(out_real.float(), seen_real, self.r1)
        belief = self.objective.belief
        stats = torch.stack([t.float() for t in (loss.detach(), belief(out_real.detach()).mean(),
                                                 belief(out_fake.detach()).mean(), penalty.detach())])
        return loss + penalty, stats

    def g_loss(self, d: nn.Module, fake: Tensor, noise_std: float, rng: torch.Generator, cond=None) -> Tensor:
        return self.objective.g_loss(self.judge(d, fake, noise_std, rng, cond)[0])


@dataclass
class GanGame:
    g: nn.Module  # possibly DDP-wrapped
    d: nn.Module  # possibly DDP-wrapped
    opt_g: torch.optim.Optimizer
    opt_d: torch.optim.Optimizer
    cfg: TrainConfig
    ema: EMA | None = None
    autocast: Callable[[], ContextManager] = contextlib.nullcontext  # FastPath.autocast: forwards + losses
    to_device: Callable[[Tensor], Tensor] | None = None
    diffusion: DiffusionD | None = None  # train.diffusion_d's state (checkpointed by the task)

    def __post_init__(self) -> None:
        self.adversary = Adversary(self.cfg, self.to_device, self.diffusion)
        self.d_local = getattr(self.d, "module", self.d)  # G step: no D gradient all-reduce needed

    def d_step(self, real: Tensor, fake: Tensor, noise_std: float, rng: torch.Generator, cond=None,
               mismatched=None) -> Tensor:
        """One D update on a real batch and a (detached) fake batch; returns [d_loss, d_real, d_fake, penalty]."""
        with self.autocast():
            total, stats = self.adversary.d_loss(self.d, real, fake, noise_std, rng, cond, mismatched)
        self.opt_d.zero_grad(set_to_none=True)
        total.backward()
        self.opt_d.step()
        if self.cfg.weight_clip is not None:
            clip_weights(self.d_local, self.cfg.weight_clip)
        if self.diffusion is not None:
            self.diffusion.end_update()
        return stats

    def g_step(self, fake: Tensor, noise_std: float, rng: torch.Generator, step: int, cond=None,
               extra: Tensor | None = None) -> Tensor:
        """One G update through the current D (its local copy), plus `extra` (e.g. pix2pix's L1 term);
        returns G's adversarial loss."""
        with self.autocast():
            loss = self.adversary.g_loss(self.d_local, fake, noise_std, rng, cond)
        self.opt_g.zero_grad(set_to_none=True)
        (loss if extra is None else loss + extra).backward()
        self.opt_g.step()
        if self.ema is not None:
            self.ema.update(self.g, step)
        return loss.detach().float()

    @property
    def sampler(self) -> nn.Module:
        """What samples, exports and evaluation use: the EMA generator when on."""
        return self.ema.model if self.ema is not None else unwrap(self.g)
