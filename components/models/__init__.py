"""Networks: generators, discriminators, denoisers, translators, VAEs — plain PyTorch modules, one module
per architecture (dcgan, mlp, ddpm, translation, vae…). Which one a run builds is its family's decision
(components/families/: build_gan, build_translation, build_diffusion); the helpers here are what several
families' networks share."""
from __future__ import annotations

from torch import nn


def packed_shape(sample_shape, pack: int) -> tuple[int, ...]:
    """PacGAN packing concatenates `pack` samples along the first (channel / feature) axis."""
    first, *rest = sample_shape
    return (first * pack, *rest)


def pack_batch(x, pack: int):
    """(B, C, …) -> (B / pack, pack·C, …): consecutive samples judged together."""
    return x if pack == 1 else x.reshape(x.shape[0] // pack, x.shape[1] * pack, *x.shape[2:])


def with_spectral_norm(d: nn.Module, on: bool) -> nn.Module:
    if on:
        from components.objectives.regularizers import apply_spectral_norm

        apply_spectral_norm(d)
    return d
