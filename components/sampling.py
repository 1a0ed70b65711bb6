"""Drawing samples from any trained network with a fixed seed: a GAN's G maps latents, a model with its own
sampler (diffusion, VAE) runs it, a translator translates. The family decides which (its `draw`); these
are the shared mechanics. Shipped with the logged model (the pyfunc uses them)."""
from __future__ import annotations

import torch


def balanced_labels(n: int, num_classes: int) -> torch.Tensor:
    """0, 1, …, K-1, 0, 1, …: every class requested equally often (what conditional evaluation scores)."""
    return torch.arange(n) % num_classes


def _bounded(out: torch.Tensor) -> torch.Tensor:
    return out.clamp_(-1, 1) if out.dim() == 4 else out  # images live in [-1, 1]; points are unbounded


@torch.no_grad()
def latent_samples(g: torch.nn.Module, latent_dim: int, n: int, seed: int, labels: torch.Tensor | None = None,
                   batch: int = 500) -> torch.Tensor:
    """G(z) for z ~ N(0, I) of a fixed seed, in batches; G(z, y) with `labels` for a class-conditional G.
    z is drawn on the CPU: a seed gives the same samples on any device."""
    rng = torch.Generator().manual_seed(seed)
    dev = next(g.parameters()).device
    z = torch.randn(n, latent_dim, generator=rng).to(dev)
    if labels is not None:
        labels = labels.to(dev)
        return _bounded(torch.cat([g(z[i : i + batch], labels[i : i + batch]) for i in range(0, n, batch)]).cpu())
    return _bounded(torch.cat([g(z[i : i + batch]) for i in range(0, n, batch)]).cpu())


@torch.no_grad()
def sampler_samples(g: torch.nn.Module, n: int, seed: int, labels: torch.Tensor | None = None,
                    options: dict | None = None, batch: int = 500) -> torch.Tensor:
    """`g.sample` (a diffusion model's reverse process, a VAE's decoder) with all its noise from one seeded
    generator, in batches; `options` are the model's sampling settings."""
    rng = torch.Generator().manual_seed(seed)
    return _bounded(torch.cat([g.sample(min(batch, n - i), rng, None if labels is None else labels[i : i + batch],
                                        **(options or {})).cpu() for i in range(0, n, batch)]))


@torch.no_grad()
def translate(g: torch.nn.Module, inputs: torch.Tensor, reverse: bool = False, batch: int = 500) -> torch.Tensor:
    """A translator's outputs (eval mode) for input images in [-1, 1]; reverse: cyclegan's B → A."""
    dev = next(g.parameters()).device
    return torch.cat([g.translate(inputs[i : i + batch].to(dev), reverse=reverse).cpu()
                      for i in range(0, len(inputs), batch)]).clamp_(-1, 1)
