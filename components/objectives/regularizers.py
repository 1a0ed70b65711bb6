"""Regularisers of the discriminator, combinable with any objective (`train.*` keys):

    spectral_norm     every Linear/Conv weight of D divided by its largest singular value (Miyato
                      et al. 2018), torch's parametrization: D is 1-Lipschitz per layer
    gradient_penalty  λ E[(‖∇D(x̂)‖ - 1)²] on random interpolates x̂ of real and fake (WGAN-GP,
                      Gulrajani et al. 2017)
    r1                γ/2 E[‖∇D(x)‖²] on real data (Mescheder et al. 2018)
    weight_clip       every D parameter clamped to [-c, c] after each D step (the original WGAN)
"""
from __future__ import annotations

import torch
from torch import nn
from torch.nn.utils.parametrizations import spectral_norm

Tensor = torch.Tensor


def apply_spectral_norm(d: nn.Module) -> nn.Module:
    """Spectral norm on every Linear, Conv and Embedding weight of `d` (in place; returns `d`)."""
    for m in list(d.modules()):
        if isinstance(m, (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.Embedding)):  # Embedding: projection D
            spectral_norm(m)
    return d


def _input_grad(outputs: Tensor, inputs: Tensor) -> Tensor:
    # create_graph: the penalty is itself differentiated in D's backward (double backprop).
    (grad,) = torch.autograd.grad(outputs.sum(), inputs, create_graph=True)
    return grad.flatten(1)


def gradient_penalty(d: nn.Module, real: Tensor, fake: Tensor, weight: float, generator: torch.Generator | None = None) -> Tensor:
    """λ E[(‖∇D(x̂)‖₂ - 1)²], x̂ = αx + (1-α)G(z), α ~ U(0, 1) per sample."""
    shape = (real.shape[0],) + (1,) * (real.dim() - 1)
    alpha = torch.rand(shape, generator=generator)  # on the CPU stream: the same α on every device
    alpha = alpha.pin_memory().to(real.device, non_blocking=True) if real.is_cuda else alpha.to(real.device)
    x_hat = (alpha * real.detach() + (1 - alpha) * fake.detach()).requires_grad_(True)
    norms = _input_grad(d(x_hat), x_hat).norm(2, dim=1)
    return weight * ((norms - 1.0) ** 2).mean()


def r1_penalty(outputs_on_real: Tensor, real: Tensor, gamma: float) -> Tensor:
    """γ/2 E[‖∇D(x)‖₂²] for D outputs computed from `real` (which must require grad)."""
    return 0.5 * gamma * _input_grad(outputs_on_real, real).pow(2).sum(1).mean()


@torch.no_grad()
def clip_weights(d: nn.Module, c: float) -> None:
    for p in d.parameters():
        p.clamp_(-c, c)
