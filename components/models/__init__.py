"""Networks: generators, discriminators, denoisers, translators, VAEs — plain PyTorch modules, one module
per architecture (dcgan, mlp, ddpm, translation, vae). Which one a run builds is its family's decision
(components/families/); the helpers here are what several families' networks share."""
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


def build_gan(model_cfg, sample_shape, pack: int = 1, spectral_norm: bool = False,
              num_classes: int = 0, noise_level: bool = False) -> tuple[nn.Module, nn.Module]:
    """(G, D) of a GAN family (model_cfg.family: dcgan, mlp); D judges `pack` samples at once, and with
    `noise_level` (train.diffusion_d) gets one more input channel: the noise level of its input."""
    from components.families import FAMILIES

    sample_shape = tuple(sample_shape)
    family = FAMILIES.get(model_cfg.family)
    first, *rest = packed_shape(sample_shape, pack)
    g, d = family.networks(model_cfg, sample_shape, (first + noise_level, *rest), num_classes)
    return g, with_spectral_norm(d, spectral_norm)


def build_translation(translation_cfg, model_cfg, input_shape, output_shape, spectral_norm: bool = False,
                      noise_level: bool = False) -> tuple[nn.Module, nn.Module]:
    """(translator, D) of a translation family (pix2pix, cyclegan); `noise_level` as in build_gan."""
    from components.families import FAMILIES

    g, d = FAMILIES.get(model_cfg.family).networks(translation_cfg, model_cfg, tuple(input_shape), tuple(output_shape),
                                                   d_extra=int(noise_level))
    return g, with_spectral_norm(d, spectral_norm)


def build_diffusion(diffusion_cfg, image_shape, num_classes: int) -> nn.Module:
    """The denoiser; num_classes counts only when diffusion.class_conditional."""
    from components.families.ddpm import Ddpm

    return Ddpm.network(diffusion_cfg, image_shape, num_classes)
