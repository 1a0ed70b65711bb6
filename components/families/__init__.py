"""Model families by name (`model.family`): one module each, declaring everything about the family
(components/families/base.py says what). Adding a family is one module here, its networks, a preset, a
test file and a docs entry (docs/adding-a-family.md). `build_gan`, `build_translation` and `build_diffusion`
build a run's networks by asking its family (components/models/ holds the networks themselves)."""
from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

from components.families.base import Family
from components.registry import Registry

if TYPE_CHECKING:
    from torch import nn

FAMILIES: Registry[Family] = Registry("model family")

# Imported here, in this order, so the registry is complete once the package is; each is torch-free.
for _module in ("dcgan", "mlp", "ddpm", "ddgan", "pix2pix", "cyclegan", "vae", "seqgan", "relgan"):
    _family = importlib.import_module(f"components.families.{_module}").FAMILY
    FAMILIES.register(_family.name)(_family)


def family_of(name: str, pairing: str | None = None) -> Family:
    """The family `name` in the form it takes on data of this pairing (Family.variant)."""
    return FAMILIES.get(name).variant(pairing)


def family_of_spec(spec: dict) -> Family:
    """The family of an exported model (its generator.json spec)."""
    return family_of(spec["model"]["family"], spec.get("pairing"))


# ------------------------------------------------------------------------------ a run's networks
def build_gan(model_cfg, sample_shape, pack: int = 1, spectral_norm: bool = False,
              num_classes: int = 0, noise_level: bool = False) -> tuple[nn.Module, nn.Module]:
    """(G, D) of a GAN family (model_cfg.family: dcgan, mlp); D judges `pack` samples at once, and with
    `noise_level` (train.diffusion_d) gets one more input channel: the noise level of its input."""
    from components.models import packed_shape, with_spectral_norm

    sample_shape = tuple(sample_shape)
    family = FAMILIES.get(model_cfg.family)
    first, *rest = packed_shape(sample_shape, pack)
    g, d = family.networks(model_cfg, sample_shape, (first + noise_level, *rest), num_classes)
    return g, with_spectral_norm(d, spectral_norm)


def build_translation(translation_cfg, model_cfg, input_shape, output_shape, spectral_norm: bool = False,
                      noise_level: bool = False) -> tuple[nn.Module, nn.Module]:
    """(translator, D) of a translation family (pix2pix, cyclegan); `noise_level` as in build_gan."""
    from components.models import with_spectral_norm

    g, d = FAMILIES.get(model_cfg.family).networks(translation_cfg, model_cfg, tuple(input_shape), tuple(output_shape),
                                                   d_extra=int(noise_level))
    return g, with_spectral_norm(d, spectral_norm)


def build_diffusion(diffusion_cfg, image_shape, num_classes: int) -> nn.Module:
    """The denoiser; num_classes counts only when diffusion.class_conditional."""
    from components.families.ddpm import Ddpm

    return Ddpm.network(diffusion_cfg, image_shape, num_classes)
