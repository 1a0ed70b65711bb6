"""The reverse process: DDPM ancestral sampling over every timestep, or DDIM over `steps` (η = 0:
deterministic given x_T). Class-conditional models use classifier-free guidance (Ho & Salimans 2022):
ε̂ = ε(x, ∅) + w·(ε(x, y) - ε(x, ∅)); w = 0 is the unconditional model, w = 1 the conditional one."""
from __future__ import annotations

import torch

from components.diffusion.process import noise_scheduler


def guided_prediction(model, x: torch.Tensor, t, labels: torch.Tensor | None, guidance: float) -> torch.Tensor:
    """The network's output at (x, t), guided for a conditional model. One batched forward when both
    branches are needed."""
    if labels is None:
        return model(x, t)
    null = torch.full_like(labels, model.null_label)
    if guidance == 0:
        return model(x, t, null)
    if guidance == 1:
        return model(x, t, labels)
    both = model(torch.cat([x, x]), t, torch.cat([labels, null]))
    cond, uncond = both.chunk(2)
    return uncond + guidance * (cond - uncond)


@torch.no_grad()
def reverse(model, cfg, n: int, rng: torch.Generator, labels: torch.Tensor | None = None, *, sampler: str,
            steps: int, eta: float, guidance: float, device: torch.device | None = None) -> torch.Tensor:
    """n images in [-1, 1] from x_T ~ N(0, I) drawn from `rng` (as is every step's noise), on the
    model's device."""
    device = device or next(model.parameters()).device
    sched = noise_scheduler(cfg, sampler)
    sched.set_timesteps(steps if sampler == "ddim" else cfg.timesteps)
    x = torch.randn((n, *model.image_shape), generator=rng).to(device)
    if labels is not None:
        labels = labels.to(device)
    # DDIM: the direction term uses ε recomputed from the clipped x_0 estimate, consistent with it (with the
    # raw ε, clipping at high noise levels sends the deterministic path to a grey average image)
    extra = {"eta": eta, "use_clipped_model_output": True} if sampler == "ddim" else {}
    for t in sched.timesteps:
        out = guided_prediction(model, x, t.to(device), labels, guidance)
        # each step's noise comes from the CPU generator (diffusers moves it to the device), so a seed
        # gives the same samples on any device; DDIM with η = 0 draws none
        x = sched.step(out, t, x, generator=rng, **extra).prev_sample
    return x.clamp_(-1, 1)
