"""Networks, built by name from `model.family`: GAN generator/discriminator pairs (MODELS) and
diffusion denoisers (DIFFUSION_MODELS). One registry per kind, because the two are trained differently."""
from __future__ import annotations

from typing import Callable

from torch import nn

from components.registry import Registry

# family name -> builder(model_cfg, sample_shape, d_input_shape) -> (generator, discriminator).
# sample_shape is one sample, (C, H, W) for images or (D,) for points; D's input may differ (PacGAN).
MODELS: Registry[Callable[..., tuple[nn.Module, nn.Module]]] = Registry("model")
# family name -> builder(diffusion_cfg, image_shape, num_classes) -> denoiser with a `.sample` method
DIFFUSION_MODELS: Registry[Callable[..., nn.Module]] = Registry("diffusion model")


def family_names() -> list[str]:
    return sorted(MODELS.names() + DIFFUSION_MODELS.names())


def is_diffusion(family: str) -> bool:
    return family in DIFFUSION_MODELS


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


def build_diffusion(diffusion_cfg, family: str, image_shape, num_classes: int) -> nn.Module:
    """num_classes: the dataset's classes when diffusion.class_conditional, else ignored."""
    return DIFFUSION_MODELS.get(family)(diffusion_cfg, tuple(image_shape),
                                        num_classes if diffusion_cfg.class_conditional else 0)


def build_generator(spec: dict) -> nn.Module:
    """What samples, from an exported spec (generator.json / checkpoint meta): a GAN's G or a denoiser."""
    from components.config import DiffusionConfig, ModelConfig

    model = ModelConfig(**spec["model"])
    if model.is_diffusion:
        return build_diffusion(DiffusionConfig(**spec["diffusion"]), model.family, spec["image_shape"],
                               len(spec["class_names"]))
    return build_gan(model, spec["image_shape"])[0]


from components.models import dcgan as _dcgan  # noqa: E402,F401  (registers its family)
from components.models import ddpm as _ddpm  # noqa: E402,F401
from components.models import mlp as _mlp  # noqa: E402,F401
