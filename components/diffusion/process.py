"""The β schedule, the forward process q(x_t | x_0), its one-step form q(x_t | x_{t-1}), the posterior
q(x_{t-1} | x_t, x_0) and the regression target: one implementation for ddpm and ddgan, on diffusers'
DDPMScheduler. Index t runs 0…T-1 as in diffusers: x_t is the sample after t + 1 noising steps, and
x_{-1} is x_0 itself.

The scheduler holds the β schedule and ᾱ_t = Π(1 - β_s); `add_noise` is the closed form
x_t = √ᾱ_t x_0 + √(1 - ᾱ_t) ε, `get_velocity` is v = √ᾱ_t ε - √(1 - ᾱ_t) x_0 (Salimans & Ho 2022)."""
from __future__ import annotations

import math

import torch
from diffusers import DDIMScheduler, DDPMScheduler

_SCHEDULE = {"linear": "linear", "cosine": "squaredcos_cap_v2"}  # our names → diffusers'
_PREDICTION = {"epsilon": "epsilon", "v": "v_prediction", "x0": "sample"}


def vp_betas(timesteps: int, beta_min: float, beta_max: float) -> list[float]:
    """The variance-preserving SDE's β(s) = β_min + s(β_max - β_min), s ∈ [0, 1], integrated over T equal
    steps: β_t = 1 - exp(-β_min/T - (β_max - β_min)(2t + 1)/(2T²)). Any T ends near pure noise
    (ᾱ_{T-1} = exp(-(β_min + β_max)/2) ≈ 4e-5 at 0.1, 20), which a few-step model needs and a linear
    1e-4…0.02 schedule gives only at T ≈ 1000 (Xiao et al. 2022, appendix)."""
    return [1 - math.exp(-beta_min / timesteps - (beta_max - beta_min) * (2 * t + 1) / (2 * timesteps ** 2))
            for t in range(timesteps)]


def noise_scheduler(cfg, sampler: str = "ddpm"):
    """A fresh scheduler for a diffusion config `cfg` (schedulers keep sampling state: one per use).
    clip_sample keeps each step's x_0 estimate in the image range [-1, 1]."""
    kwargs = dict(num_train_timesteps=cfg.timesteps, beta_start=cfg.beta_start, beta_end=cfg.beta_end,
                  prediction_type=_PREDICTION[getattr(cfg, "prediction", "x0")],  # ddgan's G predicts x_0
                  clip_sample=True)
    if cfg.beta_schedule == "vp":
        kwargs["trained_betas"] = vp_betas(cfg.timesteps, cfg.beta_min, cfg.beta_max)
    else:
        kwargs["beta_schedule"] = _SCHEDULE[cfg.beta_schedule]
    return DDIMScheduler(**kwargs) if sampler == "ddim" else DDPMScheduler(**kwargs)


def _at(values: torch.Tensor, t: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """values[t] per sample, shaped to broadcast over `like`."""
    return values.to(like.device)[t.to(like.device)].to(like.dtype).reshape(-1, *[1] * (like.dim() - 1))


def _alphas(scheduler, t: torch.Tensor, like: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(ᾱ_t, ᾱ_{t-1}, β_t) per sample, with ᾱ_{-1} = 1 and β_t = 1 - ᾱ_t/ᾱ_{t-1} as diffusers' step derives it,
    so the forward step, the marginals and the posterior agree to the last float (β = 1e-4 stored in float32
    differs from 1 - ᾱ_0 by 2e-4 relative)."""
    ac = scheduler.alphas_cumprod
    ac_prev = torch.cat([torch.ones(1, dtype=ac.dtype), ac[:-1]])
    a_t, a_prev = _at(ac, t, like), _at(ac_prev, t, like)
    return a_t, a_prev, 1 - a_t / a_prev


def forward_step(scheduler, x_prev: torch.Tensor, t: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
    """x_t drawn from q(x_t | x_{t-1}) = N(√(1 - β_t) x_{t-1}, β_t I)."""
    beta = _alphas(scheduler, t, x_prev)[2]
    return (1 - beta).sqrt() * x_prev + beta.sqrt() * noise


def posterior(scheduler, x0: torch.Tensor, xt: torch.Tensor, t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean and variance of q(x_{t-1} | x_t, x_0), per sample t (Ho et al. 2020, eq. 7):
    μ = √ᾱ_{t-1} β_t/(1 - ᾱ_t) x_0 + √α_t (1 - ᾱ_{t-1})/(1 - ᾱ_t) x_t,  σ² = β_t (1 - ᾱ_{t-1})/(1 - ᾱ_t),
    with ᾱ_{-1} = 1: at t = 0 the mean is x_0 and the variance 0."""
    a_t, a_prev, beta = _alphas(scheduler, t, x0)
    mean = a_prev.sqrt() * beta / (1 - a_t) * x0 + (1 - beta).sqrt() * (1 - a_prev) / (1 - a_t) * xt
    return mean, beta * (1 - a_prev) / (1 - a_t)


def posterior_sample(scheduler, x0: torch.Tensor, xt: torch.Tensor, t: torch.Tensor,
                     noise: torch.Tensor) -> torch.Tensor:
    """x_{t-1} drawn from q(x_{t-1} | x_t, x_0) with the given standard-normal `noise`."""
    mean, var = posterior(scheduler, x0, xt, t)
    return mean + var.sqrt() * noise


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
