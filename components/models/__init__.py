"""Networks, built by name from `model.family`, one registry per kind because each kind trains and is
evaluated differently: GAN generator/discriminator pairs (MODELS), diffusion denoisers
(DIFFUSION_MODELS), image-to-image translators with their discriminators (TRANSLATION_MODELS) and
VAEs (VAE_MODELS)."""
from __future__ import annotations

from typing import Callable

from torch import nn

from components.registry import Registry

# family name -> builder(model_cfg, sample_shape, d_input_shape, num_classes) -> (generator, discriminator).
# sample_shape is one sample, (C, H, W) for images or (D,) for points; D's input may differ (PacGAN);
# num_classes > 0 with model.conditioning builds a class-conditional pair.
MODELS: Registry[Callable[..., tuple[nn.Module, nn.Module]]] = Registry("model")
# family name -> builder(diffusion_cfg, image_shape, num_classes) -> denoiser with a `.sample` method
DIFFUSION_MODELS: Registry[Callable[..., nn.Module]] = Registry("diffusion model")
# family name -> builder(translation_cfg, model_cfg, input_shape, output_shape) -> (translator, discriminator);
# the translator has `.translate(x, reverse=False)`
TRANSLATION_MODELS: Registry[Callable[..., tuple[nn.Module, nn.Module]]] = Registry("translation model")
# family name -> builder(model_cfg, image_shape) -> VAE with `.sample` and `.negative_elbo`
VAE_MODELS: Registry[Callable[..., nn.Module]] = Registry("vae model")

_KINDS = {"gan": MODELS, "diffusion": DIFFUSION_MODELS, "translation": TRANSLATION_MODELS, "vae": VAE_MODELS}


def family_names() -> list[str]:
    return sorted(name for reg in _KINDS.values() for name in reg.names())


def family_kind(family: str) -> str:
    """gan | diffusion | translation | vae."""
    for kind, reg in _KINDS.items():
        if family in reg:
            return kind
    raise ValueError(f"unknown model family {family!r}; allowed: {', '.join(family_names())}")


def is_diffusion(family: str) -> bool:
    return family in DIFFUSION_MODELS


def packed_shape(sample_shape, pack: int) -> tuple[int, ...]:
    """PacGAN packing concatenates `pack` samples along the first (channel / feature) axis."""
    first, *rest = sample_shape
    return (first * pack, *rest)


def pack_batch(x, pack: int):
    """(B, C, …) -> (B / pack, pack·C, …): consecutive samples judged together."""
    return x if pack == 1 else x.reshape(x.shape[0] // pack, x.shape[1] * pack, *x.shape[2:])


def _with_spectral_norm(d: nn.Module, on: bool) -> nn.Module:
    if on:
        from components.objectives.regularizers import apply_spectral_norm

        apply_spectral_norm(d)
    return d


def build_gan(model_cfg, sample_shape, pack: int = 1, spectral_norm: bool = False,
              num_classes: int = 0) -> tuple[nn.Module, nn.Module]:
    sample_shape = tuple(sample_shape)
    g, d = MODELS.get(model_cfg.family)(model_cfg, sample_shape, packed_shape(sample_shape, pack), num_classes)
    return g, _with_spectral_norm(d, spectral_norm)


def build_translation(translation_cfg, model_cfg, input_shape, output_shape,
                      spectral_norm: bool = False) -> tuple[nn.Module, nn.Module]:
    g, d = TRANSLATION_MODELS.get(model_cfg.family)(translation_cfg, model_cfg, tuple(input_shape), tuple(output_shape))
    return g, _with_spectral_norm(d, spectral_norm)


def build_vae(model_cfg, image_shape) -> nn.Module:
    return VAE_MODELS.get(model_cfg.family)(model_cfg, tuple(image_shape))


def build_diffusion(diffusion_cfg, family: str, image_shape, num_classes: int) -> nn.Module:
    """num_classes: the dataset's classes when diffusion.class_conditional, else ignored."""
    return DIFFUSION_MODELS.get(family)(diffusion_cfg, tuple(image_shape),
                                        num_classes if diffusion_cfg.class_conditional else 0)


def build_generator(spec: dict) -> nn.Module:
    """What samples, from an exported spec (generator.json / checkpoint meta): a GAN's G or a denoiser."""
    from components.config import DiffusionConfig, ModelConfig, TranslationConfig

    model = ModelConfig(**spec["model"])
    if model.kind == "diffusion":
        return build_diffusion(DiffusionConfig(**spec["diffusion"]), model.family, spec["image_shape"],
                               len(spec["class_names"]))
    if model.kind == "translation":
        return build_translation(TranslationConfig(**spec["translation"]), model, spec["input_shape"],
                                 spec["image_shape"])[0]
    if model.kind == "vae":
        return build_vae(model, spec["image_shape"])
    return build_gan(model, spec["image_shape"], num_classes=len(spec["class_names"]))[0]


from components.models import dcgan as _dcgan  # noqa: E402,F401  (registers its family)
from components.models import ddpm as _ddpm  # noqa: E402,F401
from components.models import mlp as _mlp  # noqa: E402,F401
from components.models import translation as _translation  # noqa: E402,F401
from components.models import vae as _vae  # noqa: E402,F401
