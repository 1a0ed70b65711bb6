"""Generators and discriminators, built by name from `model.family` (one registry)."""
from __future__ import annotations

from typing import Callable

from torch import nn

from components.registry import Registry

# family name -> builder(model_cfg, sample_shape, d_input_shape) -> (generator, discriminator).
# sample_shape is one sample, (C, H, W) for images or (D,) for points; D's input may differ (PacGAN).
MODELS: Registry[Callable[..., tuple[nn.Module, nn.Module]]] = Registry("model")


def packed_shape(sample_shape, pack: int) -> tuple[int, ...]:
    """PacGAN packing concatenates `pack` samples along the first (channel / feature) axis."""
    first, *rest = sample_shape
    return (first * pack, *rest)


def pack_batch(x, pack: int):
    """(B, C, …) -> (B / pack, pack·C, …): consecutive samples judged together."""
    return x if pack == 1 else x.reshape(x.shape[0] // pack, x.shape[1] * pack, *x.shape[2:])


def build_gan(model_cfg, sample_shape, pack: int = 1, spectral_norm: bool = False) -> tuple[nn.Module, nn.Module]:
    sample_shape = tuple(sample_shape)
    g, d = MODELS.get(model_cfg.family)(model_cfg, sample_shape, packed_shape(sample_shape, pack))
    if spectral_norm:
        from components.objectives.regularizers import apply_spectral_norm

        apply_spectral_norm(d)
    return g, d


from components.models import dcgan as _dcgan  # noqa: E402,F401  (registers its family)
from components.models import mlp as _mlp  # noqa: E402,F401
