"""The forward process q(x_t | x_0) and the regression target, from diffusers' DDPMScheduler.

The scheduler holds the β schedule and ᾱ_t = Π(1 - β_s); `add_noise` is the closed form
x_t = √ᾱ_t x_0 + √(1 - ᾱ_t) ε, `get_velocity` is v = √ᾱ_t ε - √(1 - ᾱ_t) x_0 (Salimans & Ho 2022)."""
from __future__ import annotations

import torch
from diffusers import DDIMScheduler, DDPMScheduler

_SCHEDULE = {"linear": "linear", "cosine": "squaredcos_cap_v2"}  # our names → diffusers'
_PREDICTION = {"epsilon": "epsilon", "v": "v_prediction"}


def noise_scheduler(cfg, sampler: str = "ddpm"):
    """A fresh scheduler for diffusion config `cfg` (schedulers keep sampling state: one per use).
    clip_sample keeps each step's x_0 estimate in the image range [-1, 1]."""
    kwargs = dict(num_train_timesteps=cfg.timesteps, beta_start=cfg.beta_start, beta_end=cfg.beta_end,
                  beta_schedule=_SCHEDULE[cfg.beta_schedule], prediction_type=_PREDICTION[cfg.prediction],
                  clip_sample=True)
    return DDIMScheduler(**kwargs) if sampler == "ddim" else DDPMScheduler(**kwargs)


def alphas_cumprod(cfg) -> torch.Tensor:
    return noise_scheduler(cfg).alphas_cumprod


def q_sample(scheduler, x0: torch.Tensor, t: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
    """x_t drawn from q(x_t | x_0) with the given standard-normal `noise`."""
    return scheduler.add_noise(x0, noise, t)


def target(scheduler, x0: torch.Tensor, t: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
    """What the network regresses on: ε, or v for prediction = v."""
    if scheduler.config.prediction_type == "v_prediction":
        return scheduler.get_velocity(x0, noise, t)
    return noise
