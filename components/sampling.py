"""Samples from any exported model with a fixed seed: a GAN's G maps latents, a diffusion model runs
its sampler. Shared by evaluate, the sweep's scorer and the pyfunc model (so it lives in components,
which the logged model carries)."""
from __future__ import annotations

import torch


def balanced_labels(n: int, num_classes: int) -> torch.Tensor:
    """0, 1, …, K-1, 0, 1, …: every class requested equally often (what conditional evaluation scores)."""
    return torch.arange(n) % num_classes


def requested_labels(g: torch.nn.Module, n: int) -> torch.Tensor | None:
    """The labels a class-conditional model is asked for: every class equally often; None if unconditional."""
    return balanced_labels(n, g.num_classes) if getattr(g, "conditional", False) else None


@torch.no_grad()
def draw_samples(g: torch.nn.Module, latent_dim: int, n: int, seed: int, batch: int = 500,
                 labels: torch.Tensor | None = None, sampling: dict | None = None) -> torch.Tensor:
    """n samples for a fixed seed. A GAN maps latents z ~ N(0, I) (and `labels`, when class-conditional);
    a model with `.sample` (diffusion, VAE) draws all its noise from the same seeded generator, with
    `sampling` options (diffusion) and `labels`."""
    rng = torch.Generator().manual_seed(seed)
    if hasattr(g, "sample"):
        out = torch.cat([g.sample(min(batch, n - i), rng, None if labels is None else labels[i : i + batch],
                                  **(sampling or {})).cpu() for i in range(0, n, batch)])
    else:
        dev = next(g.parameters()).device  # z is drawn on the CPU: a seed gives the same samples on any device
        z = torch.randn(n, latent_dim, generator=rng).to(dev)
        if getattr(g, "conditional", False):  # a class-conditional GAN: G(z, y)
            labels = labels.to(dev)
            out = torch.cat([g(z[i : i + batch], labels[i : i + batch]) for i in range(0, n, batch)]).cpu()
        else:
            out = torch.cat([g(z[i : i + batch]) for i in range(0, n, batch)]).cpu()
    return out.clamp_(-1, 1) if out.dim() == 4 else out  # images live in [-1, 1]; points are unbounded


@torch.no_grad()
def translate(g: torch.nn.Module, inputs: torch.Tensor, reverse: bool = False, batch: int = 500) -> torch.Tensor:
    """A translator's outputs (eval mode) for input images in [-1, 1]; reverse: cyclegan's B → A."""
    dev = next(g.parameters()).device
    return torch.cat([g.translate(inputs[i : i + batch].to(dev), reverse=reverse).cpu()
                      for i in range(0, len(inputs), batch)]).clamp_(-1, 1)
